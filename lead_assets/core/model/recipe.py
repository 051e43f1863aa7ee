"""Training: a recipe judged on monthly backtests, then refit on every labelled lead.

The recipe (:func:`fit_recipe`) turns a window of labelled leads, oldest first, into a scoring
model::

    | fit ........................ | validation: block 1 | block 2 | block 3 |
    |<----------------- the window the recipe is given ------------------->|

* validation: the latest ``validation_fraction`` of the window. Early stopping, the calibrator,
  the fallback probability threshold and the flagged share of the junk cut-off
  (:mod:`lead_assets.core.model.cutoff`) are chosen on it and on nothing else.
* each validation block is predicted by a model with the final settings trained on *every* row
  before that block (block 1 by the early-stopping model), so every validation prediction is
  out-of-time, like the final model's relationship with new leads;
* the final model is then refit on the whole window (the largest single gain measured on the
  real file: models age within weeks).

How a recipe is judged (:func:`train_model`): by default on rolling-origin monthly backtests
(:mod:`lead_assets.core.model.backtest`): each of the latest ``backtest_months`` months is scored by the
recipe trained only on the months before it, with the same cut-off rule, and the registered
model is refit on all labelled history. With ``train_until`` (or ``holdout_fraction`` > 0) the
leads after the cut are a holdout instead, scored once by the final model (``lead-assets
evaluate``); the backtests then run inside the training window.

Settings were chosen on backtests ending 2021-10-31 of the real file (months before every test
window reported in BENCHMARKS.md): CatBoost with ``has_time`` (ordered target statistics follow
the leads' time order instead of a random permutation: level effects drift), recent leads
weigh more (``half_life_days``), Platt calibration on the pooled cross-fitted predictions.
Calendar features, frequency encodings and level combinations did not help on validation, so
the model reads only ``schema.feature_columns()``; the label, ``lead_id`` and ``created_date``
are never features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from lead_assets.core import schema
from lead_assets.core.model.cutoff import DEFAULT_MIN_LEADS, DEFAULT_WINDOW_DAYS, CutoffRule, flag_share_for_recall
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID

PROBABILITY = "probability"
CUTOFF_RULES = ("trailing_share", "threshold")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained and judged. Model settings were chosen on backtests (see the module doc)."""

    holdout_fraction: float = 0.0  # 0: judge on monthly backtests, refit on every labelled lead
    train_until: str | date | datetime | None = None  # judge on the leads after this instead
    validation_fraction: float = 0.2
    validation_blocks: int = 3  # cross-fitted blocks of the validation slice
    target_auc: float = 0.75
    target_precision: float = 0.65
    target_recall: float = 0.75
    recall_margin: float = 0.05  # the cut-off aims at target recall plus this (models age)
    cutoff: str = "trailing_share"  # or "threshold": a fixed probability threshold
    cutoff_window_days: int = DEFAULT_WINDOW_DAYS
    min_cutoff_leads: int = DEFAULT_MIN_LEADS
    calibration: str = "sigmoid"  # or "isotonic", "none"
    half_life_days: float | None = 30.0  # sample weight halves every this many days of age
    has_time: bool = True  # CatBoost's ordered statistics follow created_date
    seeds: int = 1  # models averaged into one (catboost.sum_models)
    backtest_months: int = 3  # latest labelled months, each scored by a model trained before it
    min_backtest_leads: int = 100  # a month with fewer labelled leads is not a backtest fold
    month_tolerance: float = 0.05  # how far one backtest month may miss a target
    min_fold_share: float = 0.5  # a backtest month counts when its model saw this share of the window
    iterations: int = 120  # upper bound (keeps 240k leads well under a minute); early stopping picks
    learning_rate: float = 0.1
    depth: int = 6
    l2_leaf_reg: float = 10.0
    max_ctr_complexity: int = 2
    early_stopping_rounds: int = 50
    min_iterations: int = 50
    thread_count: int = -1
    random_seed: int = 0
    ece_bins: int = 10
    min_segment_rows: int = 30

    def __post_init__(self):
        if self.cutoff not in CUTOFF_RULES:
            raise ValueError(f"unknown cutoff {self.cutoff!r}: use {' or '.join(map(repr, CUTOFF_RULES))}")
        if not 0 <= self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in [0, 1), not {self.holdout_fraction}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be between 0 and 1, not {self.validation_fraction}")
        if self.seeds < 1 or self.backtest_months < 0:
            raise ValueError("seeds must be at least 1 and backtest_months at least 0")

    @property
    def targets(self) -> dict[str, float]:
        return {"auc": self.target_auc, "precision": self.target_precision, "recall": self.target_recall}


@dataclass(frozen=True)
class Calibrator:
    """Maps the model's raw log-odds to probabilities that mean what they say.

    ``sigmoid`` is Platt scaling (two parameters, keeps the ranking strictly); ``isotonic`` is a
    monotone step function, stored as knots and applied with linear interpolation.
    """

    method: str
    slope: float = 1.0
    intercept: float = 0.0
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, method: str = "sigmoid") -> Calibrator:
        raw, y = np.asarray(raw, dtype=float), np.asarray(y, dtype=float)
        if method == "none":
            return cls("none")
        if method == "sigmoid":
            slope, intercept = _platt(raw, y)
            return cls("sigmoid", slope=slope, intercept=intercept)
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            return cls("isotonic", knots_x=tuple(map(float, iso.X_thresholds_)),
                       knots_y=tuple(map(float, iso.y_thresholds_)))
        raise ValueError(f"unknown calibration {method!r}: use 'sigmoid', 'isotonic' or 'none'")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            return np.interp(raw, self.knots_x, self.knots_y)
        return _sigmoid(self.slope * raw + self.intercept)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic regression of the outcome on the raw log-odds (a negligible ridge keeps it finite)."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=1e6).fit(z[:, None], y.astype(int))
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


@dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold with its validation precision/recall and whether it meets the targets."""

    threshold: float
    precision: float
    recall: float
    meets_targets: bool
    reason: str


def select_threshold(y_true, proba, target_recall: float = 0.75, target_precision: float = 0.65,
                     recall_margin: float = 0.0) -> ThresholdChoice:
    """The threshold (``p >= t`` is positive) with the highest precision among those whose recall
    is at least ``target_recall + recall_margin``; ties go to the higher threshold.

    If that precision is below ``target_precision`` the threshold is still returned, with
    ``meets_targets=False`` and the reason.
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(proba, dtype=float)
    if y.sum() == 0:
        raise ValueError("cannot choose a threshold: the validation slice has no positive leads")
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    last_of_value = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_value]
    flagged = np.arange(1, len(p) + 1)[last_of_value]
    thresholds = p_sorted[last_of_value]
    precision, recall = tp / flagged, tp / y.sum()
    floor = min(target_recall + recall_margin, 1.0)
    candidate = recall >= floor - 1e-12
    best = int(np.flatnonzero(candidate & (precision == precision[candidate].max()))[0])
    chosen = ThresholdChoice(float(thresholds[best]), float(precision[best]), float(recall[best]), True, "")
    rule = (f"highest validation precision with recall >= {floor:.2f} (target {target_recall:.2f}"
            f" + margin {recall_margin:.2f})")
    if chosen.precision >= target_precision:
        return ThresholdChoice(chosen.threshold, chosen.precision, chosen.recall, True,
                               f"{rule}: precision {chosen.precision:.3f}, recall {chosen.recall:.3f}")
    return ThresholdChoice(
        chosen.threshold, chosen.precision, chosen.recall, False,
        f"no threshold reaches precision {target_precision:.2f} with recall >= {floor:.2f} on validation; "
        f"kept the {rule}: precision {chosen.precision:.3f}, recall {chosen.recall:.3f}",
    )


@dataclass
class LeadModel:
    """Everything needed to score a lead: picklable, no training data inside."""

    model: Any  # catboost.CatBoostClassifier
    calibrator: Calibrator
    threshold: float
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    levels: dict[str, frozenset[str]]
    train_window: tuple[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    cutoff: CutoffRule | None = None  # None in versions trained before the trailing-share rule

    @property
    def cutoff_rule(self) -> CutoffRule:
        """The junk cut-off rule; a fixed threshold for models that predate the rule."""
        return self.cutoff or CutoffRule(flag_share=None, threshold=self.threshold)

    @property
    def raw_model(self):
        """The CatBoost model, for SHAP values and feature importance."""
        return self.model

    def model_input(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model's columns in order; categorical nulls become ``missing`` (as cleaning does)."""
        missing = [c for c in self.features if c not in features.columns]
        if missing:
            raise ValueError(f"feature table lacks the model's columns: {', '.join(missing)}")
        frame = features[list(self.features)]
        broken = [c for c in self.categorical
                  if frame[c].dtype != object or pd.isna(frame[c].to_numpy()).any()]
        if broken:
            frame = frame.copy()
            for column in broken:
                frame[column] = frame[column].astype("string").fillna(schema.MISSING).astype(str)
        return frame

    def model_arrays(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        """:meth:`model_input` as one array per column, for a few rows (a frame costs more than they do)."""
        missing = [c for c in self.features if c not in features.columns]
        if missing:
            raise ValueError(f"feature table lacks the model's columns: {', '.join(missing)}")
        arrays = {c: features[c].to_numpy() for c in self.features}
        for column in self.categorical:
            values = arrays[column]
            if values.dtype != object or pd.isna(values).any():
                arrays[column] = features[column].astype("string").fillna(schema.MISSING).astype(str).to_numpy()
        return arrays

    def pool(self, features: pd.DataFrame):
        from catboost import Pool

        return Pool(self.model_input(features), cat_features=list(self.categorical))

    def raw_scores(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated log-odds."""
        if len(features) == 0:
            return np.zeros(0)
        return np.asarray(self.model.predict(self.model_input(features), prediction_type="RawFormulaVal"),
                          dtype=float)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of completing an application, one per row."""
        return self.calibrator(self.raw_scores(features))

    def unseen_mask(self, features: pd.DataFrame, model_input: pd.DataFrame | None = None) -> np.ndarray:
        """(rows, categorical columns) booleans: the row's level never occurred in training.
        ``model_input``: ``self.model_input(features)`` when the caller has it already."""
        if not self.categorical or not len(features):
            return np.zeros((len(features), len(self.categorical)), dtype=bool)
        frame = self.model_input(features) if model_input is None else model_input
        return np.column_stack([_outside(np.asarray(frame[c]), self.levels[c]) for c in self.categorical])

    def unseen_levels(self, features: pd.DataFrame, mask: np.ndarray | None = None) -> pd.Series:
        """True where a lead carries a categorical level never seen in training."""
        mask = self.unseen_mask(features) if mask is None else mask
        return pd.Series(mask.any(axis=1), index=features.index, name="unseen_levels")

    def unseen_columns(self, features: pd.DataFrame, mask: np.ndarray | None = None) -> pd.Series:
        """Which columns carry an unseen level, comma-separated ("" when none)."""
        mask = self.unseen_mask(features) if mask is None else mask
        codes = (mask * (1 << np.arange(mask.shape[1]))).sum(axis=1) if mask.size else np.zeros(len(features), int)
        return pd.Series(_column_names(self.categorical)[codes], index=features.index, name="unseen_columns")


SMALL = 64  # below this many rows a Python loop beats a pandas call's fixed cost


def _outside(values: np.ndarray, levels: frozenset[str]) -> np.ndarray:
    """``~isin(levels)``, by set lookups for a few rows."""
    if len(values) <= SMALL:
        return np.array([v not in levels for v in values], dtype=bool)
    return ~pd.Series(values).isin(levels).to_numpy(dtype=bool)


@lru_cache(maxsize=8)
def _column_names(categorical: tuple[str, ...]) -> np.ndarray:
    """Per bit pattern of unseen columns, their names comma-separated."""
    return np.array([",".join(c for bit, c in enumerate(categorical) if code >> bit & 1)
                     for code in range(1 << len(categorical))], dtype=object)


def sort_labelled(features: pd.DataFrame) -> pd.DataFrame:
    """Labelled leads with a date, oldest first (ties by lead_id): the order every fit sees."""
    labelled = features[features[LABEL].notna() & features[CREATED_DATE].notna()]
    if labelled.empty:
        raise ValueError("no labelled leads to train on")
    order = np.lexsort((labelled[LEAD_ID].astype(str).to_numpy(), labelled[CREATED_DATE].to_numpy()))
    return labelled.iloc[order].reset_index(drop=True)


def later_part_start(dates: pd.Series, fraction: float) -> pd.Timestamp:
    """First created_date of the latest ``fraction`` of rows (rows at that instant all go later)."""
    n = len(dates)
    later = min(max(int(round(n * fraction)), 1), n - 1)
    return dates.iloc[n - later]


def _blocks(frame: pd.DataFrame, count: int) -> tuple[pd.DataFrame, ...]:
    """``count`` consecutive slices of about equal size; rows sharing a created_date stay together."""
    dates = frame[CREATED_DATE].to_numpy()
    n = len(frame)
    positions = [int(round(n * j / count)) for j in range(1, count)]
    cuts = np.unique(np.searchsorted(dates, dates[positions], side="left")) if positions else np.array([], int)
    edges = [0, *[int(c) for c in cuts if 0 < c < n], n]
    return tuple(frame.iloc[a:b] for a, b in zip(edges[:-1], edges[1:]))


@dataclass(frozen=True)
class TuningSplit:
    """A recipe's window by time: ``fit`` then ``validation`` (= the ``blocks``)."""

    window: pd.DataFrame
    fit: pd.DataFrame
    validation: pd.DataFrame
    blocks: tuple[pd.DataFrame, ...]


def tuning_split(window: pd.DataFrame, config: TrainConfig) -> TuningSplit:
    """The latest ``validation_fraction`` of a sorted window, in blocks, after the rows it is fitted on."""
    if len(window) < 2:
        raise ValueError(f"{len(window)} labelled leads: too few to fit and validate")
    dates = window[CREATED_DATE]
    start = later_part_start(dates, config.validation_fraction)
    fit, validation = window[dates < start], window[dates >= start]
    if fit.empty:
        raise ValueError("the training window has a single created_date: nothing left to fit before validation")
    for name, part in (("fit", fit), ("validation", validation)):
        if part[LABEL].nunique() < 2:
            raise ValueError(f"the {name} slice ({len(part)} leads) has a single class: need both outcomes")
    return TuningSplit(window, fit, validation, _blocks(validation, max(config.validation_blocks, 1)))


def time_weights(dates: pd.Series, half_life_days: float | None) -> np.ndarray | None:
    """Exponential decay by age relative to the newest row, scaled to mean 1."""
    if not half_life_days:
        return None
    age_days = (dates.max() - dates).dt.total_seconds().to_numpy() / 86400.0
    weights = np.exp2(-age_days / half_life_days)
    return weights / weights.mean()


def _catboost(config: TrainConfig, iterations: int, categorical: list[str], early_stopping: bool, seed: int):
    from catboost import CatBoostClassifier

    return CatBoostClassifier(
        iterations=iterations, learning_rate=config.learning_rate, depth=config.depth,
        l2_leaf_reg=config.l2_leaf_reg, max_ctr_complexity=config.max_ctr_complexity,
        loss_function="Logloss", cat_features=categorical, thread_count=config.thread_count,
        random_seed=seed, verbose=False, allow_writing_files=False, has_time=config.has_time,
        **({"od_type": "Iter", "od_wait": config.early_stopping_rounds, "use_best_model": False}
           if early_stopping else {}),
    )


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame[LABEL].astype(int).to_numpy()


def window_of(frame: pd.DataFrame) -> tuple[str, str]:
    dates = frame[CREATED_DATE]
    return (str(dates.min()), str(dates.max())) if len(frame) else ("", "")


@dataclass(frozen=True)
class Recipe:
    """What :func:`fit_recipe` made: the model and the out-of-time validation it was tuned on."""

    model: LeadModel
    validation: pd.DataFrame  # keys, label, block, raw and calibrated cross-fitted predictions
    choice: ThresholdChoice
    flag_share: float | None
    iterations: int
    split: TuningSplit


def fit_recipe(window: pd.DataFrame, config: TrainConfig) -> Recipe:
    """Early stopping, cross-fitted validation, calibrator, cut-off, then the final refit on the window.

    ``window``: labelled leads sorted by :func:`sort_labelled`.
    """
    columns, categorical = list(schema.feature_columns()), list(schema.CATEGORICAL_FEATURES)
    split = tuning_split(window, config)
    seeds = [config.random_seed + k for k in range(config.seeds)]

    def fit(frame: pd.DataFrame, iterations: int, eval_frame: pd.DataFrame | None = None, seed: int | None = None):
        model = _catboost(config, iterations, categorical, eval_frame is not None,
                          config.random_seed if seed is None else seed)
        model.fit(frame[columns], _labels(frame),
                  sample_weight=time_weights(frame[CREATED_DATE], config.half_life_days),
                  eval_set=(eval_frame[columns], _labels(eval_frame)) if eval_frame is not None else None)
        return model

    def averaged(frame: pd.DataFrame, iterations: int):
        models = [fit(frame, iterations, seed=seed) for seed in seeds]
        if len(models) == 1:
            return models[0]
        from catboost import sum_models

        return sum_models(models, weights=[1.0 / len(models)] * len(models))

    def raw(model, frame: pd.DataFrame, iterations: int = 0) -> np.ndarray:
        return np.asarray(model.predict(frame[columns], prediction_type="RawFormulaVal", ntree_end=iterations),
                          dtype=float)

    first = fit(split.fit, config.iterations, eval_frame=split.validation)
    iterations = int(min(max(config.min_iterations, first.get_best_iteration() + 1), first.tree_count_))
    block_raw = [raw(first, split.blocks[0], iterations) if len(seeds) == 1
                 else raw(averaged(split.fit, iterations), split.blocks[0])]
    for block in split.blocks[1:]:
        before = window[window[CREATED_DATE] < block[CREATED_DATE].iloc[0]]
        block_raw.append(raw(averaged(before, iterations), block))
    validation_raw = np.concatenate(block_raw)
    y_validation = _labels(split.validation)
    calibrator = Calibrator.fit(validation_raw, y_validation, config.calibration)
    validation_p = calibrator(validation_raw)
    choice = select_threshold(y_validation, validation_p, config.target_recall, config.target_precision,
                              config.recall_margin)
    block_id = np.repeat(np.arange(1, len(split.blocks) + 1), [len(b) for b in split.blocks])
    flag_share = None
    if config.cutoff == "trailing_share":
        shares = [flag_share_for_recall(y_validation[block_id == b], validation_p[block_id == b],
                                        config.target_recall + config.recall_margin)
                  for b in np.unique(block_id) if y_validation[block_id == b].sum() > 0]
        flag_share = float(np.mean(shares))
    final = averaged(window, iterations)
    levels = {c: frozenset(window[c].astype(str).unique()) for c in categorical}
    rule = CutoffRule(flag_share, choice.threshold, config.cutoff_window_days, config.min_cutoff_leads)
    model = LeadModel(final, calibrator, choice.threshold, tuple(columns), tuple(categorical), levels,
                      window_of(window), cutoff=rule)
    validation = split.validation[[LEAD_ID, CREATED_DATE, LABEL]].copy()
    validation["block"] = block_id
    validation["raw_score"] = validation_raw
    validation[PROBABILITY] = validation_p
    return Recipe(model, validation, choice, flag_share, iterations, split)
