"""The model card: intended use, data windows, backtests, metrics, cut-off, calibration, limits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lead_assets.core import schema


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) and np.isfinite(value) else str(value)


def model_card(*, metrics: dict[str, float], windows: dict[str, tuple[str, str]], segments: pd.DataFrame,
               lift: pd.DataFrame, backtest_markdown: str, judged_on: str, threshold_reason: str,
               meets_targets: bool, settings: dict[str, Any], iterations: int) -> str:
    """Markdown for MLflow and the Dagster asset page; ``settings`` is the TrainConfig as a dict."""
    def window(name: str) -> str:
        first, last = windows.get(name, ("", ""))
        return f"{first} .. {last}" if first else "none"

    judged = ("pooled monthly backtests (each month scored by the recipe trained on the months before it)"
              if judged_on == "backtest" else "the holdout after the training window (scored once)")
    headline = ["auc", "precision", "recall", "f1", "brier", "ece", "threshold", "flag_share",
                "positive_rate_test", "flagged_rate", "precision_top_10pct", "lift_top_10pct",
                "precision_top_20pct", "lift_top_20pct", "tp", "fp", "fn", "tn"]
    table = pd.DataFrame({"metric": headline, judged_on: [_fmt(metrics.get(k, float("nan"))) for k in headline]})
    shown = segments.assign(auc=segments["auc"].map(lambda v: _fmt(v) if np.isfinite(v) else "n/a"),
                            positive_rate=segments["positive_rate"].map(_fmt),
                            mean_probability=segments["mean_probability"].map(_fmt))
    lift_shown = lift[["group", "leads", "positives", "positive_rate", "lift", "cumulative_share_of_positives",
                       "min_probability"]].round(3)
    flag = "" if meets_targets else "\n**The fixed threshold does not meet the targets on validation.** "
    share = metrics.get("flag_share", float("nan"))
    cutoff = (f"Each lead's cut-off keeps the best {share:.1%} of the leads created in the {settings['cutoff_window_days']}"
              f" days up to its own day (the share that reached recall {settings['target_recall']:.2f} + margin "
              f"{settings['recall_margin']:.2f} on validation); with fewer than {settings['min_cutoff_leads']} leads "
              f"in the window the fixed threshold applies. Every scored row records its `cutoff` and `cutoff_rule`."
              if np.isfinite(share) else "A fixed probability threshold (below).")
    return f"""# Lead scoring model card

## Intended use
Ranks CodePro web leads by the calibrated probability that the lead completes an application
(`app_complete_flag`), so sales can call the best leads first and skip junk. Scores support call
priority only; they are not a judgement about a person, and they describe leads like the training
window's (same channels, cities and platforms).

## Data
| slice | created_date window | leads |
| --- | --- | --- |
| training window (the registered model saw all of it) | {window("train")} | {int(metrics["n_train"])} |
| validation (tuning only) | {window("validation")} | {int(metrics["n_validation"])} |
| judged on | {window("holdout")} | {int(metrics["n_test"])} |

Judged on {judged}. Positive rate: training {_fmt(metrics["positive_rate_train"])}, judged
{_fmt(metrics["positive_rate_test"])}.

## Backtests by month
{backtest_markdown}

## Model
CatBoost ({iterations} trees chosen by early stopping on validation, depth {settings['depth']}, learning rate
{settings['learning_rate']}, ordered statistics in time order: {settings['has_time']}, {settings['seeds']} seed(s)
averaged), native categorical features `{", ".join(schema.CATEGORICAL_FEATURES)}`; recent leads weigh more
(half-life {settings['half_life_days']} days). Refit on the whole training window; the calibrator, threshold and
flagged share come from cross-fitted validation predictions ({settings['validation_blocks']} blocks, each scored
by a model trained on everything before it).

## Metrics ({judged_on})
{table.to_markdown(index=False)}

## Junk cut-off
{cutoff}
Fixed threshold {_fmt(metrics.get("threshold_fixed", float("nan")))}: {threshold_reason}.{flag}

## Calibration
{settings['calibration']} calibration fitted on validation. Validation ECE
{_fmt(metrics["validation_ece_uncalibrated"])} before and {_fmt(metrics["validation_ece"])} after; judged Brier
{_fmt(metrics["brier"])}, ECE {_fmt(metrics["ece"])} (10 equal-width bins, weighted by rows).

## Segments ({judged_on}; case-study mapping: rare levels are `others`)
{shown.to_markdown(index=False)}

## Lift ({judged_on}, 10 equal groups by probability)
{lift_shown.to_markdown(index=False)}

## Limitations
- Lead behaviour drifts month to month: precision at the recall target fell month by month on the real
  history. Retrain often; the gate judges every retraining on the latest months.
- The conversion rate moves from month to month (0.53 -> 0.46 on the real file) and calibration follows
  the training months, so probabilities can run a few points high or low on a new month.
- Levels never seen in training are scored with CatBoost's prior and flagged (`unseen_levels`);
  {_fmt(metrics["unseen_share_test"])} of judged leads had one.
- Reasons (SHAP values) explain the model, not what causes a lead to convert.
"""
