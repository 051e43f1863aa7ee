"""Every inbox file ends in exactly one place, with a ledger entry saying which and why."""

import json
import os
from datetime import date

import pytest

from lead_assets.core import inbox
from lead_assets_tests.factories import raw_leads

FIRST, TODAY = date(2021, 7, 1), date(2026, 11, 24)


def _drop(home, name, frame=None, content=None):
    path = home.inbox / name
    if content is not None:
        path.write_bytes(content)
    else:
        (frame if frame is not None else raw_leads(5)).to_csv(path.path, index=False)
    return path


def test_accepted_file_lands_by_content_hash(lead_home):
    path = _drop(lead_home, "leads one.csv")
    entry = inbox.receive(lead_home, path, FIRST, TODAY)
    assert entry.status == "accepted" and entry.rows_read == 5
    assert not path.exists()
    assert (lead_home.landing / f"{entry.sha256}.csv").exists()
    assert inbox.read_entry(lead_home, entry.sha256).days == entry.days
    assert [e.sha256 for e in inbox.files_for_days(lead_home, ["2021-07-05"])] == [entry.sha256]
    assert inbox.files_for_days(lead_home, ["2021-07-06"]) == []


def test_same_content_twice_is_a_noop(lead_home):
    frame = raw_leads(5)
    first = inbox.receive(lead_home, _drop(lead_home, "a.csv", frame), FIRST, TODAY)
    second = inbox.receive(lead_home, _drop(lead_home, "b.csv", frame), FIRST, TODAY)
    assert second.status == "duplicate" and second.sha256 == first.sha256
    assert len(list(lead_home.landing.iterdir())) == 1
    assert not any(lead_home.inbox.iterdir())
    assert [e.file for e in inbox.landed_entries(lead_home)] == ["a.csv"]


def test_bad_file_is_quarantined_with_a_reason(lead_home):
    path = _drop(lead_home, "broken ü.csv", content=b"created_date,city_mapped\n2021-07-05 10:00:00,pune\n")
    entry = inbox.receive(lead_home, path, FIRST, TODAY)
    assert entry.status == "quarantined" and entry.rule == "missing_columns"
    reasons = [p for p in lead_home.quarantine.iterdir() if p.name.endswith(".reason.json")]
    assert len(reasons) == 1
    reason = json.loads(reasons[0].read_text())
    assert reason["file"] == "broken ü.csv" and reason["rule"] == "missing_columns"
    assert "first_platform_c" in reason["detail"]
    assert inbox.landed_entries(lead_home) == []


@pytest.mark.parametrize("name", [".hidden.csv", "~lock.csv", "data.csv.part", "data.csv.tmp", "notes.xlsx",
                                  "#draft.csv#"])
def test_hidden_temp_and_foreign_files_are_ignored(lead_home, name):
    _drop(lead_home, name)
    candidates, links = inbox.list_candidates(lead_home.inbox)
    assert candidates == [] and links == []


def test_symlinks_are_refused_without_reading_the_target(lead_home, tmp_path):
    target = tmp_path / "secret.csv"
    raw_leads(3).to_csv(target, index=False)
    os.symlink(target, (lead_home.inbox / "link.csv").path)
    candidates, links = inbox.list_candidates(lead_home.inbox)
    assert candidates == [] and [p.name for p in links] == ["link.csv"]
    entry = inbox.refuse_link(lead_home, links[0])
    assert entry.rule == "symlink_refused" and target.exists()
    assert not (lead_home.inbox / "link.csv").exists()


def test_quarantine_names_cannot_escape(lead_home):
    path = _drop(lead_home, "..evil...csv", content=b"")
    entry = inbox.receive(lead_home, path, FIRST, TODAY)
    assert entry.status == "quarantined"
    assert all(p.parent.path == lead_home.quarantine.path for p in lead_home.quarantine.iterdir())


def test_a_growing_file_is_not_ready(lead_home):
    _drop(lead_home, "big.csv")
    (candidate,), _ = inbox.list_candidates(lead_home.inbox)
    now = candidate.mtime
    assert not inbox.ready(candidate, None, settle_seconds=2, now=now + 0.5)
    assert inbox.ready(candidate, None, settle_seconds=2, now=now + 5)
    assert not inbox.ready(candidate, (candidate.size - 10, candidate.mtime), settle_seconds=2, now=now + 5)
    assert inbox.ready(candidate, (candidate.size, candidate.mtime), settle_seconds=2, now=now + 5)
