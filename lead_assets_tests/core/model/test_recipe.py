"""The recipe: tuning split, threshold rule, calibration, flagged share, unseen levels, the bundle."""

import pickle

import numpy as np
import pandas as pd
import pytest

from lead_assets.core import schema
from lead_assets.core.model.judging import expected_calibration_error
from lead_assets.core.model.recipe import (
    Calibrator,
    LeadModel,
    TrainConfig,
    fit_recipe,
    select_threshold,
    sort_labelled,
    tuning_split,
)
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID
from lead_assets_tests.factories import FAST, make_features

@pytest.fixture(scope="module")
def trained():
    return fit_recipe(sort_labelled(make_features()), TrainConfig(**FAST))


# ------------------------------------------------------------------------- threshold rule
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
LABELS = np.array([1, 1, 0, 1, 1, 0, 1, 0])
# p >= t:   0.9    0.8    0.7    0.6    0.5    0.4    0.3    0.2
# recall:   0.2    0.4    0.4    0.6    0.8    0.8    1.0    1.0
# precision 1.0    1.0    0.667  0.75   0.8    0.667  0.714  0.625


def test_threshold_is_the_highest_precision_with_enough_recall():
    choice = select_threshold(LABELS, SCORES, target_recall=0.75, target_precision=0.65)
    assert (choice.threshold, choice.precision, choice.recall) == (0.5, 0.8, 0.8)
    assert choice.meets_targets


def test_threshold_margin_raises_the_recall_floor():
    choice = select_threshold(LABELS, SCORES, target_recall=0.75, target_precision=0.65, recall_margin=0.1)
    assert choice.threshold == 0.3 and choice.recall == 1.0


def test_threshold_flags_unreachable_targets_but_still_picks_the_rule():
    choice = select_threshold(LABELS, SCORES, target_recall=0.75, target_precision=0.85)
    assert choice.threshold == 0.5
    assert not choice.meets_targets
    assert "no threshold reaches precision 0.85" in choice.reason


def test_threshold_keeps_tied_scores_together():
    labels, scores = [1, 0, 1, 1, 0], [0.9, 0.6, 0.6, 0.6, 0.1]
    assert select_threshold(labels, scores, target_recall=0.3).threshold == 0.9
    choice = select_threshold(labels, scores, target_recall=0.5)  # the tied 0.6 leads go in together
    assert (choice.threshold, choice.precision, choice.recall) == (0.6, 0.75, 1.0)


def test_threshold_needs_positives():
    with pytest.raises(ValueError, match="no positive"):
        select_threshold([0, 0, 0], [0.2, 0.5, 0.9])


# --------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_fixes_a_miscalibrated_model(method):
    rng = np.random.default_rng(3)
    true_logit = rng.normal(0, 1.2, 8000)
    y = (rng.random(8000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    raw = 3.0 * true_logit + 1.5  # overconfident and shifted
    calibrator = Calibrator.fit(raw[:4000], y[:4000], method)
    before = expected_calibration_error(y[4000:], 1 / (1 + np.exp(-raw[4000:])))
    after = expected_calibration_error(y[4000:], calibrator(raw[4000:]))
    assert before > 0.1
    assert after < 0.03
    assert np.all(np.diff(calibrator(np.sort(raw))) >= 0)


def test_unknown_calibration_method_is_refused():
    with pytest.raises(ValueError, match="unknown calibration"):
        Calibrator.fit(np.zeros(4), np.array([0, 1, 0, 1]), "magic")


# ------------------------------------------------------------------------- tuning split
def test_tuning_split_respects_time():
    window = sort_labelled(make_features(n=1000))
    split = tuning_split(window, TrainConfig())
    assert split.fit[CREATED_DATE].max() < split.validation[CREATED_DATE].min()
    assert len(split.validation) == pytest.approx(200, abs=2)
    assert sum(len(b) for b in split.blocks) == len(split.validation)
    for earlier, later in zip(split.blocks, split.blocks[1:]):
        assert earlier[CREATED_DATE].max() < later[CREATED_DATE].min()
    assert len(split.blocks) == 3


def test_sort_labelled_drops_unlabelled_rows_and_orders_by_time():
    features = make_features(n=600).sample(frac=1.0, random_state=1)
    features.loc[features.index[::2], LABEL] = pd.NA
    rows = sort_labelled(features)
    assert len(rows) == 300 and rows[LABEL].notna().all()
    assert rows[CREATED_DATE].is_monotonic_increasing
    with pytest.raises(ValueError, match="no labelled"):
        sort_labelled(features.assign(**{LABEL: pd.array([pd.NA] * 600, dtype="Int8")}))


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="unknown cutoff"):
        TrainConfig(cutoff="magic")
    with pytest.raises(ValueError, match="holdout_fraction"):
        TrainConfig(holdout_fraction=1.0)


# -------------------------------------------------------------------------------- recipe
def test_recipe_is_refit_on_the_whole_window(trained):
    window = sort_labelled(make_features())
    assert trained.model.train_window == (str(window[CREATED_DATE].min()), str(window[CREATED_DATE].max()))
    assert trained.validation[CREATED_DATE].max() == window[CREATED_DATE].max()
    assert len(trained.validation) == len(trained.split.validation)
    assert set(trained.validation["block"]) == {1, 2, 3}


def test_recipe_sizes_the_flagged_share_for_the_recall_target(trained):
    """The share is what reached recall target + margin on each validation block, averaged."""
    from lead_assets.core.model.cutoff import flag_share_for_recall

    v, config = trained.validation, TrainConfig(**FAST)
    expected = np.mean([flag_share_for_recall(b[LABEL].astype(int), b["probability"],
                                              config.target_recall + config.recall_margin)
                        for _, b in v.groupby("block")])
    assert trained.flag_share == pytest.approx(expected)
    assert 0 < trained.flag_share < 1
    rule = trained.model.cutoff_rule
    assert rule.flag_share == trained.flag_share and rule.threshold == trained.model.threshold


def test_threshold_rule_keeps_no_share():
    recipe = fit_recipe(sort_labelled(make_features(n=1200)), TrainConfig(cutoff="threshold", **FAST))
    assert recipe.flag_share is None
    assert recipe.model.cutoff_rule.flag_share is None


def test_seeds_are_averaged_into_one_model():
    window = sort_labelled(make_features(n=1200))
    one = fit_recipe(window, TrainConfig(**FAST))
    three = fit_recipe(window, TrainConfig(seeds=3, **FAST))
    rows = window.tail(50)
    assert not np.allclose(one.model.raw_scores(rows), three.model.raw_scores(rows))
    assert type(three.model.raw_model).__name__ == "CatBoost"
    assert np.isfinite(three.model.predict_proba(rows)).all()


def test_models_from_before_the_cutoff_rule_still_score(trained):
    """A pickled LeadModel without the cutoff field falls back to its fixed threshold."""
    old = pickle.loads(pickle.dumps(trained.model))
    del old.__dict__["cutoff"]
    assert old.cutoff_rule.flag_share is None
    assert old.cutoff_rule.threshold == trained.model.threshold


# ------------------------------------------------------------------------------ bundle
def test_model_reads_only_the_feature_columns(trained):
    model = trained.model
    assert model.features == schema.feature_columns()
    assert not {LABEL, LEAD_ID, CREATED_DATE} & set(model.raw_model.feature_names_)
    rows = make_features(n=300, seed=5)
    with_extras = model.predict_proba(rows)
    bare = model.predict_proba(rows[list(schema.feature_columns())].iloc[:, ::-1])
    np.testing.assert_allclose(with_extras, bare)


def test_unseen_levels_are_flagged_with_their_columns(trained):
    rows = make_features(n=4, seed=5).reset_index(drop=True)
    rows.loc[1, "platform_level"] = "Level999"
    rows.loc[2, "platform_level"] = "Level999"
    rows.loc[2, "city"] = "atlantis"
    flags = trained.model.unseen_levels(rows)
    assert flags.tolist() == [False, True, True, False]
    assert trained.model.unseen_columns(rows).tolist() == ["", "platform_level", "city,platform_level", ""]
    assert np.isfinite(trained.model.predict_proba(rows)).all()


def test_bundle_pickles(trained):
    rows = make_features(n=200, seed=6)
    clone = pickle.loads(pickle.dumps(trained.model))
    assert isinstance(clone, LeadModel)
    np.testing.assert_allclose(clone.predict_proba(rows), trained.model.predict_proba(rows))
    assert clone.threshold == trained.model.threshold
    assert clone.levels == trained.model.levels
    assert clone.cutoff_rule == trained.model.cutoff_rule


def test_unreachable_targets_set_the_flag_and_the_reason():
    recipe = fit_recipe(sort_labelled(make_features(n=1200, seed=4)), TrainConfig(target_precision=0.999, **FAST))
    assert recipe.choice.meets_targets is False
    assert "no threshold reaches precision" in recipe.choice.reason
