"""The junk cut-off: a share of the trailing window's leads, the same whatever the run grouped."""

import numpy as np
import pandas as pd
import pytest

from lead_assets.core.model.cutoff import CutoffRule, flag_share_for_recall, trailing_cutoffs


def _days(counts: dict[str, int]) -> pd.Series:
    return pd.Series(pd.to_datetime([f"{day} 12:00:00" for day, n in counts.items() for _ in range(n)]))


def test_cutoff_keeps_the_share_of_the_trailing_window():
    dates = _days({"2022-01-01": 100, "2022-01-02": 100, "2022-01-03": 100})
    p = np.r_[np.linspace(0, 1, 100), np.linspace(0, 1, 100) + 1, np.linspace(0, 1, 100) + 2]
    cut, text = trailing_cutoffs(dates, p, CutoffRule(flag_share=0.25, threshold=0.5, window_days=2, min_leads=50))
    day1, day2, day3 = cut[:100], cut[100:200], cut[200:]
    assert (p[:100] >= day1[0]).mean() == pytest.approx(0.25, abs=0.01)  # window: day 1 alone
    assert (p[:200] >= day2[0]).mean() == pytest.approx(0.25, abs=0.01)  # window: days 1-2
    assert (p[100:] >= day3[0]).mean() == pytest.approx(0.25, abs=0.01)  # day 1 has left the window
    assert len(set(day3)) == 1
    assert text[250] == "top 25.0% of 200 leads created 2022-01-02..2022-01-03"


def test_cutoff_does_not_depend_on_how_the_days_are_grouped():
    rng = np.random.default_rng(0)
    dates = _days({f"2022-01-{d:02d}": 40 for d in range(1, 21)})
    p = rng.random(len(dates))
    rule = CutoffRule(flag_share=0.6, threshold=0.5, window_days=7, min_leads=10)
    whole, _ = trailing_cutoffs(dates, p, rule)
    later = (dates >= "2022-01-10").to_numpy()
    window = (dates >= "2022-01-04").to_numpy()  # the 6 days before 01-10 and on
    part, _ = trailing_cutoffs(dates[window], p[window], rule)
    np.testing.assert_array_equal(whole[later], part[later[window]])


def test_small_windows_fall_back_to_the_fixed_threshold():
    dates = _days({"2022-01-01": 5})
    cut, text = trailing_cutoffs(dates, np.linspace(0, 1, 5), CutoffRule(flag_share=0.5, threshold=0.42))
    assert (cut == 0.42).all()
    assert text[0] == "fixed threshold 0.420: 5 leads created 2022-01-01..2022-01-01 < 200"


def test_no_share_means_the_fixed_threshold():
    cut, text = trailing_cutoffs(_days({"2022-01-01": 300}), np.linspace(0, 1, 300),
                                 CutoffRule(flag_share=None, threshold=0.6))
    assert (cut == 0.6).all() and text[0] == "fixed threshold 0.600"


def test_timezone_aware_dates_use_utc_days():
    dates = pd.Series(pd.to_datetime(["2022-01-01 23:30:00", "2022-01-02 00:30:00"]).tz_localize("UTC"))
    cut, text = trailing_cutoffs(dates, np.array([0.2, 0.9]), CutoffRule(0.5, 0.5, window_days=1, min_leads=1))
    assert text[0].endswith("2022-01-01..2022-01-01") and text[1].endswith("2022-01-02..2022-01-02")


def test_rule_validates_its_settings():
    with pytest.raises(ValueError, match="flag_share"):
        CutoffRule(flag_share=1.5, threshold=0.5)
    with pytest.raises(ValueError, match="window_days"):
        CutoffRule(flag_share=0.5, threshold=0.5, window_days=0)


def test_flag_share_for_recall():
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert flag_share_for_recall(y, p, 0.5) == 2 / 8
    assert flag_share_for_recall(y, p, 0.75) == 4 / 8
    assert flag_share_for_recall(y, p, 1.0) == 7 / 8
    with pytest.raises(ValueError, match="no positive"):
        flag_share_for_recall([0, 0], [0.1, 0.2], 0.75)
