"""Scoring: probabilities, scores, buckets, SHAP reasons, unseen levels, metadata columns."""

import numpy as np
import pandas as pd
import pytest
from catboost import Pool

from lead_assets.core.model.recipe import TrainConfig
from lead_assets.core.model.training import train_model
from lead_assets.core.scoring.batch import BUCKETS, BucketConfig, assign_buckets, score_leads
from lead_assets.core.schema import CREATED_DATE, LEAD_ID
from lead_assets_tests.factories import FAST, make_features


@pytest.fixture(scope="module")
def model():
    return train_model(make_features(n=2400, seed=5), TrainConfig(**FAST)).model


@pytest.fixture(scope="module")
def leads():
    """New leads, a third of them repeating another lead's features (scoring shares their SHAP work)."""
    base = make_features(n=300, start="2021-12-01", days=3, seed=6)
    repeats = base.sample(100, random_state=1).assign(**{LEAD_ID: [f"repeat-{i}" for i in range(100)]})
    return pd.concat([base, repeats]).sample(frac=1.0, random_state=2).reset_index(drop=True)


@pytest.fixture(scope="module")
def scored(model, leads):
    return score_leads(leads, model, model_name="lead_scoring", model_version=7,
                       buckets=BucketConfig(), scored_at="2021-12-04 10:00:00")


def test_columns_and_metadata(scored, leads):
    assert list(scored.columns[:5]) == [LEAD_ID, CREATED_DATE, "probability", "score", "bucket"]
    for column in ("cutoff", "cutoff_rule", "reasons", "reason_1_feature", "reason_3_shap", "unseen_levels", "unseen_columns",
                   "model_name", "model_version", "scored_at"):
        assert column in scored.columns
    assert scored[LEAD_ID].tolist() == leads[LEAD_ID].tolist()
    assert (scored["model_version"] == "7").all() and (scored["model_name"] == "lead_scoring").all()
    assert str(scored["scored_at"].dt.tz) == "UTC"
    assert (scored["scored_at"] == pd.Timestamp("2021-12-04 10:00:00", tz="UTC")).all()


def test_probability_is_the_calibrated_model_output(scored, model, leads):
    np.testing.assert_allclose(scored["probability"], model.predict_proba(leads), atol=1e-9)
    assert (scored["score"] == np.rint(100 * scored["probability"])).all()
    assert scored["score"].between(0, 100).all() and scored["score"].dtype.kind == "i"


def test_reasons_agree_with_shap_values(scored, model, leads):
    shap = model.raw_model.get_feature_importance(
        Pool(leads[list(model.features)], cat_features=list(model.categorical)), type="ShapValues")[:, :-1]
    for row in range(len(leads)):
        top = np.argsort(-np.abs(shap[row]), kind="stable")[:3]
        expected = [model.features[j] for j in top]
        got = [scored.at[row, f"reason_{k}_feature"] for k in (1, 2, 3)]
        assert got == expected
        for k, j in enumerate(top, start=1):
            assert scored.at[row, f"reason_{k}_shap"] == pytest.approx(shap[row, j])
            value = leads.at[row, model.features[j]]
            assert scored.at[row, f"reason_{k}_value"] == (f"{value:g}" if isinstance(value, float) else value)
        text = scored.at[row, "reasons"].split("; ")
        assert [part.split("=")[0] for part in text] == expected
        assert [part.rsplit("(", 1)[1][0] for part in text] == ["+" if shap[row, j] >= 0 else "-" for j in top]


def test_repeated_leads_get_the_same_scores_and_reasons(scored, leads, model):
    columns = list(model.features)
    repeated = leads.duplicated(subset=columns, keep=False).to_numpy()
    assert repeated.sum() >= 100
    per_vector = scored[repeated].groupby(leads.loc[repeated, columns].astype(str).agg("|".join, axis=1))
    assert (per_vector["probability"].nunique() == 1).all() and (per_vector["reasons"].nunique() == 1).all()


def test_buckets_follow_probability_and_threshold():
    p = np.array([0.95, 0.8, 0.7, 0.6, 0.55, 0.5, 0.1])
    assert assign_buckets(p, 0.5, BucketConfig()).tolist() == ["hot", "hot", "warm", "warm", "cold", "cold", "junk"]
    # a threshold above the warm cut-off: nothing below it is called, and there is no cold
    assert assign_buckets(p, 0.65, BucketConfig()).tolist() == ["hot", "hot", "warm", "junk", "junk", "junk", "junk"]
    # above the hot cut-off: whatever passes is hot
    assert assign_buckets(p, 0.9, BucketConfig()).tolist() == ["hot"] + ["junk"] * 6


def test_bucket_order_is_consistent(scored, model):
    """Within a day (one cut-off) buckets follow the probability; across days the cut-off may move."""
    rank = {b: i for i, b in enumerate(BUCKETS)}
    for _, day in scored.groupby(scored[CREATED_DATE].dt.date):
        assert day.sort_values("probability", ascending=False)["bucket"].map(rank).is_monotonic_increasing
    assert ((scored["bucket"] == "junk") == (scored["probability"] < scored["cutoff"])).all()
    hot = scored["bucket"] == "hot"
    assert (scored.loc[hot, "probability"] >= np.maximum(0.8, scored.loc[hot, "cutoff"])).all()


def test_each_lead_records_its_cutoff_and_rule(scored, model):
    day = scored[CREATED_DATE].dt.strftime("%Y-%m-%d")
    first = day == day.min()
    assert scored.loc[first, "cutoff_rule"].str.startswith("fixed threshold").all()  # one day: < 200 leads
    assert (scored.loc[first, "cutoff"] == model.threshold).all()
    later = scored.loc[~first]
    assert later["cutoff_rule"].str.startswith(f"top {model.cutoff_rule.flag_share:.1%} of ").all()
    for _, same_day in later.groupby(day[~first]):
        assert same_day["cutoff"].nunique() == 1


def test_a_day_scored_alone_with_its_context_gets_the_same_cutoffs(scored, model, leads):
    """A run of one day reads the days before it as context: same cut-offs as a run of all days."""
    day = leads[CREATED_DATE].dt.strftime("%Y-%m-%d")
    last = day == day.max()
    alone = score_leads(leads[last], model, "lead_scoring", "7", context=leads[~last])
    together = scored.set_index(LEAD_ID).loc[alone[LEAD_ID]]
    np.testing.assert_allclose(alone["cutoff"].to_numpy(), together["cutoff"].to_numpy(), rtol=0, atol=1e-12)
    assert alone["bucket"].tolist() == together["bucket"].tolist()
    assert len(alone) == last.sum()  # the context is not scored


def test_bucket_config_is_validated():
    with pytest.raises(ValueError, match="warm <= hot"):
        BucketConfig(hot=0.5, warm=0.7)


def test_unseen_levels_reach_the_scores(model, leads):
    rows = leads.head(3).copy()
    rows.loc[0, "source_level"] = "Level12345"
    scored = score_leads(rows, model, "lead_scoring", "1")
    assert scored["unseen_levels"].tolist() == [True, False, False]
    assert scored["unseen_columns"].tolist() == ["source_level", "", ""]


def test_no_leads_gives_an_empty_table_with_the_columns(model, leads, scored):
    empty = score_leads(leads.iloc[:0], model, "lead_scoring", "1")
    assert empty.empty and list(empty.columns) == list(scored.columns)
