from datetime import date, datetime, timedelta, timezone

import pytest

from lead_assets.core import clock


def test_real_time_when_unset(monkeypatch):
    monkeypatch.delenv(clock.NOW_ENV, raising=False)
    assert abs(clock.now() - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_a_replay_sets_the_time(monkeypatch):
    monkeypatch.setenv(clock.NOW_ENV, "2021-09-15T10:30:00")
    assert clock.now() == datetime(2021, 9, 15, 10, 30, tzinfo=timezone.utc)
    assert clock.today() == date(2021, 9, 15)
    monkeypatch.setenv(clock.NOW_ENV, "2021-09-15T23:30:00-02:00")
    assert clock.today() == date(2021, 9, 16)


def test_a_bad_setting_names_itself(monkeypatch):
    monkeypatch.setenv(clock.NOW_ENV, "yesterday")
    with pytest.raises(ValueError, match="LEAD_ASSETS_NOW='yesterday'"):
        clock.now()
