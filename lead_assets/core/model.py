"""Training: a time split, a cross-fitted validation slice, a calibrated and thresholded CatBoost.

The split is by ``created_date`` only, never shuffled::

    | fit ..................... | validation: block 1 | block 2 | block 3 | holdout ..... |
    |<------------------------ training window ------------------------>|<- judged on ->|

* holdout: rows after ``train_until`` (that whole day is training), or the latest
  ``holdout_fraction`` of rows. Scored once, by the final model; never used for any choice.
* validation: the latest ``validation_fraction`` of the training window. Early stopping, the
  calibrator and the decision threshold are fitted on it and on nothing else.

The scheme, and why. Leads drift month to month, so the final model is refit on the whole
training window (on backtests ending before the test months this gained 0.01-0.03 holdout AUC
over the model that never saw the validation slice). But a calibrator and threshold fitted on
predictions of that smaller, older model do not describe the refit: it is fresher and more
confident. So each validation block is predicted by a model with the final settings trained on
*every* row before that block (block 1 by the early-stopping model): every validation prediction
is out-of-time and comes from a model trained up to just before the leads it scores, which is
the relationship the final model has with new leads. The calibrator and the threshold are fitted
on these pooled predictions and applied to the final model unchanged; the remaining mismatch is
that the final model also saw the last block (about 7% more rows with the defaults).

Measured on 12 backtests before 2022 (6 cut-offs, 2021-09-15 .. 2021-11-30, two seeds each), the
holdout recall at the validation-chosen threshold spread with a standard deviation of 0.087
without cross-fitting and 0.042 with three blocks, and came out about 0.03 below the validation
recall (a model ages over the weeks after its training window): ``recall_margin`` adds that
back when choosing the threshold. Recent leads weigh more in every fit (``half_life_days``:
level effects drift; +0.005 AUC on those backtests). Calendar features of ``created_date`` (hour,
day of week) did not help on validation, so the model reads only ``schema.feature_columns()``;
the label, ``lead_id`` and ``created_date`` are never features.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from lead_assets.core import evaluation, schema
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID

PROBABILITY = "probability"


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained and judged. Model settings were chosen on backtests before 2022."""

    holdout_fraction: float = 0.2
    train_until: str | date | datetime | None = None
    validation_fraction: float = 0.2
    validation_blocks: int = 3  # cross-fitted blocks of the validation slice
    target_precision: float = 0.65
    target_recall: float = 0.75
    recall_margin: float = 0.03  # the threshold is chosen for recall >= target + margin
    calibration: str = "sigmoid"  # or "isotonic", "none"
    half_life_days: float | None = 30.0  # sample weight halves every this many days of age
    iterations: int = 120  # upper bound (keeps 240k leads well under a minute); early stopping picks
    learning_rate: float = 0.1
    depth: int = 6
    l2_leaf_reg: float = 3.0
    max_ctr_complexity: int = 2
    early_stopping_rounds: int = 50
    min_iterations: int = 50
    thread_count: int = -1
    random_seed: int = 0
    ece_bins: int = 10
    min_segment_rows: int = 30


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
        broken = [c for c in self.categorical if frame[c].dtype != object or frame[c].isna().any()]
        if broken:
            frame = frame.copy()
            for column in broken:
                frame[column] = frame[column].astype("string").fillna(schema.MISSING).astype(str)
        return frame

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

    def unseen_mask(self, features: pd.DataFrame) -> np.ndarray:
        """(rows, categorical columns) booleans: the row's level never occurred in training."""
        if not self.categorical or not len(features):
            return np.zeros((len(features), len(self.categorical)), dtype=bool)
        frame = self.model_input(features)
        return np.column_stack([~frame[c].isin(self.levels[c]).to_numpy(dtype=bool) for c in self.categorical])

    def unseen_levels(self, features: pd.DataFrame) -> pd.Series:
        """True where a lead carries a categorical level never seen in training."""
        return pd.Series(self.unseen_mask(features).any(axis=1), index=features.index, name="unseen_levels")

    def unseen_columns(self, features: pd.DataFrame) -> pd.Series:
        """Which columns carry an unseen level, comma-separated ("" when none)."""
        mask = self.unseen_mask(features)
        codes = (mask * (1 << np.arange(mask.shape[1]))).sum(axis=1) if mask.size else np.zeros(len(features), int)
        names = np.array([
            ",".join(c for bit, c in enumerate(self.categorical) if code >> bit & 1)
            for code in range(1 << len(self.categorical))
        ], dtype=object)
        return pd.Series(names[codes], index=features.index, name="unseen_columns")


@dataclass
class TrainResult:
    """A trained bundle and everything needed to judge, log and explain it."""

    model: LeadModel
    metrics: dict[str, float]
    holdout: pd.DataFrame  # the holdout features with calibrated ``probability``
    validation: pd.DataFrame  # keys, label, block, raw and calibrated cross-fitted predictions
    segments: pd.DataFrame
    lift: pd.DataFrame
    card_markdown: str
    params: dict[str, Any]
    windows: dict[str, tuple[str, str]]  # train / fit / validation / holdout: first and last created_date
    threshold_meets_targets: bool
    threshold_reason: str

    @property
    def validation_window(self) -> tuple[str, str]:
        return self.windows["validation"]

    @property
    def holdout_window(self) -> tuple[str, str]:
        return self.windows["holdout"]


@dataclass(frozen=True)
class Split:
    """Labelled leads by time: ``train`` = ``fit`` + ``validation`` (= the ``blocks``), then ``holdout``."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    fit: pd.DataFrame
    validation: pd.DataFrame
    blocks: tuple[pd.DataFrame, ...]


def _later_part_start(dates: pd.Series, fraction: float) -> pd.Timestamp:
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


def _until(train_until, dates: pd.Series) -> tuple[pd.Timestamp, bool]:
    """The cut-off and whether it is exclusive; a bare date means the whole day is training."""
    cut = pd.Timestamp(train_until)
    if dates.dt.tz is not None and cut.tzinfo is None:
        cut = cut.tz_localize(dates.dt.tz)
    if cut == cut.normalize():
        return cut + pd.Timedelta(days=1), True
    return cut, False


def time_split(features: pd.DataFrame, config: TrainConfig) -> Split:
    """Labelled rows split by time: training window then holdout; validation blocks at its end."""
    labelled = features[features[LABEL].notna() & features[CREATED_DATE].notna()]
    if labelled.empty:
        raise ValueError("no labelled leads to train on")
    order = np.lexsort((labelled[LEAD_ID].astype(str).to_numpy(), labelled[CREATED_DATE].to_numpy()))
    rows = labelled.iloc[order].reset_index(drop=True)
    dates = rows[CREATED_DATE]
    if config.train_until is not None:
        cut, exclusive = _until(config.train_until, dates)
        in_train = dates < cut if exclusive else dates <= cut
    else:
        if not 0 < config.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be between 0 and 1, not {config.holdout_fraction}")
        in_train = dates < _later_part_start(dates, config.holdout_fraction)
    train, holdout = rows[in_train.to_numpy()], rows[~in_train.to_numpy()]
    if len(train) < 2 or holdout.empty:
        raise ValueError(
            f"time split left {len(train)} training and {len(holdout)} holdout leads "
            f"(labelled leads span {dates.iloc[0]} .. {dates.iloc[-1]}; train_until={config.train_until})"
        )
    if not 0 < config.validation_fraction < 1:
        raise ValueError(f"validation_fraction must be between 0 and 1, not {config.validation_fraction}")
    train_dates = train[CREATED_DATE]
    start = _later_part_start(train_dates, config.validation_fraction)
    fit, validation = train[train_dates < start], train[train_dates >= start]
    if fit.empty:
        raise ValueError("the training window has a single created_date: nothing left to fit before validation")
    blocks = _blocks(validation, max(config.validation_blocks, 1))
    for name, part in (("fit", fit), ("validation", validation)):
        if part[LABEL].nunique() < 2:
            raise ValueError(f"the {name} slice ({len(part)} leads) has a single class: need both outcomes")
    return Split(train, holdout, fit, validation, tuple(blocks))


def time_weights(dates: pd.Series, half_life_days: float | None) -> np.ndarray | None:
    """Exponential decay by age relative to the newest row, scaled to mean 1."""
    if not half_life_days:
        return None
    age_days = (dates.max() - dates).dt.total_seconds().to_numpy() / 86400.0
    weights = np.exp2(-age_days / half_life_days)
    return weights / weights.mean()


def _catboost(config: TrainConfig, iterations: int, categorical: list[str], early_stopping: bool):
    from catboost import CatBoostClassifier

    return CatBoostClassifier(
        iterations=iterations, learning_rate=config.learning_rate, depth=config.depth,
        l2_leaf_reg=config.l2_leaf_reg, max_ctr_complexity=config.max_ctr_complexity,
        loss_function="Logloss", cat_features=categorical, thread_count=config.thread_count,
        random_seed=config.random_seed, verbose=False, allow_writing_files=False,
        **({"od_type": "Iter", "od_wait": config.early_stopping_rounds, "use_best_model": False}
           if early_stopping else {}),
    )


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame[LABEL].astype(int).to_numpy()


def _window(frame: pd.DataFrame) -> tuple[str, str]:
    dates = frame[CREATED_DATE]
    return (str(dates.min()), str(dates.max())) if len(frame) else ("", "")


@dataclass(frozen=True)
class _Fitted:
    final: Any
    calibrator: Calibrator
    choice: ThresholdChoice
    validation_raw: np.ndarray
    iterations: int


def _fit_and_tune(split: Split, config: TrainConfig) -> _Fitted:
    """Early stopping, cross-fitted validation predictions, calibrator, threshold, final refit."""
    columns, categorical = list(schema.feature_columns()), list(schema.CATEGORICAL_FEATURES)

    def fit(frame: pd.DataFrame, iterations: int, eval_frame: pd.DataFrame | None = None):
        model = _catboost(config, iterations, categorical, early_stopping=eval_frame is not None)
        model.fit(frame[columns], _labels(frame),
                  sample_weight=time_weights(frame[CREATED_DATE], config.half_life_days),
                  eval_set=(eval_frame[columns], _labels(eval_frame)) if eval_frame is not None else None)
        return model

    def raw(model, frame: pd.DataFrame, iterations: int) -> np.ndarray:
        return np.asarray(model.predict(frame[columns], prediction_type="RawFormulaVal", ntree_end=iterations),
                          dtype=float)

    first = fit(split.fit, config.iterations, eval_frame=split.validation)
    iterations = int(min(max(config.min_iterations, first.get_best_iteration() + 1), first.tree_count_))
    block_raw = [raw(first, split.blocks[0], iterations)]
    for block in split.blocks[1:]:
        before = split.train[split.train[CREATED_DATE] < block[CREATED_DATE].iloc[0]]
        block_raw.append(raw(fit(before, iterations), block, iterations))
    validation_raw = np.concatenate(block_raw)
    y_validation = _labels(split.validation)
    calibrator = Calibrator.fit(validation_raw, y_validation, config.calibration)
    choice = select_threshold(y_validation, calibrator(validation_raw), config.target_recall,
                              config.target_precision, config.recall_margin)
    return _Fitted(fit(split.train, iterations), calibrator, choice, validation_raw, iterations)


def train_model(features: pd.DataFrame, config: TrainConfig | None = None) -> TrainResult:
    """Train on the older labelled leads, tune on the latest of them, judge on the holdout."""
    config = config or TrainConfig()
    started = time.perf_counter()
    columns, categorical = schema.feature_columns(), schema.CATEGORICAL_FEATURES
    split = time_split(features, config)
    fitted = _fit_and_tune(split, config)
    choice, iterations = fitted.choice, fitted.iterations

    levels = {c: frozenset(split.train[c].astype(str).unique()) for c in categorical}
    bundle = LeadModel(fitted.final, fitted.calibrator, choice.threshold, tuple(columns), tuple(categorical),
                       levels, _window(split.train))
    holdout = split.holdout.copy()
    holdout[PROBABILITY] = bundle.predict_proba(holdout)
    validation = split.validation[[LEAD_ID, CREATED_DATE, LABEL]].copy()
    validation["block"] = np.repeat(np.arange(1, len(split.blocks) + 1), [len(b) for b in split.blocks])
    validation["raw_score"] = fitted.validation_raw
    validation[PROBABILITY] = fitted.calibrator(fitted.validation_raw)

    y_holdout, y_validation = _labels(holdout), _labels(validation)
    metrics = evaluation.classification_metrics(y_holdout, holdout[PROBABILITY].to_numpy(), choice.threshold,
                                                config.ece_bins)
    metrics["positive_rate_test"] = metrics.pop("positive_rate")
    metrics.pop("n")
    on_validation = evaluation.classification_metrics(y_validation, validation[PROBABILITY].to_numpy(),
                                                      choice.threshold, config.ece_bins)
    metrics.update({f"validation_{k}": on_validation[k] for k in ("auc", "precision", "recall", "f1", "brier", "ece")})
    metrics["validation_ece_uncalibrated"] = evaluation.expected_calibration_error(
        y_validation, _sigmoid(fitted.validation_raw), config.ece_bins)
    metrics.update({
        "n_train": float(len(split.train)), "n_fit": float(len(split.fit)),
        "n_validation": float(len(split.validation)), "n_test": float(len(holdout)),
        "positive_rate_train": float(_labels(split.train).mean()),
        "threshold_meets_targets": float(choice.meets_targets), "iterations": float(iterations),
        "unseen_share_test": float(bundle.unseen_levels(holdout).mean()),
        "train_seconds": time.perf_counter() - started,
    })
    bundle.metrics = dict(metrics)
    windows = {"train": _window(split.train), "fit": _window(split.fit),
               "validation": _window(split.validation), "holdout": _window(holdout)}
    params = {**asdict(config), "train_until": str(config.train_until) if config.train_until else None,
              "iterations_chosen": iterations, "validation_blocks_used": len(split.blocks),
              "features": ",".join(columns), "categorical_features": ",".join(categorical)}
    segments = evaluation.segment_table(holdout, holdout[PROBABILITY].to_numpy(), config.min_segment_rows)
    lift = evaluation.lift_table(y_holdout, holdout[PROBABILITY].to_numpy())
    card = evaluation.model_card(metrics=metrics, windows=windows, segments=segments, lift=lift,
                                 threshold_reason=choice.reason, meets_targets=choice.meets_targets,
                                 config=config, iterations=iterations)
    return TrainResult(bundle, metrics, holdout, validation, segments, lift, card, params, windows,
                       choice.meets_targets, choice.reason)
