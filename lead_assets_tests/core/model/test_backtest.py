"""Monthly rolling-origin backtests and the champion comparison on leads it never saw."""

import numpy as np
import pandas as pd
import pytest

from lead_assets.core.model.backtest import backtest, compare_with_champion, judge
from lead_assets.core.model.recipe import TrainConfig, fit_recipe, sort_labelled
from lead_assets.core.schema import CREATED_DATE, LABEL
from lead_assets_tests.factories import FAST, make_features


@pytest.fixture(scope="module")
def rows():
    return sort_labelled(make_features(n=3600, days=150, seed=2))  # 2021-07-01 .. 2021-11-27


@pytest.fixture(scope="module")
def tested(rows):
    return backtest(rows, TrainConfig(backtest_months=3, min_fold_share=0.0, **FAST))


def test_a_month_whose_model_saw_too_little_of_the_window_does_not_count(rows):
    shipped = backtest(rows, TrainConfig(backtest_months=3, **FAST))  # min_fold_share 0.5
    assert shipped.table["month"].tolist() == ["2021-10", "2021-11"]
    before_september = int((rows[CREATED_DATE] < "2021-09-01").sum())
    (reason,) = shipped.skipped
    assert reason.startswith(f"2021-09: trained on {before_september:,} leads") and "below min_fold_share 50%" in reason
    assert shipped.table["train_leads"].tolist() == [int((rows[CREATED_DATE] < f"2021-{m}-01").sum()) for m in (10, 11)]
    assert "not counted: 2021-09" in shipped.markdown()
    latest_only = backtest(rows, TrainConfig(backtest_months=3, min_fold_share=0.99, **FAST))
    assert latest_only.table["month"].tolist() == ["2021-11"]  # the latest month always counts


def test_each_month_is_scored_by_a_model_trained_before_it(tested, rows):
    assert tested.table["month"].tolist() == ["2021-09", "2021-10", "2021-11"]
    for month in tested.months:
        assert month["trained_until"] < f"{month['month']}-01"
        judged = tested.predictions[tested.predictions["month"] == month["month"]]
        assert len(judged) == month["leads"]
        assert judged[CREATED_DATE].dt.strftime("%Y-%m").eq(month["month"]).all()
    assert tested.pooled["n"] == len(tested.predictions) == tested.table["leads"].sum()
    assert tested.pooled["auc"] > 0.75  # the planted signal is found out of time


def test_pooled_metrics_come_from_the_cutoffs_of_each_lead(tested):
    p = tested.predictions
    flagged = p["probability"] >= p["cutoff"]
    y = p[LABEL].astype(int)
    assert tested.pooled["recall"] == pytest.approx((flagged & (y == 1)).sum() / y.sum())
    assert tested.pooled["precision"] == pytest.approx((flagged & (y == 1)).sum() / flagged.sum())
    assert p["cutoff_rule"].str.startswith("top ").mean() > 0.9


def test_the_month_window_reaches_back_into_the_training_leads(rows):
    recipe = fit_recipe(rows[rows[CREATED_DATE] < "2021-10-01"], TrainConfig(**FAST))
    october = rows[(rows[CREATED_DATE] >= "2021-10-01") & (rows[CREATED_DATE] < "2021-11-01")]
    first = judge(recipe.model, rows[rows[CREATED_DATE] < "2021-10-01"], october)
    assert first["cutoff_rule"].iloc[0].endswith("leads created 2021-09-18..2021-10-01")
    alone = judge(recipe.model, rows.iloc[0:0], october)
    assert alone["cutoff_rule"].iloc[0].startswith("fixed threshold")  # 1 day of leads < min_leads


def test_too_little_history_reports_why():
    one_month = sort_labelled(make_features(n=400, days=25))
    result = backtest(one_month, TrainConfig(**FAST))
    assert result.table.empty and "need at least 2" in result.skipped[0]
    assert "no backtest month" in result.markdown()


def test_champion_is_compared_only_on_leads_it_never_saw(tested, rows):
    champion = fit_recipe(rows[rows[CREATED_DATE] < "2021-10-15"], TrainConfig(**FAST)).model
    compared = compare_with_champion(champion, rows, tested.predictions)
    after = tested.predictions[tested.predictions[CREATED_DATE] > pd.Timestamp(champion.train_window[1])]
    assert compared["leads"] == len(after)
    assert compared["window"].startswith("2021-10-15")
    assert np.isfinite(compared["auc"]) and np.isfinite(compared["challenger_auc"])
    everything = fit_recipe(rows, TrainConfig(**FAST)).model
    assert compare_with_champion(everything, rows, tested.predictions) is None
