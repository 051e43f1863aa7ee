"""Is today's batch scored like the model's holdout? Bucket shares, positive ratio, PSI, unseen levels.

The reference profile is computed once, on the training holdout, when a model is trained; each
scored partition is compared with it. Thresholds follow common practice: PSI above 0.1 is a
moderate shift and above 0.25 a major one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BUCKETS = ("hot", "warm", "cold", "junk")
SCORE_EDGES = np.linspace(0, 100, 11)


@dataclass
class Limits:
    psi: float = 0.25
    bucket_share_change: float = 0.15
    positive_ratio_change: float = 0.15
    others_share_change: float = 0.10
    unseen_share: float = 0.10
    min_leads: int = 50


def score_histogram(scores: pd.Series) -> list[float]:
    counts, _ = np.histogram(np.clip(scores.to_numpy(dtype=float), 0, 100), bins=SCORE_EDGES)
    total = counts.sum()
    return (counts / total).tolist() if total else [0.0] * (len(SCORE_EDGES) - 1)


def psi(expected: list[float], actual: list[float], floor: float = 1e-4) -> float:
    """Population stability index between two binned distributions."""
    e = np.clip(np.asarray(expected, dtype=float), floor, None)
    a = np.clip(np.asarray(actual, dtype=float), floor, None)
    return float(np.sum((a - e) * np.log(a / e)))


def others_share(features: pd.DataFrame) -> float:
    """Share of leads with a platform, medium or source level outside the significant set."""
    from lead_assets.core import schema

    if not len(features):
        return 0.0
    significant = schema.reference().significant_levels
    rare = np.zeros(len(features), dtype=bool)
    for column, original in schema.ORIGINAL_LEVEL_COLUMNS.items():
        rare |= ~features[original].isin(significant[column]).to_numpy(dtype=bool)
    return float(rare.mean())


def profile(scored: pd.DataFrame, threshold: float, others_share: float | None = None) -> dict:
    """What a batch of scored leads looks like; the same shape for the holdout and each day."""
    shares = scored["bucket"].value_counts(normalize=True).reindex(BUCKETS, fill_value=0.0)
    return {
        "leads": int(len(scored)),
        "bucket_shares": {k: float(v) for k, v in shares.items()},
        "positive_ratio": float((scored["probability"] >= threshold).mean()) if len(scored) else 0.0,
        "score_histogram": score_histogram(scored["score"]),
        "unseen_share": float(scored["unseen_levels"].mean()) if "unseen_levels" in scored and len(scored) else 0.0,
        "others_share": others_share,
    }


@dataclass
class Comparison:
    passed: bool
    findings: list[str] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


def compare(reference: dict, batch: dict, limits: Limits | None = None) -> Comparison:
    limits = limits or Limits()
    rows, findings = [], []

    def row(metric, ref, now, limit, breached):
        rows.append({"metric": metric, "reference": ref, "batch": now, "limit": limit, "breached": breached})
        if breached:
            findings.append(f"{metric}: {now:.3f} vs {ref:.3f} on the holdout (limit {limit})")

    if batch["leads"] < limits.min_leads:
        return Comparison(True, [f"only {batch['leads']} leads: too few to judge drift"], pd.DataFrame())
    drift = psi(reference["score_histogram"], batch["score_histogram"])
    row("score_psi", 0.0, drift, limits.psi, drift > limits.psi)
    for bucket in BUCKETS:
        ref, now = reference["bucket_shares"][bucket], batch["bucket_shares"][bucket]
        row(f"share_{bucket}", ref, now, limits.bucket_share_change, abs(now - ref) > limits.bucket_share_change)
    ref, now = reference["positive_ratio"], batch["positive_ratio"]
    row("predicted_positive_ratio", ref, now, limits.positive_ratio_change,
        abs(now - ref) > limits.positive_ratio_change)
    row("unseen_level_share", reference["unseen_share"], batch["unseen_share"], limits.unseen_share,
        batch["unseen_share"] - reference["unseen_share"] > limits.unseen_share)
    if reference.get("others_share") is not None and batch.get("others_share") is not None:
        row("others_level_share", reference["others_share"], batch["others_share"], limits.others_share_change,
            batch["others_share"] - reference["others_share"] > limits.others_share_change)
    return Comparison(not findings, findings, pd.DataFrame(rows))
