"""What happened: each model version judged on the outcomes of the leads it served.

A version is judged only on leads created after the labelled history it was trained on (a
rescore of its own training days would flatter it), with the scores it served (``served``)
and the labels known now. "Not junk" is the served decision: probability at or above the
cut-off the lead was served with. Weeks are the weeks the leads were created (Monday dates);
the ``all`` row of a version pools its weeks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from lead_assets.core.model.judging import calibration_by_decile, classification_metrics
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID

ALL_WEEKS = "all"
COLUMNS = ("model_version", "week", "leads_scored", "leads_with_outcome", "positives", "auc", "precision",
           "recall", "precision_top_10pct", "mean_probability", "observed_rate", "calibration_error",
           "calibration", "first_served_at", "last_served_at")


def _summary(version: str, week: str, part: pd.DataFrame) -> dict:
    known = part[part["_label"].notna().to_numpy()]
    y = known["_label"].to_numpy(dtype=float)
    p = known["probability"].to_numpy(dtype=float)
    metrics = classification_metrics(y, p, known["cutoff"].to_numpy(dtype=float)) if len(known) else {}
    gap, deciles = calibration_by_decile(y, p)
    value = lambda k: float(metrics.get(k, math.nan))  # noqa: E731
    return {
        "model_version": version, "week": week, "leads_scored": int(len(part)),
        "leads_with_outcome": int(len(known)), "positives": int(y.sum()),
        "auc": value("auc"), "precision": value("precision"), "recall": value("recall"),
        "precision_top_10pct": value("precision_top_10pct"),
        "mean_probability": float(p.mean()) if len(p) else math.nan,
        "observed_rate": float(y.mean()) if len(y) else math.nan,
        "calibration_error": gap, "calibration": json.dumps(deciles),
        "first_served_at": part["served_at"].min(), "last_served_at": part["served_at"].max(),
    }


def realised(served: pd.DataFrame, labels: pd.DataFrame, trained_until: Mapping[str, str | None]) -> pd.DataFrame:
    """One row per model version and week of lead creation, plus an ``all`` row per version.

    ``served``: one row per lead and version (``core.scoring.shown``); ``labels``: ``lead_id`` and
    ``app_complete_flag`` as known now (maturity already applied); ``trained_until``: the last
    lead creation day each version was trained on (leads up to it are not counted).
    """
    if served.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    label = labels.drop_duplicates(LEAD_ID, keep="last").set_index(LEAD_ID)[LABEL]
    frame = served.assign(model_version=served["model_version"].astype(str))
    frame["_label"] = pd.array(frame[LEAD_ID].map(label), dtype="Float64")
    until = frame["model_version"].map(lambda v: trained_until.get(v))
    limit = pd.to_datetime(until).fillna(pd.Timestamp.min) + pd.Timedelta(days=1)
    frame = frame[(frame[CREATED_DATE] >= limit).to_numpy()]
    weeks = (frame[CREATED_DATE].dt.normalize() - pd.to_timedelta(frame[CREATED_DATE].dt.weekday, unit="D"))
    frame = frame.assign(week=weeks.dt.strftime("%Y-%m-%d"))
    rows = []
    for version, by_version in frame.groupby("model_version", sort=True):
        for week, part in by_version.groupby("week", sort=True):
            rows.append(_summary(version, week, part))
        rows.append(_summary(version, ALL_WEEKS, by_version))
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    out["_v"] = pd.to_numeric(out["model_version"], errors="coerce")
    return out.sort_values(["_v", "model_version", "week"], kind="stable").drop(columns="_v").reset_index(drop=True)


def below_targets(performance: pd.DataFrame, targets: Mapping[str, float], min_labelled: int) -> pd.DataFrame:
    """Versions whose pooled realised precision or recall is under target on enough labelled leads."""
    pooled = performance[performance["week"] == ALL_WEEKS]
    enough = pooled[pooled["leads_with_outcome"] >= min_labelled]
    low = (enough["precision"] < targets["precision"]) | (enough["recall"] < targets["recall"])
    return enough[low.to_numpy()]
