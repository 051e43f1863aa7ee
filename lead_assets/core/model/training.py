"""Train and judge: backtests of the recipe, the refit on all labelled leads, tables and the card.

Two ways to judge (see :mod:`lead_assets.core.model.recipe`):

* ``backtest`` (the default, what ``lead_scoring_model`` does): the recipe is judged on the
  latest labelled months, each scored by a model trained on the months before it; the
  registered model is refit on every labelled lead, so it has seen its newest leads.
* ``holdout`` (``train_until`` or ``holdout_fraction`` > 0, what ``lead-assets evaluate``
  does): the leads after the cut are scored once by the model trained before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from lead_assets.core import schema

from lead_assets.core.model import judging
from lead_assets.core.store.warehouse import DayChunks
from lead_assets.core.model.backtest import Backtest, backtest, judge, judged_metrics
from lead_assets.core.model.recipe import (
    PROBABILITY,
    LeadModel,
    TrainConfig,
    _sigmoid,
    fit_recipe,
    later_part_start,
    sort_labelled,
    window_of,
)
from lead_assets.core.model.card import model_card
from lead_assets.core.schema import CREATED_DATE, LABEL

Labels = Callable[[pd.DataFrame], pd.Series]


@dataclass
class TrainResult:
    """A trained model and everything needed to judge, log and explain it."""

    model: LeadModel
    metrics: dict[str, float]
    holdout: pd.DataFrame  # the judged leads' features with probability, cutoff and cutoff_rule
    validation: pd.DataFrame  # keys, label, block, raw and calibrated cross-fitted predictions
    backtest: Backtest
    segments: pd.DataFrame
    lift: pd.DataFrame
    card_markdown: str
    params: dict[str, Any]
    windows: dict[str, tuple[str, str]]  # train / fit / validation / holdout: first and last created_date
    threshold_meets_targets: bool
    threshold_reason: str
    judged_on: str  # "backtest" or "holdout"

    @property
    def validation_window(self) -> tuple[str, str]:
        return self.windows["validation"]

    @property
    def holdout_window(self) -> tuple[str, str]:
        return self.windows["holdout"]


def _until(train_until, dates: pd.Series) -> pd.Series:
    """Rows in the training window; a bare date means that whole day is training."""
    cut = pd.Timestamp(train_until)
    if dates.dt.tz is not None and cut.tzinfo is None:
        cut = cut.tz_localize(dates.dt.tz)
    if cut == cut.normalize():
        return dates < cut + pd.Timedelta(days=1)
    return dates <= cut


def newest_labelled_day(features: DayChunks, labels: Labels | None = None) -> str | None:
    """The latest day with a labelled lead, reading only the label and date columns, newest day first."""
    for day in sorted(features.present(), reverse=True):
        try:
            frame = features.read([day], columns=[CREATED_DATE, LABEL])
        except (KeyError, ValueError):  # an empty file written without columns
            continue
        if LABEL in frame and (labels(frame) if labels else frame[LABEL]).notna().any():
            return day
    return None


def labelled_window(features: DayChunks, history_days: int | None, labels: Labels | None = None) -> pd.DataFrame:
    """The labelled leads of the ``history_days`` days up to the newest labelled day (all when
    None), read a chunk of days at a time and only the labelled rows kept: training never holds
    feature files it does not train on. ``labels``: the labels to train on, from a frame (e.g. a
    label-maturity rule); default the recorded ``LABEL``."""
    newest = newest_labelled_day(features, labels)
    if newest is None:
        return pd.DataFrame()
    first = (pd.Timestamp(newest) - pd.Timedelta(days=history_days - 1)).strftime("%Y-%m-%d") if history_days else ""
    days = [d for d in features.present() if first <= d <= newest]
    kept = []
    for _, frame in features.chunks(days):
        if LABEL not in frame:
            continue
        if labels is not None:
            frame = frame.assign(**{LABEL: labels(frame)})
        frame = frame[frame[LABEL].notna().to_numpy()]
        if len(frame):
            kept.append(frame)
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()


def split_holdout(rows: pd.DataFrame, config: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training window and holdout by time; the holdout is empty when judging on backtests."""
    dates = rows[CREATED_DATE]
    if config.train_until is not None:
        in_train = _until(config.train_until, dates)
    elif config.holdout_fraction > 0:
        in_train = dates < later_part_start(dates, config.holdout_fraction)
    else:
        return rows, rows.iloc[0:0]
    train, holdout = rows[in_train.to_numpy()], rows[~in_train.to_numpy()]
    if len(train) < 2 or holdout.empty:
        raise ValueError(
            f"time split left {len(train)} training and {len(holdout)} holdout leads "
            f"(labelled leads span {dates.iloc[0]} .. {dates.iloc[-1]}; train_until={config.train_until})"
        )
    return train, holdout


def train_model(features: pd.DataFrame, config: TrainConfig | None = None) -> TrainResult:
    """Judge the recipe (backtests, or a holdout), fit it on the training window, explain the result."""
    config = config or TrainConfig()
    started = time.perf_counter()
    rows = sort_labelled(features)
    train, holdout = split_holdout(rows, config)
    tested = backtest(train, config)
    recipe = fit_recipe(train, config)
    model, choice = recipe.model, recipe.choice
    if len(holdout):
        judged, judged_on = judge(model, train, holdout), "holdout"
    elif not tested.predictions.empty:
        judged, judged_on = tested.predictions, "backtest"
    else:
        raise ValueError(
            "cannot judge the model: no holdout and no backtest month ("
            + "; ".join(tested.skipped) + "); label more history or set train_until/holdout_fraction"
        )
    metrics = judged_metrics(judged, config.ece_bins)
    metrics["positive_rate_test"] = metrics.pop("positive_rate")
    metrics.pop("n")
    metrics["threshold_fixed"] = model.threshold
    metrics["flag_share"] = recipe.flag_share if recipe.flag_share is not None else float("nan")
    validation = recipe.validation
    y_validation = validation[LABEL].astype(int).to_numpy()
    on_validation = judging.classification_metrics(y_validation, validation[PROBABILITY].to_numpy(),
                                                      choice.threshold, config.ece_bins)
    metrics.update({f"validation_{k}": on_validation[k] for k in ("auc", "precision", "recall", "f1", "brier", "ece")})
    metrics["validation_ece_uncalibrated"] = judging.expected_calibration_error(
        y_validation, _sigmoid(validation["raw_score"].to_numpy()), config.ece_bins)
    for key in ("auc", "precision", "recall", "ece", "brier"):
        metrics[f"backtest_{key}"] = float(tested.pooled.get(key, float("nan")))
    metrics["backtest_months"] = float(len(tested.table))
    metrics.update({
        "n_train": float(len(train)), "n_fit": float(len(recipe.split.fit)),
        "n_validation": float(len(validation)), "n_test": float(len(judged)),
        "positive_rate_train": float(train[LABEL].astype(float).mean()),
        "threshold_meets_targets": float(choice.meets_targets), "iterations": float(recipe.iterations),
        "unseen_share_test": float(model.unseen_levels(judged).mean()),
        "train_seconds": time.perf_counter() - started,
    })
    model.metrics = dict(metrics)
    windows = {"train": window_of(train), "fit": window_of(recipe.split.fit),
               "validation": window_of(recipe.split.validation), "holdout": window_of(judged)}
    settings = asdict(config)
    params = {**settings, "train_until": str(config.train_until) if config.train_until else None,
              "judged_on": judged_on, "iterations_chosen": recipe.iterations,
              "validation_blocks_used": len(recipe.split.blocks), "features": ",".join(schema.feature_columns()),
              "categorical_features": ",".join(schema.CATEGORICAL_FEATURES)}
    y, p = judged[LABEL].astype(int).to_numpy(), judged[PROBABILITY].to_numpy()
    segments = judging.segment_table(judged, p, config.min_segment_rows)
    lift = judging.lift_table(y, p)
    card = model_card(metrics=metrics, windows=windows, segments=segments, lift=lift,
                      backtest_markdown=tested.markdown(), judged_on=judged_on, threshold_reason=choice.reason,
                      meets_targets=choice.meets_targets, settings=settings, iterations=recipe.iterations)
    return TrainResult(model, metrics, judged.reset_index(drop=True), validation, tested, segments, lift, card,
                       params, windows, choice.meets_targets, choice.reason, judged_on)


def gate_inputs(result: TrainResult) -> dict[str, Any]:
    """What the promotion gate reads from a result: metrics and the backtest months (JSON-friendly)."""
    months = [{k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in row.items()}
              for row in result.backtest.months]
    return {"metrics": {k: float(v) for k, v in result.metrics.items()}, "backtest_months": months}
