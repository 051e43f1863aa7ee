"""Scores for leads: calibrated probability, 0-100 score, bucket, top-3 reasons, unseen levels.

One row per lead, columns in this order:

* ``lead_id``, ``created_date``
* ``probability``: calibrated probability of completing an application; ``score`` = round(100 p)
* ``bucket``: ``junk`` below the lead's junk ``cutoff``, else ``hot`` / ``warm`` / ``cold`` by the
  :class:`BucketConfig` cut-offs; a bucket cut-off below the junk cut-off is raised to it, so the
  buckets are always ordered by probability (hot >= warm >= cold >= cutoff > junk) and hot/warm
  keep their meaning (a calibrated probability) when the junk cut-off moves
* ``cutoff`` and ``cutoff_rule``: the junk cut-off this lead got and why (see
  :mod:`lead_assets.core.model.cutoff`: the best share of the leads created in the trailing window of
  days up to the lead's own day, or the model's fixed threshold)
* ``reasons``: the three features with the largest |SHAP value| for that lead, as
  ``feature=value (+0.42); ...``. SHAP values are CatBoost's, in log-odds: ``+`` pushed this
  lead's score up, ``-`` down, and the number is how far. The same reasons, structured:
  ``reason_{k}_feature``, ``reason_{k}_value`` (text), ``reason_{k}_shap`` (signed) for k = 1..3
* ``unseen_levels`` (bool) and ``unseen_columns`` (which categorical columns had a level never
  seen in training, comma-separated)
* ``model_name``, ``model_version`` (str), ``scored_at`` (UTC)

SHAP is the cost of scoring, so it runs once per *distinct* feature vector (identical leads have
identical SHAP values; lead files repeat feature vectors a lot: 41% of the real file's rows and
about 25% of the synthetic ones are distinct) and the results are broadcast back to every lead.
The probability is computed from the SHAP values themselves (they sum to the model's log-odds),
so scoring needs no separate predict pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lead_assets.core import clock
from lead_assets.core.model.cutoff import trailing_cutoffs
from lead_assets.core.model.recipe import SMALL, LeadModel
from lead_assets.core.schema import CREATED_DATE, LEAD_ID

BUCKETS: tuple[str, ...] = ("hot", "warm", "cold", "junk")
REASONS = 3


@dataclass(frozen=True)
class BucketConfig:
    """Cut-offs on the calibrated probability: hot from 0.80 (call first), warm from 0.60 (call next)."""

    hot: float = 0.80
    warm: float = 0.60

    def __post_init__(self):
        if not 0 <= self.warm <= self.hot <= 1:
            raise ValueError(f"bucket cut-offs need 0 <= warm <= hot <= 1, got warm={self.warm}, hot={self.hot}")


def assign_buckets(proba: np.ndarray, cutoff, buckets: BucketConfig | None = None) -> np.ndarray:
    """junk below the cut-off (one value or one per lead); above it hot/warm/cold by the bucket
    cut-offs, each raised to the junk cut-off."""
    buckets = buckets or BucketConfig()
    p = np.asarray(proba, dtype=float)
    cut = np.asarray(cutoff, dtype=float)
    hot, warm = np.maximum(buckets.hot, cut), np.maximum(buckets.warm, cut)
    return np.select([p >= hot, p >= warm, p >= cut], ["hot", "warm", "cold"], "junk").astype(object)


def scores(probability: np.ndarray) -> np.ndarray:
    """The 0-100 score sales sees: the calibrated probability in percent, rounded."""
    return np.rint(100 * np.asarray(probability, dtype=float)).astype("int64")


def lead_cutoffs(model: LeadModel, features: pd.DataFrame, probability: np.ndarray,
                 context: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each lead's junk cut-off and its rule; ``context``: leads of the days before (their window),
    as features, or as ``created_date`` and an already computed ``probability`` (what a chunked
    range run carries from one chunk to the next instead of features)."""
    rule = model.cutoff_rule
    if context is None or context.empty or rule.flag_share is None:
        return trailing_cutoffs(features[CREATED_DATE], probability, rule)
    dates = pd.concat([context[CREATED_DATE], features[CREATED_DATE]], ignore_index=True)
    known = context["probability"].to_numpy() if "probability" in context else model.predict_proba(context)
    cut, text = trailing_cutoffs(dates, np.r_[known, probability], rule)
    return cut[len(context):], text[len(context):]


def shap_values(model: LeadModel, features: pd.DataFrame, thread_count: int = -1,
                model_input: pd.DataFrame | None = None) -> np.ndarray:
    """CatBoost SHAP values, (rows, features + 1); the last column is the expected value.
    ``model_input``: ``model.model_input(features)`` when the caller has it already."""
    from catboost import Pool

    frame = model.model_input(features) if model_input is None else model_input
    if not isinstance(frame, pd.DataFrame):  # model_arrays: one object row per lead, cheaper than a frame
        table = np.empty((len(features), len(model.features)), dtype=object)
        for j, column in enumerate(model.features):
            table[:, j] = frame[column]
        pool = Pool(table, cat_features=[model.features.index(c) for c in model.categorical])
    else:
        pool = Pool(frame, cat_features=list(model.categorical))
    return np.asarray(model.raw_model.get_feature_importance(pool, type="ShapValues", thread_count=thread_count),
                      dtype=float)


def _text_of(value) -> str:
    return f"{value:g}" if isinstance(value, float | np.floating) else str(value)


def _as_text(values: np.ndarray) -> np.ndarray:
    """Each value as display text; formatted once per distinct value, not once per row."""
    if len(values) <= SMALL:
        return np.array([_text_of(v) for v in values], dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    texts = np.array([_text_of(u) for u in uniques], dtype=object)
    return texts[codes]


def _signed(values: np.ndarray) -> np.ndarray:
    rounded = np.round(values, 2) + 0.0
    if rounded.size <= SMALL:
        return np.array([f"{u:+.2f}" for u in rounded.ravel()], dtype=object).reshape(values.shape)
    codes, uniques = pd.factorize(rounded.ravel())
    texts = np.array([f"{u:+.2f}" for u in uniques], dtype=object)
    return texts[codes].reshape(values.shape)


def reasons(model: LeadModel, features: pd.DataFrame, shap: np.ndarray, top: int = REASONS) -> pd.DataFrame:
    """The ``top`` features by |SHAP| per lead: structured columns and one readable ``reasons`` text."""
    return pd.DataFrame(reason_columns(model, shap, model.model_input(features), top), index=features.index)


def reason_columns(model: LeadModel, shap: np.ndarray, model_input, top: int = REASONS) -> dict[str, np.ndarray]:
    """:func:`reasons` as arrays, from the model's input (a frame, or :meth:`LeadModel.model_arrays`)."""
    contributions = shap[:, :-1]
    top = min(top, contributions.shape[1])
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :top]
    picked = np.take_along_axis(contributions, order, axis=1)
    names = np.array(model.features, dtype=object)
    values = np.empty(order.shape, dtype=object)
    for j in np.unique(order):
        column = model.features[j]
        rows, slots = np.nonzero(order == j)
        values[rows, slots] = _as_text(np.asarray(model_input[column])[rows])
    sizes = _signed(picked)
    out, slots = {}, []
    for k in range(top):
        out[f"reason_{k + 1}_feature"] = names[order[:, k]]
        out[f"reason_{k + 1}_value"] = values[:, k]
        out[f"reason_{k + 1}_shap"] = picked[:, k]
        slots += [out[f"reason_{k + 1}_feature"], values[:, k], sizes[:, k]]
    return {"reasons": _reason_text(slots, len(shap)), **out}


def _reason_text(slots: list[np.ndarray], rows: int) -> np.ndarray:
    """``feature=value (+0.42); ...`` per row from (feature, value, size) arrays per reason: one
    format per row (element-wise string additions of object arrays cost four times as much)."""
    if not slots:
        return np.full(rows, "", dtype=object)
    if len(slots) == 9:
        texts = [f"{a}={b} ({c}); {d}={e} ({f}); {g}={h} ({i})" for a, b, c, d, e, f, g, h, i in zip(*slots)]
    else:
        texts = list(map("; ".join(["{}={} ({})"] * (len(slots) // 3)).format, *slots))
    out = np.empty(rows, dtype=object)
    out[:] = texts
    return out


def reason_details(scored: pd.DataFrame) -> list[list[dict]]:
    """Per scored row, its top reasons as ``{feature, value, direction, size}`` (size = |SHAP|)."""
    columns = [(f"reason_{k}_feature", f"reason_{k}_value", f"reason_{k}_shap") for k in range(1, REASONS + 1)]
    present = [c for c in columns if c[0] in scored]
    arrays = [tuple(np.asarray(scored[c]) for c in triple) for triple in present]
    return [
        [{"feature": f[i], "value": v[i], "direction": "up" if s[i] >= 0 else "down", "size": abs(float(s[i]))}
         for f, v, s in arrays if isinstance(f[i], str)]
        for i in range(len(scored[LEAD_ID]))
    ]


def _utc(scored_at) -> pd.Timestamp:
    stamp = pd.Timestamp(clock.now()) if scored_at is None else pd.Timestamp(scored_at)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def score_leads(features: pd.DataFrame, model: LeadModel, model_name: str, model_version: str,
                buckets: BucketConfig | None = None, scored_at=None, thread_count: int = -1,
                context: pd.DataFrame | None = None, cutoffs: tuple | None = None) -> pd.DataFrame:
    """Score every row of a feature table (extra columns such as the label are ignored).

    ``context``: rows of the days before ``features`` that fall in the cut-off window (features,
    or ``created_date`` + ``probability``); they set cut-offs and are not scored. ``cutoffs``:
    (cut-off, rule) given by the caller instead (online scoring: a lead scored alone has no
    trailing window, see ``core.scoring.online``).
    """
    columns = scored_columns(features, model, model_name, model_version, buckets, scored_at, thread_count,
                             context, cutoffs)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(columns[LEAD_ID])))


def scored_columns(features: pd.DataFrame, model: LeadModel, model_name: str, model_version: str,
                   buckets: BucketConfig | None = None, scored_at=None, thread_count: int = -1,
                   context: pd.DataFrame | None = None, cutoffs: tuple | None = None) -> dict[str, np.ndarray]:
    """:func:`score_leads`'s columns as arrays (online scoring reads a lead's answer from them: for
    one lead, the frame costs more than the scoring)."""
    buckets = buckets or BucketConfig()
    stamp = _utc(scored_at)
    features = features.reset_index(drop=True)
    n = len(features)
    if n:
        model_input = model.model_input(features) if n > 1 else model.model_arrays(features)
        if n == 1:  # nothing to deduplicate
            group, distinct, distinct_input = np.zeros(1, dtype=np.int64), features, model_input
        else:
            group = model_input.groupby(list(model_input.columns), sort=False, dropna=False).ngroup().to_numpy()
            first = np.unique(group, return_index=True)[1]
            distinct = features.iloc[first].reset_index(drop=True)
            distinct_input = model_input.iloc[first].reset_index(drop=True)
        shap = shap_values(model, distinct, thread_count, model_input=distinct_input)
        probability = model.calibrator(shap.sum(axis=1))[group]
        explained = reason_columns(model, shap, distinct_input)
        if n > 1:
            explained = {column: values[group] for column, values in explained.items()}
        unseen = model.unseen_mask(features, model_input)
    else:
        probability = np.zeros(0)
        explained = {"reasons": np.zeros(0, dtype=object),
                     **{f"reason_{k}_{part}": np.zeros(0, dtype=float if part == "shap" else object)
                        for k in range(1, REASONS + 1) for part in ("feature", "value", "shap")}}
        unseen = model.unseen_mask(features)
    if cutoffs is None:
        cutoff, rule = lead_cutoffs(model, features, probability, context)
    else:
        cutoff = np.full(n, float(cutoffs[0]), dtype=float)
        rule = np.full(n, cutoffs[1], dtype=object)
    columns = {
        LEAD_ID: features[LEAD_ID].to_numpy(),
        CREATED_DATE: features[CREATED_DATE].array,
        "probability": probability,
        "score": scores(probability),
        "bucket": assign_buckets(probability, cutoff, buckets),
        "cutoff": np.asarray(cutoff, dtype=float),
        "cutoff_rule": rule,
        **explained,
        "unseen_levels": model.unseen_levels(features, unseen).to_numpy(),
        "unseen_columns": model.unseen_columns(features, unseen).to_numpy(),
        "model_name": np.full(n, model_name, dtype=object),
        "model_version": np.full(n, str(model_version), dtype=object),
        "scored_at": pd.DatetimeIndex(np.full(n, stamp.tz_convert(None).to_datetime64())).tz_localize("UTC"),
    }
    return columns
