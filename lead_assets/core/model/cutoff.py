"""The junk cut-off: flag the best ``flag_share`` of recent leads, not a fixed probability.

On the real CodePro history a probability threshold carried over from the training window did
not hold: scores drift up while the conversion rate falls (0.53 -> 0.46 from November to
February), so a fixed cut-off flags too many leads a few weeks later and precision sinks below
target (see BENCHMARKS.md, "Model on real leads"). What transferred from month to month was a
*rank*: the share of leads that must be kept to reach the recall target. So each lead's cut-off
is the ``1 - flag_share`` quantile of the probabilities of every lead created in the trailing
``window_days`` days up to and including the lead's own day. The cut-off depends only on the
day and the leads around it, not on how a run grouped its days, so a day scored alone, in a
range or online later gets the same cut-off from the same leads. When the window holds fewer
than ``min_leads`` leads the model's own probability threshold (chosen on validation) applies.
Every scored row records the cut-off it got and the rule that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_WINDOW_DAYS = 14
DEFAULT_MIN_LEADS = 200


@dataclass(frozen=True)
class CutoffRule:
    """How a model's junk cut-off is set; stored with the model so that every score is reproducible."""

    flag_share: float | None  # share of recent leads kept as not junk; None: the fixed threshold only
    threshold: float  # fallback probability threshold (chosen on validation)
    window_days: int = DEFAULT_WINDOW_DAYS
    min_leads: int = DEFAULT_MIN_LEADS

    def __post_init__(self):
        if self.flag_share is not None and not 0 < self.flag_share <= 1:
            raise ValueError(f"flag_share must be in (0, 1], not {self.flag_share}")
        if self.window_days < 1:
            raise ValueError(f"window_days must be at least 1, not {self.window_days}")


def trailing_cutoffs(dates: pd.Series, probability: np.ndarray, rule: CutoffRule) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the probability cut-off that applies to it, and the rule's text.

    ``dates`` and ``probability`` describe every lead that may fall in a window (the rows to
    score and the leads of the days before them); the caller keeps the rows it scores.
    """
    p = np.asarray(probability, dtype=float)
    n = len(p)
    cut = np.full(n, float(rule.threshold))
    text = np.full(n, f"fixed threshold {rule.threshold:.3f}", dtype=object)
    if n == 0 or rule.flag_share is None:
        return cut, text
    stamps = pd.to_datetime(pd.Series(dates).reset_index(drop=True))
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    day = stamps.dt.normalize().to_numpy()
    days, inverse = np.unique(day, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(days))
    starts = np.r_[0, np.cumsum(counts)]
    by_day = [p[order[starts[i]:starts[i + 1]]] for i in range(len(days))]
    span = np.timedelta64(rule.window_days, "D")
    first = 0
    for i, current in enumerate(days):
        while days[first] <= current - span:
            first += 1
        window = np.concatenate(by_day[first:i + 1])
        rows = order[starts[i]:starts[i + 1]]
        since = pd.Timestamp(days[first]).date().isoformat()
        until = pd.Timestamp(current).date().isoformat()
        if len(window) < rule.min_leads:
            text[rows] = (f"fixed threshold {rule.threshold:.3f}: {len(window)} leads created {since}..{until} "
                          f"< {rule.min_leads}")
            continue
        cut[rows] = float(np.quantile(window, 1.0 - rule.flag_share, method="higher"))
        text[rows] = f"top {rule.flag_share:.1%} of {len(window)} leads created {since}..{until}"
    return cut, text


def flag_share_for_recall(y_true, probability, target_recall: float) -> float:
    """The smallest share of leads, best first, whose positives reach ``target_recall`` of all positives."""
    y = np.asarray(y_true, dtype=float)
    if y.sum() == 0:
        raise ValueError("cannot size the flagged share: no positive leads")
    order = np.argsort(-np.asarray(probability, dtype=float), kind="stable")
    found = np.cumsum(y[order])
    needed = int(np.searchsorted(found, min(target_recall, 1.0) * y.sum() - 1e-9)) + 1
    return min(needed, len(y)) / len(y)
