import numpy as np
import pandas as pd
import pytest
from upath import UPath

from lead_assets.core.model import recalibration
from lead_assets.core.model.judging import calibration_by_decile
from lead_assets.core.model.recipe import TrainConfig
from lead_assets.core.model.training import train_model
from lead_assets.core.scoring.batch import score_leads
from lead_assets.core.schema import CREATED_DATE, LABEL
from lead_assets_tests.factories import FAST, make_features


@pytest.fixture(scope="module")
def model():
    return train_model(make_features(n=1200, seed=8), TrainConfig(**FAST)).model


def drifted(n: int, slope: float, intercept: float, seed: int = 0):
    """Probabilities a model serves, and outcomes that follow a distorted version of them."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    truth = 1 / (1 + np.exp(-(slope * recalibration.logit(p) + intercept)))
    return p, rng.binomial(1, truth), pd.Series(pd.date_range("2021-10-01", periods=n, freq="30min"))


def test_a_refit_recovers_the_drift_and_removes_the_calibration_error():
    p, y, created = drifted(20_000, slope=0.7, intercept=-0.4)
    refit = recalibration.fit("3", p, y, created, "2021-11-01T00:00:00", min_outcomes=300)
    assert refit.slope == pytest.approx(0.7, abs=0.05) and refit.intercept == pytest.approx(-0.4, abs=0.05)
    assert refit.calibration_error_before > 0.05 and refit.calibration_error_after < 0.015
    assert calibration_by_decile(y, refit.apply(p))[0] == pytest.approx(refit.calibration_error_after)
    assert (refit.since, refit.until, refit.outcomes, refit.positives) == (
        "2021-10-01", created.max().strftime("%Y-%m-%d"), 20_000, int(y.sum()))
    assert np.all(np.diff(refit.apply(np.sort(p))) >= 0)  # the ranking is kept


def test_too_few_outcomes_or_a_single_class_waits():
    p, y, created = drifted(299, 1.0, 0.0)
    assert "299 outcomes" in recalibration.fit("3", p, y, created, "t", min_outcomes=300)
    assert "both outcomes" in recalibration.fit("3", p, np.ones(400), created.iloc[:1].repeat(400), "t", 300)
    assert recalibration.waiting_reason("3", 300, 150, 300) is None


def test_the_sample_is_the_latest_window_of_leads_the_version_was_not_trained_on():
    days = pd.date_range("2021-09-01", "2021-11-30", freq="D")
    labelled = pd.DataFrame({CREATED_DATE: days, LABEL: pd.array([1, 0, pd.NA] * 30 + [1], dtype="Int8")})
    sample = recalibration.matured_sample(labelled, "2021-10-15", window_days=30)
    assert sample[CREATED_DATE].min() >= pd.Timestamp("2021-10-31")  # 30 days up to the newest label
    assert sample[LABEL].notna().all() and sample[CREATED_DATE].max() == pd.Timestamp("2021-11-30")
    recent = recalibration.matured_sample(labelled, "2021-11-20", window_days=30)
    assert recent[CREATED_DATE].min() > pd.Timestamp("2021-11-20")  # never a lead it was trained on
    assert recalibration.matured_sample(labelled, "2021-11-30").empty


def test_the_recalibrated_model_keeps_the_flags_and_moves_the_probabilities(model):
    features = make_features(n=600, start="2021-11-01", days=20, seed=3)
    refit = recalibration.Recalibration("7", "2021-12-01T00:00:00", 0.8, -0.3, 500, 200, "2021-10-01",
                                        "2021-10-30", 0.08, 0.01)
    served = recalibration.recalibrated(model, refit)
    before = score_leads(features, model, "lead_scoring", "7")
    after = score_leads(features, served, "lead_scoring", "7")
    np.testing.assert_allclose(after["probability"], refit.apply(before["probability"]), rtol=0, atol=1e-12)
    assert ((after["bucket"] == "junk") == (before["bucket"] == "junk")).all()  # a rank: same leads flagged
    assert served.cutoff_rule.threshold == pytest.approx(float(refit.apply(model.threshold)))
    again = recalibration.recalibrated(served, refit)  # a refit replaces the one before, never stacks
    np.testing.assert_allclose(again.predict_proba(features), served.predict_proba(features), atol=1e-12)
    assert again.threshold == served.threshold
    assert recalibration.recalibrated(model, None) is model


def test_every_refit_is_kept_per_version_and_the_latest_is_in_force(tmp_path):
    root = UPath(tmp_path)
    assert recalibration.latest(root, "3") is None
    first = recalibration.Recalibration("3", "2021-11-01T00:00:00", 0.9, 0.1, 400, 200, "2021-10-01", "2021-10-20",
                                        0.05, 0.01)
    second = recalibration.Recalibration("3", "2021-11-02T00:00:00", 0.8, 0.2, 500, 240, "2021-10-01", "2021-10-21",
                                         0.06, 0.01)
    recalibration.record(root, first)
    recalibration.record(root, second)
    assert recalibration.history(root, "3") == [first, second] and recalibration.latest(root, "3") == second
    assert recalibration.latest(root, "4") is None
    assert recalibration.same_sample(second, 500, 240, "2021-10-01", "2021-10-21")
    assert not recalibration.same_sample(second, 501, 240, "2021-10-01", "2021-10-21")
