"""Metrics, segment AUCs, lift, the promotion gate (targets, months, champion) and the plots."""

import numpy as np
import pandas as pd
import pytest

from lead_assets.core.model import plots
from lead_assets.core.model.judging import (
    calibration_bins,
    classification_metrics,
    expected_calibration_error,
    gate,
    lift_table,
    roc_auc,
    segment_table,
)
from lead_assets.core.model.backtest import compare_with_champion
from lead_assets.core.model.recipe import TrainConfig, sort_labelled
from lead_assets.core.schema import LABEL
from lead_assets.core.model.training import train_model
from lead_assets_tests.factories import FAST, make_features

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
    assert gate(good, None, targets={"auc": 0.9}).reasons == ["auc 0.800 is below 0.900"]


def test_gate_allows_one_month_to_miss_by_the_tolerance_only():
    pooled = {"auc": 0.80, "precision": 0.70, "recall": 0.78}
    months = [{"month": "2021-11", "auc": 0.79, "precision": 0.62, "recall": 0.76},
              {"month": "2021-12", "auc": 0.81, "precision": 0.72, "recall": 0.80}]
    assert gate(pooled, None, months=months, tolerance=0.05).passed
    verdict = gate(pooled, None, months=months, tolerance=0.02)
    assert not verdict.passed
    assert verdict.reasons == ["precision in 2021-11 (target 0.65 less tolerance 0.02) 0.620 is below 0.630"]
    assert "recall 2021-12" in set(verdict.table["check"])


def test_gate_compares_with_the_champion_on_the_same_leads():
    pooled = {"auc": 0.80, "precision": 0.70, "recall": 0.80}
    same = {"auc": 0.83, "challenger_auc": 0.78, "leads": 900.0, "window": "2022-01-01..2022-01-31"}
    verdict = gate(pooled, same, margin=0.02)
    assert not verdict.passed
    assert verdict.reasons == ["auc (champion 0.830 on 900 leads 2022-01-01..2022-01-31, margin 0.02) 0.780 "
                               "is below 0.810"]
    assert gate(pooled, {**same, "challenger_auc": 0.82}, margin=0.02).passed


def test_gate_rejects_a_model_trained_on_shuffled_labels_and_passes_a_good_one(good):
    weak = train_model(make_features(n=3000, seed=2, shuffle_labels=True), TrainConfig(**FAST))
    assert weak.metrics["auc"] < 0.6
    assert not gate(weak.metrics, None, months=weak.backtest.months).passed
    assert gate(good.metrics, None, months=good.backtest.months).passed, gate(good.metrics, None).reasons
    rows = sort_labelled(make_features(n=3000, seed=2))
    champion_was_weak = compare_with_champion(_older(weak.model), rows, good.holdout)
    assert gate(good.metrics, champion_was_weak).passed
    champion_was_good = compare_with_champion(_older(good.model), rows, weak.holdout)
    assert not gate(weak.metrics, champion_was_good).passed


def _older(model):
    """The same model, as if trained on the first month only (so the later months are unseen)."""
    import copy

    older = copy.copy(model)
    older.train_window = (model.train_window[0], "2021-07-31 23:59:59")
    return older


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
    assert f"{good.metrics['threshold_fixed']:.3f}" in card
    assert f"{good.metrics['flag_share']:.1%}" in card
    assert "## Backtests by month" in card
    assert "highest validation precision with recall" in card
    assert pd.Timestamp(good.windows["validation"][0]).strftime("%Y-%m-%d") in card


def test_one_verdict_judges_the_backtests_and_a_first_model_against_no_model():
    from lead_assets.core.model.judging import promotion_verdict

    weak_month = [{"month": "2021-09", "auc": 0.80, "precision": 0.70, "recall": 0.68},
                  {"month": "2021-10", "auc": 0.82, "precision": 0.72, "recall": 0.80}]
    judged = {"metrics": {"auc": 0.5, "precision": 0.1, "recall": 0.1, "backtest_months": 2.0,
                          "backtest_auc": 0.81, "backtest_precision": 0.71, "backtest_recall": 0.76},
              "backtest_months": weak_month, "champion_version": None, "champion_metrics": None}
    first = promotion_verdict(judged)  # the backtests, not the other metrics, are judged
    assert first.passed and first.reasons == []
    assert first.table.set_index("check").loc["recall 2021-09", ["passed", "blocking"]].tolist() == [False, False]
    challenger = promotion_verdict({**judged, "champion_version": "1"})
    assert not challenger.passed and challenger.reasons == [
        "recall in 2021-09 (target 0.75 less tolerance 0.05) 0.680 is below 0.700"]
    weak_pool = {**judged, "metrics": {**judged["metrics"], "backtest_recall": 0.74}}
    assert promotion_verdict(weak_pool).reasons == ["recall 0.740 is below 0.750"]
