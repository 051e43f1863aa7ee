"""Honest evaluation of the training recipe on a labelled raw lead file.

The file is read as-is (no de-duplication, no rejection of rows the inbox would quarantine, each
lead keyed by its row position), cleaned and featurised like production, and trained with the
time split: everything after ``train_until`` (default: the latest 20% of leads by time) is the
test and is touched only to report the numbers, month by month and pooled, with the junk
cut-off applied as in production (each test day's trailing window). Threshold, calibration and
flagged share come from the validation slice inside the training window; the monthly backtests
run inside the training window too, and the report carries the live gate's verdict on them (the
same function as ``promotion_gate``, as for a first deployment) beside whether the test met the
targets, so the two can be compared at any cut.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from lead_assets.core import schema
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.model.judging import DEFAULT_GATE, gate, promotion_verdict
from lead_assets.core.leads.features import build_features
from lead_assets.core.store.home import as_path
from lead_assets.core.inbox.parsing import detect_format, read_raw_strings
from lead_assets.core.model.backtest import judged_metrics, month_of
from lead_assets.core.model.recipe import TrainConfig
from lead_assets.core.model.training import gate_inputs, train_model
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID


def read_labelled_csv(path) -> pd.DataFrame:
    """Raw leads with typed columns; tolerates an unnamed index column, BOM, other delimiters."""
    location = as_path(path)
    text = read_raw_strings(location, detect_format(location))
    if LABEL not in text.columns:
        raise ValueError(f"{path}: no {LABEL} column; evaluation needs labelled leads")
    raw = pd.DataFrame({LEAD_ID: [f"row-{i}" for i in range(1, len(text) + 1)]})
    raw[CREATED_DATE] = pd.to_datetime(text[CREATED_DATE].str.strip(), format="ISO8601", errors="coerce")
    for column in (schema.CITY, *schema.LEVEL_COLUMNS):
        raw[column] = text[column].str.strip().replace("", np.nan)
    for column in (*schema.numeric_columns(), LABEL):
        values = text[column] if column in text.columns else pd.Series("", index=text.index)
        raw[column] = pd.to_numeric(values.str.strip(), errors="coerce")
    raw[LABEL] = pd.array(raw[LABEL].where(raw[LABEL].isin([0.0, 1.0])), dtype="Float64").astype("Int8")
    return raw[raw[CREATED_DATE].notna()].reset_index(drop=True)


def evaluate_csv(path, train_until: str | None = None, config: TrainConfig | None = None) -> dict:
    """Train with the time split on a labelled CSV and report holdout (test) metrics as a flat dict."""
    config = config or TrainConfig()
    if train_until is not None:
        config = replace(config, train_until=train_until)
    elif config.train_until is None and config.holdout_fraction == 0:
        config = replace(config, holdout_fraction=0.2)  # an evaluation always has a test
    raw = read_labelled_csv(path)
    features = build_features(clean_leads(raw))
    result = train_model(features, config)
    m = result.metrics
    targets = {"auc": config.target_auc, "precision": config.target_precision, "recall": config.target_recall}
    on_test = gate(m, None, targets)
    live = promotion_verdict({**gate_inputs(result), "champion_version": None, "gate": {
        **DEFAULT_GATE, "targets": targets, "month_tolerance": config.month_tolerance}})
    windows = {name: " .. ".join(result.windows[name]) for name in ("train", "validation", "holdout")}
    report = {
        "data": str(path),
        "rows": int(len(raw)),
        "labelled": int(features[LABEL].notna().sum()),
        "train_until": str(train_until) if train_until else f"latest {config.holdout_fraction:.0%} by time held out",
        "train_window": windows["train"],
        "validation_window": windows["validation"],
        "test_window": windows["holdout"],
        "n_train": int(m["n_train"]),
        "n_validation": int(m["n_validation"]),
        "n_test": int(m["n_test"]),
        "positive_rate_test": m["positive_rate_test"],
        "auc": m["auc"],
        "threshold": m["threshold"],
        "precision": m["precision"],
        "recall": m["recall"],
        "f1": m["f1"],
        "brier": m["brier"],
        "ece": m["ece"],
        "precision_top_10pct": m["precision_top_10pct"],
        "lift_top_10pct": m["lift_top_10pct"],
        "lift_top_20pct": m["lift_top_20pct"],
        "validation_auc": m["validation_auc"],
        "validation_precision": m["validation_precision"],
        "validation_recall": m["validation_recall"],
        "threshold_meets_targets": result.threshold_meets_targets,
        "threshold_reason": result.threshold_reason,
        "targets_met_on_test": on_test.passed,
        "targets_missed": "; ".join(on_test.reasons),
        "gate_verdict": "promote" if live.passed else "refuse",
        "gate_reasons": "; ".join(live.reasons) or "all blocking checks passed",
        "gate_checks": live.table.to_dict("records"),
        "backtest_skipped": "; ".join(result.backtest.skipped),
        "iterations": int(m["iterations"]),
        "train_seconds": m["train_seconds"],
        "flag_share": m["flag_share"],
        "cutoff_rule": config.cutoff,
        "test_months": _test_months(result.holdout.assign(threshold_fixed=result.model.threshold), config),
        "backtest_pooled": {k: result.backtest.pooled.get(k) for k in ("auc", "precision", "recall", "ece", "n")},
        "backtest_months": result.backtest.months,
    }
    return report


def _test_months(judged: pd.DataFrame, config: TrainConfig) -> list[dict]:
    """The test leads month by month, each at its own cut-off (and at the fixed threshold, to compare)."""
    rows = []
    months = month_of(judged[CREATED_DATE])
    for month in sorted(months.unique()):
        part = judged[(months == month).to_numpy()]
        m = judged_metrics(part, config.ece_bins)
        rows.append({"month": month, "leads": int(m["n"]), "positive_rate": m["positive_rate"], "auc": m["auc"],
                     "precision": m["precision"], "recall": m["recall"], "ece": m["ece"],
                     "mean_probability": m["mean_probability"], "precision_fixed": m["precision_fixed"],
                     "recall_fixed": m["recall_fixed"]})
    return rows
