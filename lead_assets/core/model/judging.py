"""How good is a lead model: metrics, segment AUCs, lift and the promotion gate.

Everything takes labels, calibrated probabilities and cut-offs, so the candidate and the
champion are judged by the same code on the same leads.

Calibration error (ECE) uses 10 equal-width probability bins: bin k holds probabilities in
[k/10, (k+1)/10), the last bin includes 1.0; ECE = sum over non-empty bins of
(rows in bin / rows) * |observed positive rate - mean probability|.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lead_assets.core import schema
from lead_assets.core.schema import CITY_TIER, LABEL

TOP_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3)
DEFAULT_TARGETS: dict[str, float] = {"auc": 0.75, "precision": 0.65, "recall": 0.75}


def roc_auc(y_true, proba) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    y = np.asarray(y_true, dtype=float)
    positives = y.sum()
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(proba, dtype=float)).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def expected_calibration_error(y_true, proba, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width probability bins (see the module docstring)."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(proba, dtype=float)
    if len(y) == 0:
        return float("nan")
    index = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, weights=y, minlength=bins) - np.bincount(index, weights=p, minlength=bins))
    return float(gap[count > 0].sum() / len(y))


def calibration_bins(y_true, proba, bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin: rows, mean probability and observed positive rate (for the reliability plot)."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(proba, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    frame = pd.DataFrame({"bin": index, "y": y, "p": p}).groupby("bin").agg(
        leads=("y", "size"), mean_probability=("p", "mean"), positive_rate=("y", "mean"))
    frame.insert(0, "lower", frame.index / bins)
    return frame.reset_index(drop=True)


def calibration_by_decile(y: np.ndarray, p: np.ndarray) -> tuple[float, list[dict]]:
    """Predicted vs observed rate in ten equal-size groups by score (1 = best), and their weighted gap."""
    if len(y) == 0:
        return float("nan"), []
    order = np.argsort(-p, kind="stable")
    group = np.empty(len(y), dtype=int)
    group[order] = np.arange(len(y)) * 10 // len(y) + 1
    frame = pd.DataFrame({"decile": group, "y": y, "p": p}).groupby("decile").agg(
        leads=("y", "size"), predicted=("p", "mean"), observed=("y", "mean"))
    gap = float((frame["leads"] * (frame["predicted"] - frame["observed"]).abs()).sum() / len(y))
    rows = [{"decile": int(d), "leads": int(r.leads), "predicted": round(float(r.predicted), 4),
             "observed": round(float(r.observed), 4)} for d, r in frame.iterrows()]
    return gap, rows


def _top(y: np.ndarray, p: np.ndarray, fraction: float) -> np.ndarray:
    order = np.argsort(-p, kind="stable")
    return y[order[: int(np.ceil(fraction * len(y)))]]


def classification_metrics(y_true, proba, threshold, bins: int = 10) -> dict[str, float]:
    """AUC, precision/recall/F1 and confusion matrix at ``threshold`` (p >= t is positive; one
    value, or one cut-off per lead), Brier, ECE, and precision and lift among the top 10/20/30%."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(proba, dtype=float)
    cut = np.asarray(threshold, dtype=float)
    flagged = p >= cut
    tp = float((flagged & (y == 1)).sum())
    fp = float((flagged & (y == 0)).sum())
    fn = float((~flagged & (y == 1)).sum())
    tn = float((~flagged & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    base = float(y.mean()) if len(y) else float("nan")
    metrics = {
        "auc": roc_auc(y, p), "precision": precision, "recall": recall, "f1": f1,
        "brier": float(np.mean((p - y) ** 2)) if len(y) else float("nan"),
        "ece": expected_calibration_error(y, p, bins),
        "threshold": float(np.mean(cut)) if cut.size else float("nan"),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn, "n": float(len(y)),
        "positive_rate": base, "flagged_rate": float(flagged.mean()) if len(y) else float("nan"),
        "mean_probability": float(p.mean()) if len(y) else float("nan"),
    }
    for fraction in TOP_FRACTIONS:
        top = _top(y, p, fraction)
        share = float(top.mean()) if len(top) else float("nan")
        name = f"{round(fraction * 100)}pct"
        metrics[f"precision_top_{name}"] = share
        metrics[f"lift_top_{name}"] = share / base if base else float("nan")
    return metrics


def lift_table(y_true, proba, groups: int = 10) -> pd.DataFrame:
    """Leads in ``groups`` equal-size groups by probability (1 = best): rate, lift, cumulative gain."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(proba, dtype=float)
    order = np.argsort(-p, kind="stable")
    group = np.empty(len(y), dtype=int)
    group[order] = np.arange(len(y)) * groups // max(len(y), 1) + 1
    frame = pd.DataFrame({"group": group, "y": y, "p": p}).groupby("group").agg(
        leads=("y", "size"), positives=("y", "sum"), min_probability=("p", "min"), max_probability=("p", "max"))
    base = y.mean() if len(y) else float("nan")
    frame["positive_rate"] = frame["positives"] / frame["leads"]
    frame["lift"] = frame["positive_rate"] / base
    frame["cumulative_share_of_leads"] = frame["leads"].cumsum() / len(y)
    frame["cumulative_share_of_positives"] = frame["positives"].cumsum() / max(y.sum(), 1)
    frame["cumulative_lift"] = (frame["positives"].cumsum() / frame["leads"].cumsum()) / base
    return frame.reset_index()


def segment_columns(features: pd.DataFrame) -> dict[str, pd.Series]:
    """City tier and the case study's mapped platform/medium/source levels (rare levels -> others)."""
    ref = schema.reference()
    out = {"city_tier": features[CITY_TIER].astype("Int64").astype(str)}
    for raw_column, original in schema.ORIGINAL_LEVEL_COLUMNS.items():
        levels = features[original].astype(str)
        name = original.removesuffix("_level")
        out[name] = levels.where(levels.isin(ref.significant_levels[raw_column]), schema.OTHERS)
    return out


def segment_table(frame: pd.DataFrame, proba, min_rows: int = 30) -> pd.DataFrame:
    """AUC per segment level; ``n/a`` (with the counts) for one class or fewer than ``min_rows`` rows."""
    y = frame[LABEL].astype(float).to_numpy()
    p = np.asarray(proba, dtype=float)
    rows = []
    for segment, values in segment_columns(frame).items():
        values = values.to_numpy()
        for level in sorted(pd.unique(values), key=str):
            mask = values == level
            ys, ps = y[mask], p[mask]
            positives = int(ys.sum())
            if mask.sum() < min_rows:
                status = f"n/a: {mask.sum()} rows < {min_rows}"
            elif positives in (0, mask.sum()):
                status = "n/a: one class"
            else:
                status = "ok"
            rows.append({
                "segment": segment, "level": str(level), "leads": int(mask.sum()), "positives": positives,
                "positive_rate": float(ys.mean()), "mean_probability": float(ps.mean()),
                "auc": roc_auc(ys, ps) if status == "ok" else float("nan"), "status": status,
            })
    return pd.DataFrame(rows, columns=["segment", "level", "leads", "positives", "positive_rate",
                                       "mean_probability", "auc", "status"])


@dataclass
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # one line per failed blocking check
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


GATE_COLUMNS = ["check", "value", "required", "passed", "blocking"]


def gate(candidate: dict[str, Any], champion: dict[str, Any] | None = None,
         targets: dict[str, float] | None = None, margin: float = 0.02,
         months: list[dict[str, Any]] | None = None, tolerance: float = 0.05,
         months_block: bool = True) -> GateResult:
    """Pooled AUC, precision and recall at least the targets; every backtest month within
    ``tolerance`` of them (blocking only when ``months_block``); and, where the champion is judged
    on the same leads, AUC not below the champion's by more than ``margin``. A missing or NaN
    metric fails its check.

    ``champion``: ``{"auc": champion AUC, "challenger_auc": candidate AUC on the same leads,
    "leads": n, "window": text}``, or the champion's metrics alone (compared with the
    candidate's pooled AUC).
    """
    targets = {**DEFAULT_TARGETS, **(targets or {})}
    rows, reasons = [], []

    def check(name: str, value, required: float, what: str, blocking: bool = True) -> None:
        value = float(value) if value is not None else float("nan")
        ok = bool(np.isfinite(value) and value >= required)
        rows.append({"check": name, "value": value, "required": required, "passed": ok, "blocking": blocking})
        if not ok and blocking:
            reasons.append(f"{what} {value:.3f} is below {required:.3f}")

    for metric, required in targets.items():
        check(metric, candidate.get(metric), required, metric)
    for month in months or []:
        for metric, required in targets.items():
            check(f"{metric} {month['month']}", month.get(metric), required - tolerance,
                  f"{metric} in {month['month']} (target {required:.2f} less tolerance {tolerance:.2f})",
                  blocking=months_block)
    if champion is not None:
        champion_auc = float(champion.get("auc", float("nan")))
        if np.isfinite(champion_auc):
            mine = champion.get("challenger_auc", candidate.get("auc"))
            where = f" on {int(champion['leads'])} leads {champion.get('window', '')}".rstrip() \
                if champion.get("leads") else ""
            check("auc_vs_champion", mine, champion_auc - margin,
                  f"auc (champion {champion_auc:.3f}{where}, margin {margin:.2f})")
    return GateResult(not reasons, reasons, pd.DataFrame(rows, columns=GATE_COLUMNS))


DEFAULT_GATE = {"targets": dict(DEFAULT_TARGETS), "champion_margin": 0.02, "month_tolerance": 0.05}


def promotion_verdict(judged: dict[str, Any]) -> GateResult:
    """The one promotion verdict: the live gate (``promotion_gate``, ``champion_model``) and
    ``lead-assets evaluate`` both call it, on what training recorded of a candidate.

    ``judged``: ``metrics`` (with ``backtest_*`` pooled over the backtest months that count),
    ``backtest_months``, ``champion_version``, ``champion_metrics`` and ``gate`` (the targets,
    margin and tolerance the candidate was trained with). The gate judges the recipe's backtests
    when there are any (the months the deployed recipe would have served), else the metrics it was
    judged on. A challenger must also hold every backtest month within the tolerance (the champion
    is the alternative to it) and not lose AUC to the champion beyond the margin. A first model is
    judged against having no model at all: its pooled backtests must meet the targets, and a weak
    month is reported without blocking, since no model serves that month better.
    """
    metrics = judged.get("metrics") or {}
    settings = {**DEFAULT_GATE, **(judged.get("gate") or {})}
    months = judged.get("backtest_months") or []
    if months and float(metrics.get("backtest_months", len(months)) or 0) > 0:
        pooled = {metric: metrics.get(f"backtest_{metric}", metrics.get(metric)) for metric in settings["targets"]}
    else:
        pooled = metrics
    first = judged.get("champion_version") is None
    return gate(pooled, judged.get("champion_metrics"), settings["targets"], margin=settings["champion_margin"],
                months=months, tolerance=settings["month_tolerance"], months_block=not first)
