"""The inbox sensor over a real temporary inbox: fates, one run per tick, idempotent cursors."""

import gzip
import json
import os
import sys
import time

import pandas as pd
import pytest
from dagster import AssetMaterialization, build_sensor_context

from lead_assets.core.inbox import ledger, parsing, reader
from lead_assets.defs.inbox.ingest import inbox_sensor
from lead_assets.defs.resources import LeadHomeResource
from lead_assets_tests.factories import raw_leads

pytestmark = pytest.mark.slow(seconds=25)  # started first by make test (conftest.py)


def tick(instance, cursor=None, settle=0.0, **limits):
    context = build_sensor_context(instance=instance, cursor=cursor,
                                   resources={"lead_home": LeadHomeResource(settle_seconds=settle, **limits)})
    result = inbox_sensor(context)
    return result, result.cursor


def drop(home, name, frame):
    path = home.inbox / name
    frame.to_csv(path.path, index=False)
    old = time.time() - 10
    os.utime(path.path, (old, old))
    return path


def test_files_of_one_tick_become_one_run_over_their_range(lead_home, instance):
    drop(lead_home, "a.csv", pd.concat([raw_leads(3, "2021-07-05"), raw_leads(3, "2021-07-09", seed=1)]))
    drop(lead_home, "b.csv", raw_leads(3, "2021-08-01", seed=2))
    result, cursor = tick(instance)
    (request,) = result.run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2021-07-05"
    assert request.tags["dagster/asset_partition_range_end"] == "2021-08-01"
    assert len(ledger.landed_entries(lead_home)) == 2 and not any(lead_home.inbox.iterdir())
    again, _ = tick(instance, cursor)
    assert not again.run_requests


def test_before_the_first_champion_the_inbox_run_stops_at_features(lead_home, instance):
    """Scoring without a champion fails every run: until one exists, ingest through lead_features."""
    drop(lead_home, "a.csv", raw_leads(3, "2021-07-05"))
    result, cursor = tick(instance)
    (request,) = result.run_requests
    assert {k.to_user_string() for k in request.asset_selection} == {"raw_leads", "cleaned_leads", "lead_features"}
    instance.report_runless_asset_event(AssetMaterialization("champion_model"))
    drop(lead_home, "b.csv", raw_leads(3, "2021-07-06", seed=1))
    (request,) = tick(instance, cursor)[0].run_requests
    assert {k.to_user_string() for k in request.asset_selection} == {
        "raw_leads", "cleaned_leads", "lead_features", "scored_leads", "crm_export"}


def test_a_file_still_being_written_waits(lead_home, instance):
    path = lead_home.inbox / "growing.csv"
    raw_leads(3).to_csv(path.path, index=False)
    result, cursor = tick(instance, settle=60)
    assert not result.run_requests and path.exists()
    assert "growing.csv" in json.loads(cursor)["seen"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="file leases are Linux's")
def test_with_settle_closed_files_a_complete_fresh_file_lands_at_once_and_an_open_one_waits(lead_home, instance):
    """core.inbox.writers: a file no process writes any more is ready before the settle time."""
    done = lead_home.inbox / "closed.csv"
    raw_leads(3, "2021-07-05").to_csv(done.path, index=False)  # just written and closed
    growing = lead_home.inbox / "growing.csv"
    writer = open(growing.path, "w")
    try:
        writer.write(raw_leads(3, "2021-07-06", seed=1).to_csv(index=False))
        writer.flush()
        result, cursor = tick(instance, settle=60, settle_closed_files=True)
        (request,) = result.run_requests
        assert request.tags["lead_assets/files"] == "closed.csv" and growing.exists() and not done.exists()
        assert "growing.csv" in json.loads(cursor)["seen"]
    finally:
        writer.close()
    result, cursor = tick(instance, cursor, settle=60, settle_closed_files=True)  # closed now
    (request,) = result.run_requests
    assert request.tags["lead_assets/files"] == "growing.csv" and not growing.exists()
    raw_leads(3, "2021-07-07", seed=2).to_csv((lead_home.inbox / "later.csv").path, index=False)
    assert not tick(instance, cursor, settle=60)[0].run_requests  # off by default: the settle time applies


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="file leases are Linux's")
def test_with_settle_closed_files_a_writer_that_paused_past_the_settle_time_keeps_its_file(lead_home, instance):
    """A file unchanged for longer than the settle time but still held open for writing (an export
    job that stalls) is not taken while the writer has it: it would be landed, or quarantined as a
    header-only file, half-written. Without the setting the settle time alone decides."""
    path = lead_home.inbox / "stalled.csv"
    writer = open(path.path, "w")
    try:
        writer.write(raw_leads(3, "2021-07-05").to_csv(index=False).splitlines()[0] + "\n")  # the header so far
        writer.flush()
        old = time.time() - 120
        os.utime(path.path, (old, old))
        result, cursor = tick(instance, settle=60, settle_closed_files=True)
        assert not result.run_requests and path.exists() and "stalled.csv" in json.loads(cursor)["seen"]
        writer.write("\n".join(raw_leads(3, "2021-07-05").to_csv(index=False).splitlines()[1:]) + "\n")
    finally:
        writer.close()
    result, _ = tick(instance, cursor, settle=60, settle_closed_files=True)  # closed: the whole file lands at once
    (request,) = result.run_requests
    assert request.tags["lead_assets/files"] == "stalled.csv" and not path.exists()
    (entry,) = ledger.landed_entries(lead_home)
    assert entry.rows_read == 3


def test_bad_files_are_quarantined_and_ask_for_no_run(lead_home, instance):
    bad = lead_home.inbox / "bad.csv"
    bad.write_bytes(b"")
    os.utime(bad.path, (time.time() - 10, time.time() - 10))
    result, _ = tick(instance)
    assert not result.run_requests
    assert any(p.name.endswith(".reason.json") for p in lead_home.quarantine.iterdir())


def test_landed_but_unrequested_files_are_picked_up_after_a_crash(lead_home, instance):
    """A daemon that died after landing a file but before its cursor was saved loses nothing."""
    ledger.receive(lead_home, drop(lead_home, "a.csv", raw_leads(3)), *_days())
    result, cursor = tick(instance, cursor=None)
    assert len(result.run_requests) == 1
    assert not tick(instance, cursor)[0].run_requests


def test_fifty_files_at_once_are_each_landed_once(lead_home, instance):
    for i in range(50):
        drop(lead_home, f"f{i:02d}.csv", raw_leads(2, f"2021-07-{1 + i % 28:02d}", seed=i))
    result, cursor = tick(instance)
    assert len(result.run_requests) == 1
    assert len(ledger.landed_entries(lead_home)) == 50
    assert not tick(instance, cursor)[0].run_requests


def _days():
    from datetime import date
    return date(2021, 7, 1), date(2026, 11, 24)


def test_a_million_row_file_is_landed_by_one_cheap_tick(lead_home, instance, monkeypatch):
    """The tick reads only the header and created_date: no pandas parse, a fixed number of passes."""
    template = raw_leads(1, "2021-07-05")
    header = ",".join(template.columns)
    row = template.iloc[0].astype(str).replace("nan", "").tolist()
    date_at = list(template.columns).index("created_date")
    lines = [header]
    for i in range(1_000_000):
        row[date_at] = f"2021-{7 + i % 5:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}"
        lines.append(",".join(row))
    path = lead_home.inbox / "export.csv"
    path.write_text("\n".join(lines) + "\n")
    os.utime(path.path, (time.time() - 10, time.time() - 10))
    passes = []
    real_open = reader.open_binary
    monkeypatch.setattr(reader, "open_binary", lambda p: passes.append(p) or real_open(p))
    monkeypatch.setattr(pd, "read_csv", _forbidden)
    monkeypatch.setattr(parsing, "parse_lead_file", _forbidden)
    monkeypatch.setattr(parsing, "parse_lead_chunks", _forbidden)
    result, _ = tick(instance)
    (request,) = result.run_requests
    (entry,) = ledger.landed_entries(lead_home)
    assert entry.rows_read == 1_000_000 and sum(entry.days.values()) == 1_000_000
    assert request.tags["dagster/asset_partition_range_start"] == "2021-07-01"
    assert request.tags["dagster/asset_partition_range_end"] == "2021-11-28"
    assert len(passes) == 3  # the head (header), one streaming pass for encoding and size, one reading the rows


def _forbidden(*args, **kwargs):
    raise AssertionError("a sensor tick must not parse files with pandas")


def test_an_idle_tick_reads_no_history(lead_home, instance, monkeypatch):
    """With files already landed and requested, a tick reads no ledger JSON and no index line."""
    for i in range(30):
        drop(lead_home, f"f{i:02d}.csv", raw_leads(2, f"2021-07-{1 + i % 28:02d}", seed=i))
    _, cursor = tick(instance)
    read = []
    real = ledger.read_index
    monkeypatch.setattr(ledger, "read_index", lambda home, offset=0: read.append(real(home, offset)) or read[-1])
    monkeypatch.setattr(ledger, "read_entry", _forbidden)
    result, _ = tick(instance, cursor)
    assert not result.run_requests
    ((records, offset),) = read
    assert records == [] and offset == json.loads(cursor)["index_offset"] > 0


# ----------------------------------------------------------------- the sensor never stops (issue #11)
def test_a_file_that_breaks_reading_does_not_stop_the_files_behind_it(lead_home, instance, monkeypatch):
    data = gzip.compress(raw_leads(5000).to_csv(index=False).encode())
    drop_bytes(lead_home, "a_truncated.csv.gz", data[: len(data) // 2])
    drop_bytes(lead_home, "b_odd.csv", raw_leads(3, seed=3).to_csv(index=False).encode())
    drop(lead_home, "c_good.csv", raw_leads(3, "2021-07-09", seed=1))
    real = ledger.sniff_file

    def odd(path, *args, **kwargs):
        if path.name == "b_odd.csv":
            raise MemoryError("an error nobody foresaw")
        return real(path, *args, **kwargs)
    monkeypatch.setattr(ledger, "sniff_file", odd)
    result, _ = tick(instance)
    (request,) = result.run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2021-07-09"
    assert [e.file for e in ledger.landed_entries(lead_home)] == ["c_good.csv"]
    reasons = [json.loads(p.read_text()) for p in lead_home.quarantine.glob("*.reason.json")]
    assert {r["file"]: r["rule"] for r in reasons} == {"a_truncated.csv.gz": "truncated_file",
                                                         "b_odd.csv": "receive_failed"}
    assert not any(lead_home.inbox.iterdir())


@pytest.mark.parametrize("configured", ["environment", "resource"])
def test_a_tick_takes_a_bounded_number_of_files_and_the_cursor_carries_the_rest(lead_home, instance, monkeypatch,
                                                                               configured):
    limits = {}
    if configured == "environment":
        monkeypatch.setenv("LEAD_ASSETS_TICK_MAX_FILES", "2")
    else:
        limits = {"tick_max_files": 2}
    for i in range(5):
        drop(lead_home, f"f{i}.csv", raw_leads(2, f"2021-07-0{i + 1}", seed=i))
    cursor, landed_per_tick = None, []
    for _ in range(3):
        result, cursor = tick(instance, cursor, **limits)
        assert len(result.run_requests) == 1
        landed_per_tick.append(len(ledger.landed_entries(lead_home)))
    assert landed_per_tick == [2, 4, 5]
    assert not tick(instance, cursor, **limits)[0].run_requests


def test_a_tick_takes_a_bounded_number_of_bytes(lead_home, instance, monkeypatch):
    monkeypatch.setenv("LEAD_ASSETS_TICK_MAX_BYTES", "1")
    for i in range(3):
        drop(lead_home, f"f{i}.csv", raw_leads(2, f"2021-07-0{i + 1}", seed=i))
    _, cursor = tick(instance)
    assert len(ledger.landed_entries(lead_home)) == 1  # always at least one file, so a big one still moves
    assert len(json.loads(cursor)["seen"]) == 2


# ------------------------------------------------------------------------- races lose nothing
def test_a_landing_that_finishes_after_a_tick_is_requested_by_the_next(lead_home, instance, monkeypatch):
    """`lead-assets land` stamped before a tick but recorded after it: the sequence number catches it."""
    drop(lead_home, "a.csv", raw_leads(3, "2021-07-05"))
    _, cursor = tick(instance)
    monkeypatch.setattr(ledger, "_now", lambda: "2000-01-01T00:00:00.000000+00:00")
    ledger.receive(lead_home, drop(lead_home, "b.csv", raw_leads(3, "2021-07-09", seed=2)), *_days())
    (request,) = tick(instance, cursor)[0].run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2021-07-09"


def test_a_withdrawn_file_re_runs_its_days(lead_home, instance):
    from lead_assets.core.leads import landed

    drop(lead_home, "a.csv", raw_leads(3, "2021-07-05"))
    drop(lead_home, "b.csv", raw_leads(3, "2021-07-09", seed=2))
    _, cursor = tick(instance)
    landed.withdraw(lead_home, "b.csv", "wrong export", *_days())
    (request,) = tick(instance, cursor)[0].run_requests
    assert (request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"]) == ("2021-07-09", "2021-07-09")
    assert [e.file for e in ledger.landed_entries(lead_home)] == ["a.csv"]


def drop_bytes(home, name, data):
    path = home.inbox / name
    path.write_bytes(data)
    os.utime(path.path, (time.time() - 10, time.time() - 10))
    return path


def test_a_watching_tick_sees_a_file_dropped_while_it_runs(lead_home, instance):
    """tick_watch_seconds: the tick looks again until a file is ready, instead of leaving it to the next tick."""
    import threading

    later = threading.Timer(0.6, lambda: drop(lead_home, "late.csv", raw_leads(3, "2021-07-05")))
    started = time.monotonic()
    later.start()
    try:
        result, cursor = tick(instance, tick_watch_seconds=5.0)
    finally:
        later.cancel()
    seconds = time.monotonic() - started
    (request,) = result.run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2021-07-05"
    assert 0.6 <= seconds < 3.0  # returned once the file was taken, not at the end of the watch

    started = time.monotonic()
    idle, cursor = tick(instance, cursor, tick_watch_seconds=1.0)
    assert not idle.run_requests and 0.7 <= time.monotonic() - started < 3.0  # nothing came: watched, then skipped
    started = time.monotonic()
    assert not tick(instance, cursor)[0].run_requests and time.monotonic() - started < 0.7  # off by default
