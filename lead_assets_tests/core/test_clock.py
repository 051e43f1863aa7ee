import os
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


def test_a_clock_file_moves_every_process_that_reads_it_and_time_flows_from_its_moment(monkeypatch, tmp_path):
    monkeypatch.delenv(clock.NOW_ENV, raising=False)
    path = tmp_path / "now"
    monkeypatch.setenv(clock.NOW_FILE_ENV, str(path))
    assert abs(clock.now() - datetime.now(timezone.utc)) < timedelta(seconds=5)  # no file yet: real time
    clock.set_file(path, datetime(2021, 9, 15, 10, 30, tzinfo=timezone.utc))
    later = datetime.now().timestamp() - 90  # as if written 90 s ago
    os.utime(path, (later, later))
    moved = clock.now()
    assert timedelta(seconds=89) < moved - datetime(2021, 9, 15, 10, 30, tzinfo=timezone.utc) < timedelta(seconds=95)
    clock.set_file(path, datetime(2021, 10, 1))
    assert clock.today() == date(2021, 10, 1)  # read on every call: a running server follows it
    monkeypatch.setenv(clock.NOW_ENV, "2021-01-01")
    assert clock.today() == date(2021, 1, 1)  # the fixed moment wins
    monkeypatch.delenv(clock.NOW_ENV)
    path.write_text("soon")
    with pytest.raises(ValueError, match=r"LEAD_ASSETS_NOW_FILE \(.*now\) holds 'soon'"):
        clock.now()
