"""Drift metrics: PSI by hand, and a shifted batch is flagged while a like-for-like one is not."""

import numpy as np
import pandas as pd
import pytest

from lead_assets.core.scoring import drift


def batch(probabilities, unseen=0.0, seed=0):
    rng = np.random.default_rng(seed)
    p = np.asarray(probabilities)
    bucket = np.select([p >= 0.8, p >= 0.6, p >= 0.4], ["hot", "warm", "cold"], "junk")
    return pd.DataFrame({"probability": p, "score": np.round(p * 100), "bucket": bucket,
                         "unseen_levels": rng.random(len(p)) < unseen})


def test_psi_by_hand():
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert drift.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * np.log(1.8) - 0.4 * np.log(0.2))


def test_like_batch_passes_and_shifted_batch_is_flagged():
    rng = np.random.default_rng(1)
    reference = drift.profile(batch(rng.beta(2, 2, 5000)), threshold=0.4, others_share=0.1)
    same = drift.profile(batch(rng.beta(2, 2, 800), seed=2), threshold=0.4, others_share=0.11)
    shifted = drift.profile(batch(rng.beta(5, 1.2, 800), unseen=0.3, seed=3), threshold=0.4, others_share=0.4)
    assert drift.compare(reference, same).passed
    result = drift.compare(reference, shifted)
    assert not result.passed
    breached = set(result.table.loc[result.table.breached, "metric"])
    assert {"score_psi", "share_hot", "predicted_positive_ratio", "unseen_level_share", "others_level_share"} <= breached


def test_tiny_batches_are_not_judged():
    reference = drift.profile(batch(np.linspace(0, 1, 1000)), threshold=0.5)
    result = drift.compare(reference, drift.profile(batch([0.99] * 5), threshold=0.5))
    assert result.passed and "too few" in result.findings[0]
