import pandas as pd
import pytest

from lead_assets.core.scoring.capacity import check_capacity, rank_within_day


def _scored():
    return pd.DataFrame({
        "lead_id": ["a", "b", "c", "d", "e"],
        "created_date": pd.to_datetime(["2022-01-01 09:00", "2022-01-01 10:00", "2022-01-01 11:00",
                                        "2022-01-02 09:00", "2022-01-02 10:00"]),
        "probability": [0.5, 0.9, 0.2, 0.7, 0.7],
        "bucket": ["cold", "hot", "junk", "warm", "warm"],
    })


def test_rank_is_per_day_best_first_with_ties_broken_by_lead_id():
    ranked = rank_within_day(_scored(), capacity=None)
    assert ranked.set_index("lead_id")["day_rank"].to_dict() == {"b": 1, "a": 2, "c": 3, "d": 1, "e": 2}


def test_capacity_is_a_second_line_junk_is_never_inside():
    ranked = rank_within_day(_scored(), capacity=1).set_index("lead_id")
    assert ranked["in_capacity"].to_dict() == {"a": False, "b": True, "c": False, "d": True, "e": False}
    roomy = rank_within_day(_scored(), capacity=10).set_index("lead_id")
    assert not roomy.loc["c", "in_capacity"] and roomy["bucket"].equals(_scored().set_index("lead_id")["bucket"])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_capacity_must_be_a_whole_number_of_leads(bad):
    with pytest.raises((ValueError, TypeError)):
        check_capacity(bad)


def test_empty_frame_keeps_its_columns():
    ranked = rank_within_day(_scored().iloc[:0], capacity=5)
    assert list(ranked.columns)[-2:] == ["day_rank", "in_capacity"]
