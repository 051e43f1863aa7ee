"""train_model: judged on monthly backtests and refit on everything, or judged on a holdout."""

import numpy as np
import pandas as pd
import pytest

from lead_assets.core.model.recipe import TrainConfig
from lead_assets.core.schema import CREATED_DATE, LABEL
from lead_assets.core.model.training import gate_inputs, split_holdout, train_model
from lead_assets_tests.factories import FAST, make_features


@pytest.fixture(scope="module")
def refit():
    return train_model(make_features(n=3000, days=120, seed=3), TrainConfig(**FAST))


def test_default_judges_on_backtests_and_refits_on_every_labelled_lead(refit):
    features = make_features(n=3000, days=120, seed=3)
    assert refit.judged_on == "backtest"
    assert refit.model.train_window[1] == str(features[CREATED_DATE].max())  # saw its newest leads
    assert refit.metrics["n_train"] == 3000
    assert refit.metrics["auc"] == pytest.approx(refit.backtest.pooled["auc"])
    assert refit.metrics["recall"] == pytest.approx(refit.backtest.pooled["recall"])
    assert refit.metrics["backtest_months"] == 2 == len(refit.backtest.table)  # August's model saw a quarter
    assert refit.backtest.skipped[0].startswith("2021-08: trained on")
    assert len(refit.holdout) == refit.metrics["n_test"] == refit.backtest.pooled["n"]
    for column in ("probability", "cutoff", "cutoff_rule", "month"):
        assert column in refit.holdout
    for section in ("## Intended use", "## Backtests by month", "## Metrics (backtest)", "## Junk cut-off",
                    "## Calibration", "## Segments", "## Limitations"):
        assert section in refit.card_markdown


def test_result_is_complete(refit):
    m = refit.metrics
    for key in ("auc", "precision", "recall", "f1", "brier", "ece", "threshold", "threshold_fixed", "flag_share",
                "n_train", "n_validation", "n_test", "positive_rate_test", "precision_top_10pct", "lift_top_10pct",
                "tp", "fp", "fn", "tn", "validation_auc", "iterations", "backtest_auc"):
        assert np.isfinite(m[key]), key
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == m["n_test"]
    assert set(refit.segments["segment"]) == {"city_tier", "platform", "medium", "source"}
    assert len(refit.lift) == 10
    assert refit.params["iterations_chosen"] == m["iterations"] and refit.params["judged_on"] == "backtest"


def test_train_until_judges_on_the_leads_after_it():
    features = make_features(n=3000, days=120, seed=3)
    result = train_model(features, TrainConfig(train_until="2021-09-30", **FAST))
    assert result.judged_on == "holdout"
    assert result.holdout[CREATED_DATE].min() >= pd.Timestamp("2021-10-01")
    assert result.model.train_window[1] < "2021-10-01"
    assert result.metrics["n_train"] + result.metrics["n_test"] == 3000
    assert result.backtest.table["month"].tolist() == ["2021-09"]  # inside the training window; August saw July only
    assert result.backtest.skipped[0].startswith("2021-08: trained on")
    flagged = result.holdout["probability"] >= result.holdout["cutoff"]
    y = result.holdout[LABEL].astype(int)
    assert result.metrics["recall"] == pytest.approx((flagged & (y == 1)).sum() / y.sum())


def test_holdout_split_is_a_whole_day_and_says_why_when_empty():
    features = make_features(n=1000)
    features.loc[500, CREATED_DATE] = pd.Timestamp("2021-09-15 23:59:59")
    rows = features.sort_values(CREATED_DATE, ignore_index=True)
    train, holdout = split_holdout(rows, TrainConfig(train_until="2021-09-15"))
    assert pd.Timestamp("2021-09-15 23:59:59") in set(train[CREATED_DATE])
    assert holdout[CREATED_DATE].min() >= pd.Timestamp("2021-09-16")
    assert len(train) + len(holdout) == 1000
    with pytest.raises(ValueError, match="holdout"):
        split_holdout(rows, TrainConfig(train_until="2030-01-01"))
    train, holdout = split_holdout(rows, TrainConfig(holdout_fraction=0.2))
    assert len(holdout) == pytest.approx(200, abs=2)


def test_one_month_of_history_cannot_be_judged():
    with pytest.raises(ValueError, match="no backtest month"):
        train_model(make_features(n=600, days=20), TrainConfig(**FAST))


def test_gate_inputs_are_plain_json(refit):
    import json

    inputs = gate_inputs(refit)
    assert json.loads(json.dumps(inputs)) == inputs
    assert [m["month"] for m in inputs["backtest_months"]] == refit.backtest.table["month"].tolist()


def test_training_reads_only_the_labelled_window_it_needs(tmp_path):
    """Newest labelled day found from the label column alone; older days never read in full."""
    from upath import UPath

    from lead_assets.core.store import warehouse
    from lead_assets.core.model.training import labelled_window

    root = UPath(tmp_path)
    features = make_features(n=2000, start="2021-07-01", days=100, seed=4)
    day = features[CREATED_DATE].dt.strftime("%Y-%m-%d")
    features.loc[(day >= "2021-10-01").to_numpy(), LABEL] = pd.NA  # the newest days: outcomes not known yet
    for key, part in features.groupby(day.to_numpy()):
        warehouse.write_partition(root, "lead_features", key, part)
    chunks = warehouse.DayChunks(root, "lead_features", tuple(sorted(set(day))), chunk_rows=200)
    window = labelled_window(chunks, history_days=30)
    newest = day[features[LABEL].notna().to_numpy()].max()
    assert window[CREATED_DATE].dt.strftime("%Y-%m-%d").max() == newest
    first = (pd.Timestamp(newest) - pd.Timedelta(days=29)).strftime("%Y-%m-%d")
    expected = features[(day >= first).to_numpy() & (day <= newest).to_numpy() & features[LABEL].notna().to_numpy()]
    assert sorted(window["lead_id"]) == sorted(expected["lead_id"]) and window[LABEL].notna().all()
    assert chunks.max_rows_loaded <= 200  # read a chunk of days at a time
    everything = labelled_window(warehouse.DayChunks(root, "lead_features", tuple(sorted(set(day)))), None)
    assert len(everything) == int(features[LABEL].notna().sum())
    empty = warehouse.DayChunks(root, "lead_features", ("2020-01-01",))
    assert labelled_window(empty, 30).empty
