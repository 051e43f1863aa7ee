"""Training: the time split, the threshold rule, calibration, unseen levels, the bundle."""

import pickle

import numpy as np
import pandas as pd
import pytest

from lead_assets.core import schema
from lead_assets.core.evaluation import expected_calibration_error
from lead_assets.core.model import (
    Calibrator,
    LeadModel,
    TrainConfig,
    select_threshold,
    time_split,
    train_model,
)
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID

FAST = dict(iterations=60, min_iterations=20, early_stopping_rounds=20, thread_count=2)


def make_features(n: int = 2400, start: str = "2021-07-01", days: int = 120, seed: int = 0,
                  signal: float = 1.0, shuffle_labels: bool = False) -> pd.DataFrame:
    """A feature table (as ``build_features`` makes it) with a planted signal: good platforms,
    bad sources, more courses looked at and referrals move the odds of completing."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, days * 86400, n))
    created = pd.Timestamp(start) + pd.to_timedelta(seconds.round(), unit="s")
    cities = np.array(["mumbai", "ncr", "pune", "indore", "agra", "missing", *[f"town{i}" for i in range(30)]])
    city = rng.choice(cities, n)
    tiers = {"mumbai": 1, "ncr": 1, "pune": 1, "indore": 2, "agra": 2}
    city_effect = dict(zip(cities, np.random.default_rng(99).normal(0, 0.6, len(cities))))
    platform = rng.choice(["Level0", "Level3", "Level1", "Level2", "Level47"], n)
    medium = rng.choice(["Level0", "Level2", "Level6", "Level300"], n)
    source = rng.choice(["Level0", "Level2", "Level7", "Level99"], n)
    dropped = rng.integers(1, 11, n).astype(float)
    referred = (rng.random(n) < 0.08).astype(float)
    logit = (-0.6 + signal * (2.0 * np.isin(platform, ["Level0", "Level3"]) - 1.8 * (source == "Level99")
                              + 0.4 * (dropped - 4) + 1.0 * referred + pd.Series(city).map(city_effect).to_numpy())
             + rng.normal(0, 0.3, n))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    if shuffle_labels:
        label = rng.permutation(label)
    frame = pd.DataFrame({
        LEAD_ID: [f"lead-{seed}-{i}" for i in range(n)],
        CREATED_DATE: created,
        "city": city, "platform_level": platform, "medium_level": medium, "source_level": source,
        "city_tier": pd.Series(city).map(tiers).fillna(3).astype(float),
        schema.LEADS_DROPPED: dropped, schema.REFERRED: referred,
    })
    for group in schema.reference().group_columns:
        frame[group] = 0.0
    frame[LABEL] = pd.array(label, dtype="Int8")
    return frame[[LEAD_ID, CREATED_DATE, *schema.feature_columns(), LABEL]]


@pytest.fixture(scope="module")
def trained():
    return train_model(make_features(), TrainConfig(**FAST))


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


# -------------------------------------------------------------------------------- split
def test_split_respects_time():
    features = make_features(n=1000)
    split = time_split(features, TrainConfig())
    assert split.train[CREATED_DATE].max() < split.holdout[CREATED_DATE].min()
    assert split.fit[CREATED_DATE].max() < split.validation[CREATED_DATE].min()
    assert len(split.holdout) == pytest.approx(200, abs=2)
    assert len(split.validation) == pytest.approx(160, abs=2)
    assert sum(len(b) for b in split.blocks) == len(split.validation)
    for earlier, later in zip(split.blocks, split.blocks[1:]):
        assert earlier[CREATED_DATE].max() < later[CREATED_DATE].min()
    assert len(split.blocks) == 3


def test_train_until_is_a_whole_day_and_the_rest_is_holdout():
    features = make_features(n=1000)
    features.loc[500, CREATED_DATE] = pd.Timestamp("2021-09-15 23:59:59")
    features = features.sort_values(CREATED_DATE, ignore_index=True)
    split = time_split(features, TrainConfig(train_until="2021-09-15"))
    assert split.train[CREATED_DATE].max() <= pd.Timestamp("2021-09-15 23:59:59")
    assert pd.Timestamp("2021-09-15 23:59:59") in set(split.train[CREATED_DATE])
    assert split.holdout[CREATED_DATE].min() >= pd.Timestamp("2021-09-16")
    assert len(split.train) + len(split.holdout) == 1000


def test_unlabelled_rows_are_not_trained_on_and_bad_splits_say_why():
    features = make_features(n=600)
    features.loc[::2, LABEL] = pd.NA
    assert len(time_split(features, TrainConfig()).train) + len(time_split(features, TrainConfig()).holdout) == 300
    with pytest.raises(ValueError, match="holdout"):
        time_split(make_features(n=600), TrainConfig(train_until="2030-01-01"))
    with pytest.raises(ValueError, match="no labelled"):
        time_split(features.assign(**{LABEL: pd.array([pd.NA] * 600, dtype="Int8")}), TrainConfig())


# ------------------------------------------------------------------------------ training
def test_training_result_is_complete(trained):
    m = trained.metrics
    for key in ("auc", "precision", "recall", "f1", "brier", "ece", "threshold", "n_train", "n_validation",
                "n_test", "positive_rate_test", "precision_top_10pct", "lift_top_10pct", "precision_top_30pct",
                "tp", "fp", "fn", "tn", "validation_auc", "iterations"):
        assert np.isfinite(m[key]), key
    assert m["n_train"] + m["n_test"] == 2400
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == m["n_test"]
    assert m["auc"] > 0.8  # the planted signal is found
    assert trained.holdout["probability"].between(0, 1).all()
    assert len(trained.holdout) == m["n_test"]
    assert trained.windows["train"][1] < trained.windows["holdout"][0]
    assert trained.validation_window[1] == trained.windows["train"][1]
    assert set(trained.segments["segment"]) == {"city_tier", "platform", "medium", "source"}
    assert len(trained.lift) == 10
    for section in ("## Intended use", "## Data", "## Holdout metrics", "## Decision threshold",
                    "## Calibration", "## Segments", "## Limitations"):
        assert section in trained.card_markdown
    assert trained.windows["holdout"][0] in trained.card_markdown
    assert trained.params["iterations_chosen"] == m["iterations"]


def test_model_reads_only_the_feature_columns(trained):
    model = trained.model
    assert model.features == schema.feature_columns()
    assert not {LABEL, LEAD_ID, CREATED_DATE} & set(model.raw_model.feature_names_)
    holdout = trained.holdout
    with_extras = model.predict_proba(holdout)
    bare = model.predict_proba(holdout[list(schema.feature_columns())].iloc[:, ::-1])
    np.testing.assert_allclose(with_extras, bare)
    np.testing.assert_allclose(with_extras, holdout["probability"])


def test_unseen_levels_are_flagged_with_their_columns(trained):
    rows = trained.holdout.head(4).copy().reset_index(drop=True)
    rows.loc[1, "platform_level"] = "Level999"
    rows.loc[2, "platform_level"] = "Level999"
    rows.loc[2, "city"] = "atlantis"
    flags = trained.model.unseen_levels(rows)
    assert flags.tolist() == [False, True, True, False]
    assert trained.model.unseen_columns(rows).tolist() == ["", "platform_level", "city,platform_level", ""]
    assert np.isfinite(trained.model.predict_proba(rows)).all()


def test_bundle_pickles(trained):
    clone = pickle.loads(pickle.dumps(trained.model))
    assert isinstance(clone, LeadModel)
    np.testing.assert_allclose(clone.predict_proba(trained.holdout), trained.holdout["probability"])
    assert clone.threshold == trained.model.threshold
    assert clone.levels == trained.model.levels


def test_unreachable_targets_set_the_flag_and_the_reason():
    result = train_model(make_features(n=1200, seed=4), TrainConfig(target_precision=0.999, **FAST))
    assert result.threshold_meets_targets is False
    assert result.metrics["threshold_meets_targets"] == 0.0
    assert "no threshold reaches precision" in result.threshold_reason
    assert "does not meet the targets" in result.card_markdown
