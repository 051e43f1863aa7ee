"""Metrics, segment AUCs, lift, the promotion gate, the model card and the plots."""

import numpy as np
import pandas as pd
import pytest

from lead_assets.core import plots
from lead_assets.core.evaluation import (
    calibration_bins,
    classification_metrics,
    evaluate_model,
    expected_calibration_error,
    gate,
    lift_table,
    roc_auc,
    segment_table,
)
from lead_assets.core.model import TrainConfig, train_model
from lead_assets.core.schema import LABEL
from lead_assets_tests.core.test_model import FAST, make_features

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def good():
    return train_model(make_features(n=3000, seed=2), TrainConfig(**FAST))


def test_auc_matches_the_rank_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.round(rng.random(400) + 0.3 * y, 1)  # coarse scores: many ties
    pairs = (p[y == 1][:, None] > p[y == 0][None, :]) + 0.5 * (p[y == 1][:, None] == p[y == 0][None, :])
    assert roc_auc(y, p) == pytest.approx(pairs.mean())
    assert np.isnan(roc_auc([1, 1, 1], [0.1, 0.5, 0.9]))


def test_ece_uses_ten_equal_width_bins():
    y = np.array([1, 0, 0, 1, 1, 1])
    p = np.array([0.05, 0.05, 0.55, 0.55, 0.95, 1.0])
    # bins: [0, .1): rate .5 vs .05 -> gap .45 on 2 rows; [.5, .6): .5 vs .55 -> .05 on 2;
    # [.9, 1.0] (1.0 in the last bin): 1 vs .975 -> .025 on 2
    assert expected_calibration_error(y, p) == pytest.approx((2 * 0.45 + 2 * 0.05 + 2 * 0.025) / 6)
    table = calibration_bins(y, p)
    assert table["leads"].tolist() == [2, 2, 2]


def test_classification_metrics_by_hand():
    y = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    m = classification_metrics(y, p, threshold=0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (4, 1, 1, 4)
    assert m["precision"] == pytest.approx(0.8) and m["recall"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(0.8)
    assert m["precision_top_10pct"] == 1.0 and m["lift_top_10pct"] == pytest.approx(2.0)
    assert m["precision_top_30pct"] == pytest.approx(2 / 3)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_lift_table_groups_and_gains():
    rng = np.random.default_rng(1)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(int)
    table = lift_table(y, p)
    assert len(table) == 10 and table["leads"].sum() == 1000
    assert table["cumulative_share_of_positives"].iloc[-1] == pytest.approx(1.0)
    assert table["lift"].iloc[0] > 1.5 > table["lift"].iloc[-1]
    assert (table["min_probability"].iloc[:-1].to_numpy() >= table["max_probability"].iloc[1:].to_numpy()).all()


def test_segments_too_small_or_single_class_are_na_with_counts():
    frame = make_features(n=400, seed=2)
    frame.loc[:, "platform_level"] = "Level0"
    frame.loc[:9, "platform_level"] = "Level2"  # 10 rows: too few
    frame.loc[frame["source_level"] == "Level7", LABEL] = 1  # one class
    table = segment_table(frame, np.random.default_rng(0).random(400), min_rows=30)
    small = table[(table["segment"] == "platform") & (table["level"] == "Level2")].iloc[0]
    assert small["leads"] == 10 and np.isnan(small["auc"]) and small["status"] == "n/a: 10 rows < 30"
    single = table[(table["segment"] == "source") & (table["level"] == "Level7")].iloc[0]
    assert single["status"] == "n/a: one class" and single["positives"] == single["leads"]
    rare = table[table["segment"] == "medium"]
    assert "others" in set(rare["level"])  # Level300 is not a significant medium level
    assert table.loc[table["status"] == "ok", "auc"].notna().all()


def test_gate_checks_targets_and_the_champion():
    good = {"auc": 0.80, "precision": 0.70, "recall": 0.80}
    assert gate(good, None).passed
    assert gate(good, {"auc": 0.81}).passed  # within the margin
    verdict = gate(good, {"auc": 0.85}, margin=0.02)
    assert not verdict.passed and "champion 0.850" in verdict.reasons[0]
    verdict = gate({"auc": 0.74, "precision": 0.6, "recall": 0.9}, None)
    assert not verdict.passed and len(verdict.reasons) == 2
    assert set(verdict.table["check"]) == {"auc", "precision", "recall"}
    assert not gate({"auc": 0.9, "precision": 0.9}, None).passed  # recall missing
    assert not gate({"auc": float("nan"), "precision": 0.9, "recall": 0.9}, None).passed
    assert gate(good, None, targets={"auc": 0.9}).reasons == ["holdout auc 0.800 is below 0.900"]


def test_gate_rejects_a_model_trained_on_shuffled_labels_and_passes_a_good_one(good):
    weak = train_model(make_features(n=3000, seed=2, shuffle_labels=True), TrainConfig(**FAST))
    assert weak.metrics["auc"] < 0.6
    assert not gate(weak.metrics, None).passed
    assert gate(good.metrics, None).passed, gate(good.metrics, None).reasons
    champion_on_same_holdout = evaluate_model(weak.model, good.holdout)
    assert gate(good.metrics, champion_on_same_holdout).passed
    good_as_champion = evaluate_model(good.model, good.holdout)
    assert not gate(weak.metrics, good_as_champion).passed


def test_evaluate_model_reproduces_the_holdout_metrics(good):
    again = evaluate_model(good.model, good.holdout)
    for key in ("auc", "precision", "recall", "brier", "ece", "threshold", "lift_top_10pct"):
        assert again[key] == pytest.approx(good.metrics[key])
    assert all(isinstance(v, float) for v in again.values())


def test_plots_are_pngs(good):
    y = good.holdout[LABEL].astype(int).to_numpy()
    p = good.holdout["probability"].to_numpy()
    images = [plots.roc_png(y, p, 0.8), plots.precision_recall_png(y, p, good.model.threshold),
              plots.calibration_png(y, p), plots.cumulative_gains_png(y, p),
              plots.feature_importance_png(["a", "b", "c"], [3.0, 1.0, 2.0])]
    images += list(plots.training_plots(good).values())
    for image in images:
        assert image.startswith(PNG) and len(image) > 5000


def test_card_names_the_windows_and_the_threshold_rule(good):
    card = good.card_markdown
    assert f"{good.metrics['threshold']:.3f}" in card
    assert "highest validation precision with recall" in card
    assert pd.Timestamp(good.windows["validation"][0]).strftime("%Y-%m-%d") in card
