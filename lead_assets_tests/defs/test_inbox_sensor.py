"""The inbox sensor over a real temporary inbox: fates, one run per tick, idempotent cursors."""

import json
import os
import time

import pandas as pd
from dagster import AssetMaterialization, build_sensor_context

from lead_assets.core import inbox
from lead_assets.defs.ingest import inbox_sensor
from lead_assets.defs.resources import LeadHomeResource
from lead_assets_tests.factories import raw_leads


def tick(instance, cursor=None, settle=0.0):
    context = build_sensor_context(instance=instance, cursor=cursor,
                                   resources={"lead_home": LeadHomeResource(settle_seconds=settle)})
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
    assert len(inbox.landed_entries(lead_home)) == 2 and not any(lead_home.inbox.iterdir())
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
        "raw_leads", "cleaned_leads", "lead_features", "scored_leads"}


def test_a_file_still_being_written_waits(lead_home, instance):
    path = lead_home.inbox / "growing.csv"
    raw_leads(3).to_csv(path.path, index=False)
    result, cursor = tick(instance, settle=60)
    assert not result.run_requests and path.exists()
    assert "growing.csv" in json.loads(cursor)["seen"]


def test_bad_files_are_quarantined_and_ask_for_no_run(lead_home, instance):
    bad = lead_home.inbox / "bad.csv"
    bad.write_bytes(b"")
    os.utime(bad.path, (time.time() - 10, time.time() - 10))
    result, _ = tick(instance)
    assert not result.run_requests
    assert any(p.name.endswith(".reason.json") for p in lead_home.quarantine.iterdir())


def test_landed_but_unrequested_files_are_picked_up_after_a_crash(lead_home, instance):
    """A daemon that died after landing a file but before its cursor was saved loses nothing."""
    inbox.receive(lead_home, drop(lead_home, "a.csv", raw_leads(3)), *_days())
    result, cursor = tick(instance, cursor=None)
    assert len(result.run_requests) == 1
    assert not tick(instance, cursor)[0].run_requests


def test_fifty_files_at_once_are_each_landed_once(lead_home, instance):
    for i in range(50):
        drop(lead_home, f"f{i:02d}.csv", raw_leads(2, f"2021-07-{1 + i % 28:02d}", seed=i))
    result, cursor = tick(instance)
    assert len(result.run_requests) == 1
    assert len(inbox.landed_entries(lead_home)) == 50
    assert not tick(instance, cursor)[0].run_requests


def _days():
    from datetime import date
    return date(2021, 7, 1), date(2026, 11, 24)


def test_a_million_row_file_is_landed_by_one_cheap_tick(lead_home, instance):
    """The tick reads only the header and created_date; a 1,000,000-row file is one run request."""
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
    started = time.time()
    result, _ = tick(instance)
    elapsed = time.time() - started
    (request,) = result.run_requests
    (entry,) = inbox.landed_entries(lead_home)
    assert entry.rows_read == 1_000_000 and sum(entry.days.values()) == 1_000_000
    assert request.tags["dagster/asset_partition_range_start"] == "2021-07-01"
    assert request.tags["dagster/asset_partition_range_end"] == "2021-11-28"
    print(f"1,000,000-row tick: {elapsed:.1f} s")  # the timing itself is a benchmark (BENCHMARKS.md)
