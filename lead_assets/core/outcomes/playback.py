"""A labelled history played back as it would have happened, and what it showed sales.

The plan cuts a labelled file into steps: at each step's ``now`` the leads created since the
previous step arrive without their label, and every outcome that became known since (a lead's
outcome is known ``label_delay`` after the lead was created) arrives as a narrow outcomes file
(``lead_id``, ``app_complete_flag``, ``outcome_at``). The report judges, per month of lead
creation, the scores each lead was shown on arrival (its first served score, if it was served at
the step it arrived), next to the first promoted model left alone on the same leads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lead_assets.core.model.judging import classification_metrics
from lead_assets.core.model.judging import calibration_by_decile
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT

ARRIVED_AT = "arrived_at"
TARGETS = {"auc": 0.75, "precision": 0.65, "recall": 0.75}


@dataclass(frozen=True)
class Step:
    """What lands at one moment of the replay."""

    number: int
    now: pd.Timestamp
    leads: pd.DataFrame  # the source's rows (text, as exported), label column removed
    outcomes: pd.DataFrame  # lead_id, app_complete_flag, outcome_at


def read_history(path: Path) -> pd.DataFrame:
    """A labelled lead file as text (the exporter's cells untouched), with a ``lead_id`` when it has none.

    Raises ``ValueError`` naming the file when it lacks ``created_date`` or the label, or a date
    does not parse: a replay of a history it cannot place in time would prove nothing.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = frame.drop(columns=[c for c in frame.columns if c == "" or c.startswith("Unnamed")])
    missing = [c for c in (CREATED_DATE, LABEL) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: a replay needs a labelled history; missing column(s) {', '.join(missing)}")
    if LEAD_ID not in frame.columns:
        frame.insert(0, LEAD_ID, [f"replay-{i}" for i in range(len(frame))])
    created = pd.to_datetime(frame[CREATED_DATE], errors="coerce")
    bad = np.flatnonzero(created.isna().to_numpy())
    if len(bad):
        raise ValueError(f"{path}: row {int(bad[0]) + 2} (and {len(bad) - 1} more): created_date "
                         f"{frame[CREATED_DATE].iloc[bad[0]]!r} is not a date")
    labels = frame[LABEL].str.strip()
    if not labels.isin(["0", "1"]).all():
        row = int(np.flatnonzero(~labels.isin(["0", "1"]).to_numpy())[0])
        raise ValueError(f"{path}: row {row + 2}: {LABEL} {frame[LABEL].iloc[row]!r} is not 0 or 1")
    return frame.assign(**{"_created": created.to_numpy()})


def plan(history: pd.DataFrame, step_days: int, label_delay_days: int) -> Iterator[Step]:
    """Steps from the first lead's day until every lead has arrived.

    Step ``k`` happens at ``first day + k * step_days`` (midnight UTC): the leads created before it
    and after the previous step arrive, and the outcomes whose ``outcome_at`` (creation plus the
    delay) falls in the same interval.
    """
    if step_days < 1 or label_delay_days < 0:
        raise ValueError("step_days must be at least 1 and label_delay_days at least 0")
    created = history["_created"]
    outcome_at = created + pd.Timedelta(days=label_delay_days)
    step = pd.Timedelta(days=step_days)
    start, last = created.min().normalize(), created.max()
    previous, number = pd.Timestamp.min, 0
    while previous <= last:
        number += 1
        now = start + number * step
        arriving = ((created >= previous) & (created < now)).to_numpy()
        known = ((outcome_at >= previous) & (outcome_at < now)).to_numpy()
        outcomes = pd.DataFrame({LEAD_ID: history[LEAD_ID].to_numpy()[known],
                                 LABEL: history[LABEL].to_numpy()[known],
                                 OUTCOME_AT: outcome_at[known].dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy()})
        yield Step(number, now, history.loc[arriving].drop(columns=[LABEL, "_created"]), outcomes)
        previous = now


def arrivals(history: pd.DataFrame, step_days: int) -> pd.DataFrame:
    """Each lead's creation, label and the step time it arrived at (the plan's rule, for the report)."""
    created = history["_created"]
    start = created.min().normalize()
    steps = np.floor((created - start) / pd.Timedelta(days=step_days)).astype(int) + 1
    return pd.DataFrame({LEAD_ID: history[LEAD_ID].to_numpy(), CREATED_DATE: created.to_numpy(),
                         LABEL: history[LABEL].astype(int).to_numpy(),
                         ARRIVED_AT: (start + steps * pd.Timedelta(days=step_days)).to_numpy()})


def shown_on_arrival(arrived: pd.DataFrame, served: pd.DataFrame) -> pd.DataFrame:
    """Per lead: the first score it was served, and whether that was at the step it arrived."""
    first = (served.assign(served_at=pd.to_datetime(served["served_at"]))
             .sort_values(["served_at", "model_version"], kind="stable")
             .drop_duplicates(LEAD_ID)[[LEAD_ID, "probability", "cutoff", "bucket", "model_version", "served_at"]])
    shown = arrived.merge(first, on=LEAD_ID, how="left")
    shown["on_arrival"] = (shown["served_at"].notna() & (shown["served_at"] <= shown[ARRIVED_AT])).to_numpy()
    return shown


def best_precision_at_recall(y: np.ndarray, p: np.ndarray, recall: float) -> float:
    """The highest precision any single cut-off on ``p`` reaches with at least ``recall``."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if not len(y) or not y.sum():
        return float("nan")
    order = np.argsort(-p, kind="stable")
    y, p = y[order], p[order]
    cut = np.r_[p[1:] != p[:-1], True]  # a cut-off keeps every lead tied with the last one kept
    tp = np.cumsum(y)[cut]
    kept = (np.arange(1, len(y) + 1))[cut]
    reaching = tp / y.sum() >= recall
    return float((tp[reaching] / kept[reaching]).max())


def calibration_error_if_calibrated(p: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """The calibration error by decile that chance alone leaves on ``len(p)`` leads: its mean over
    ``draws`` outcomes drawn from ``p`` itself (perfect probabilities still miss by this much)."""
    p = np.asarray(p, dtype=float)
    if not len(p):
        return float("nan")
    rng = np.random.default_rng(seed)
    return float(np.mean([calibration_by_decile(rng.binomial(1, p).astype(float), p)[0] for _ in range(draws)]))


def _quality(y: np.ndarray, p: np.ndarray, cutoff: np.ndarray, prefix: str = "") -> dict:
    if not len(y):
        return {f"{prefix}{k}": float("nan") for k in ("auc", "precision", "recall", "calibration_error")}
    metrics = classification_metrics(y, p, cutoff)
    return {f"{prefix}auc": metrics["auc"], f"{prefix}precision": metrics["precision"],
            f"{prefix}recall": metrics["recall"], f"{prefix}calibration_error": calibration_by_decile(y, p)[0]}


def monthly(shown: pd.DataFrame, frozen: pd.DataFrame | None = None,
            targets: dict[str, float] | None = None) -> pd.DataFrame:
    """Per month of creation: the share scored on arrival, by which versions, and the realised
    AUC, precision and recall of "not junk" and calibration error of those scores; the best
    precision a cut-off on the month's served scores could reach at the target recall; the
    calibration error chance leaves on that many leads even when every probability is right; and, when
    ``frozen`` (lead_id, probability, cutoff) is given, the same for one model left alone."""
    targets = {**TARGETS, **(targets or {})}
    frame = shown.assign(month=pd.to_datetime(shown[CREATED_DATE]).dt.strftime("%Y-%m"))
    if frozen is not None:
        frame = frame.merge(frozen.rename(columns={"probability": "frozen_probability", "cutoff": "frozen_cutoff"}),
                            on=LEAD_ID, how="left")
    rows = []
    for month, part in frame.groupby("month", sort=True):
        seen = part[part["on_arrival"].to_numpy()]
        y = seen[LABEL].to_numpy(dtype=float)
        p = seen["probability"].to_numpy(dtype=float)
        versions = seen["model_version"].astype(str).value_counts().sort_index()
        row = {"month": month, "leads": len(part), "scored_on_arrival": len(seen) / len(part),
               "versions": ", ".join(f"v{v} {n}" for v, n in versions.items()) or "none",
               **_quality(y, p, seen["cutoff"].to_numpy(dtype=float)),
               "best_precision_at_target_recall": best_precision_at_recall(y, p, targets["recall"]),
               "calibration_error_if_calibrated": calibration_error_if_calibrated(p)}
        if frozen is not None:
            both = seen[seen["frozen_probability"].notna().to_numpy()]
            row.update(_quality(both[LABEL].to_numpy(dtype=float), both["frozen_probability"].to_numpy(dtype=float),
                                both["frozen_cutoff"].to_numpy(dtype=float), prefix="frozen_"))
        rows.append(row)
    return pd.DataFrame(rows)


def month_verdicts(months: pd.DataFrame, targets: dict[str, float] | None = None,
                   slack: float = 0.02) -> pd.Series:
    """Whether a month held precision and recall, where a month no cut-off could bring to the
    precision target at the recall target counts as held within ``slack`` of its best."""
    targets = {**TARGETS, **(targets or {})}
    reachable = months["best_precision_at_target_recall"] >= targets["precision"]
    precision_bar = np.where(reachable, targets["precision"], months["best_precision_at_target_recall"] - slack)
    return (months["recall"] >= targets["recall"]) & (months["precision"] >= precision_bar)
