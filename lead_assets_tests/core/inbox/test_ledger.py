"""Every inbox file ends in exactly one place, with a ledger entry saying which and why."""

import errno
import gzip
import json
import os
from datetime import date

import pytest

from lead_assets.core.inbox import ledger
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
    entry = ledger.receive(lead_home, path, FIRST, TODAY)
    assert entry.status == "accepted" and entry.rows_read == 5
    assert not path.exists()
    assert (lead_home.landing / f"{entry.sha256}.csv").exists()
    assert ledger.read_entry(lead_home, entry.sha256).days == entry.days
    assert [e.sha256 for e in ledger.files_for_days(lead_home, ["2021-07-05"])] == [entry.sha256]
    assert ledger.files_for_days(lead_home, ["2021-07-06"]) == []


def test_same_content_twice_is_a_noop(lead_home):
    frame = raw_leads(5)
    first = ledger.receive(lead_home, _drop(lead_home, "a.csv", frame), FIRST, TODAY)
    second = ledger.receive(lead_home, _drop(lead_home, "b.csv", frame), FIRST, TODAY)
    assert second.status == "duplicate" and second.sha256 == first.sha256
    assert len(list(lead_home.landing.iterdir())) == 1
    assert not any(lead_home.inbox.iterdir())
    assert [e.file for e in ledger.landed_entries(lead_home)] == ["a.csv"]


def test_bad_file_is_quarantined_with_a_reason(lead_home):
    path = _drop(lead_home, "broken ü.csv", content=b"created_date,city_mapped\n2021-07-05 10:00:00,pune\n")
    entry = ledger.receive(lead_home, path, FIRST, TODAY)
    assert entry.status == "quarantined" and entry.rule == "missing_columns"
    reasons = [p for p in lead_home.quarantine.iterdir() if p.name.endswith(".reason.json")]
    assert len(reasons) == 1
    reason = json.loads(reasons[0].read_text())
    assert reason["file"] == "broken ü.csv" and reason["rule"] == "missing_columns"
    assert "first_platform_c" in reason["detail"]
    assert ledger.landed_entries(lead_home) == []


@pytest.mark.parametrize("name", [".hidden.csv", "~lock.csv", "data.csv.part", "data.csv.tmp", "notes.xlsx",
                                  "#draft.csv#"])
def test_hidden_temp_and_foreign_files_are_ignored(lead_home, name):
    _drop(lead_home, name)
    candidates, links = ledger.list_candidates(lead_home.inbox)
    assert candidates == [] and links == []


def test_symlinks_are_refused_without_reading_the_target(lead_home, tmp_path):
    target = tmp_path / "secret.csv"
    raw_leads(3).to_csv(target, index=False)
    os.symlink(target, (lead_home.inbox / "link.csv").path)
    candidates, links = ledger.list_candidates(lead_home.inbox)
    assert candidates == [] and [p.name for p in links] == ["link.csv"]
    entry = ledger.refuse_link(lead_home, links[0])
    assert entry.rule == "symlink_refused" and target.exists()
    assert not (lead_home.inbox / "link.csv").exists()


def test_quarantine_names_cannot_escape(lead_home):
    path = _drop(lead_home, "..evil...csv", content=b"")
    entry = ledger.receive(lead_home, path, FIRST, TODAY)
    assert entry.status == "quarantined"
    assert all(p.parent.path == lead_home.quarantine.path for p in lead_home.quarantine.iterdir())


def test_a_growing_file_is_not_ready(lead_home):
    _drop(lead_home, "big.csv")
    (candidate,), _ = ledger.list_candidates(lead_home.inbox)
    now = candidate.mtime
    assert not ledger.ready(candidate, None, settle_seconds=2, now=now + 0.5)
    assert ledger.ready(candidate, None, settle_seconds=2, now=now + 5)
    assert not ledger.ready(candidate, (candidate.size - 10, candidate.mtime), settle_seconds=2, now=now + 5)
    assert ledger.ready(candidate, (candidate.size, candidate.mtime), settle_seconds=2, now=now + 5)


def test_a_fresh_file_settles_within_one_tick(lead_home):
    """Unchanged after the in-tick wait: ready now, not a sensor interval later."""
    _drop(lead_home, "fresh.csv")
    candidates, _ = ledger.list_candidates(lead_home.inbox)
    waits = []
    settled, looked = ledger.settle(candidates, {}, settle_seconds=2, now=candidates[0].mtime + 0.5,
                                   sleep=waits.append)
    assert waits and 1.5 <= waits[0] < 1.6  # until the file is 2 s old
    (candidate,) = settled
    assert ledger.ready(candidate, looked[candidate.name], settle_seconds=2, now=candidate.mtime + 2.01)


def test_a_file_written_during_the_wait_is_not_ready(lead_home):
    _drop(lead_home, "growing.csv")
    candidates, _ = ledger.list_candidates(lead_home.inbox)
    path = candidates[0].path

    def append_while_waiting(seconds):
        with open(path.path, "a") as handle:
            handle.write("more,rows\n")
        os.utime(path.path, (candidates[0].mtime + 1, candidates[0].mtime + 1))

    settled, looked = ledger.settle(candidates, {}, settle_seconds=2, now=candidates[0].mtime + 0.5,
                                   sleep=append_while_waiting)
    (candidate,) = settled
    assert candidate.size > candidates[0].size
    assert not ledger.ready(candidate, looked[candidate.name], settle_seconds=2, now=candidates[0].mtime + 2.01)


def test_settling_never_waits_longer_than_its_cap_or_for_seen_files(lead_home):
    _drop(lead_home, "slow.csv")
    candidates, _ = ledger.list_candidates(lead_home.inbox)
    mtime = candidates[0].mtime
    waits = []
    assert ledger.settle(candidates, {}, settle_seconds=60, now=mtime, sleep=waits.append) == (candidates, {})
    seen = {candidates[0].name: (candidates[0].size, mtime)}
    assert ledger.settle(candidates, seen, settle_seconds=2, now=mtime, sleep=waits.append) == (candidates, {})
    assert waits == []


# ------------------------------------------------------------- no file stops the inbox (issue #11)
def test_a_truncated_gzip_is_quarantined(lead_home):
    data = gzip.compress(raw_leads(5000).to_csv(index=False).encode())  # cut past the sniffed head
    entry = ledger.receive(lead_home, _drop(lead_home, "cut.csv.gz", content=data[: len(data) // 2]), FIRST, TODAY)
    assert (entry.status, entry.rule) == ("quarantined", "truncated_file")
    assert _reasons(lead_home) == {"cut.csv.gz": "truncated_file"}


def test_a_field_over_16_mib_is_one_rejected_row_not_a_quarantined_file(lead_home):
    """One bad row never sends the file's good leads to quarantine (issue #20)."""
    from lead_assets.core.inbox.parsing import parse_lead_file

    frame = raw_leads(3)
    frame.loc[1, "city_mapped"] = "x" * (20 * 1024 * 1024)
    entry = ledger.receive(lead_home, _drop(lead_home, "huge.csv", frame), FIRST, TODAY)
    assert (entry.status, entry.rows_read, entry.rows_unreadable) == ("accepted", 3, 1)
    parsed = parse_lead_file(lead_home.landing / entry.landed_as, name="huge.csv", sha256=entry.sha256,
                             first_day=FIRST, today=TODAY)
    assert parsed.accepted["source_row"].tolist() == [2, 4]
    (row,) = parsed.rejected.to_dict(orient="records")
    assert (row["source_row"], row["rule"]) == (3, "row_too_large") and "20,971" in row["detail"]
    assert len(row["raw"]) < 3000  # the rejected row keeps the start of its text, not 20 MiB


def test_a_240_character_name_is_landed_or_quarantined(lead_home):
    long_good, long_bad = "g" * 236 + ".csv", "b" * 236 + ".csv"
    good = ledger.receive(lead_home, _drop(lead_home, long_good), FIRST, TODAY)
    bad = ledger.receive(lead_home, _drop(lead_home, long_bad, content=b""), FIRST, TODAY)
    assert good.status == "accepted" and (bad.status, bad.rule) == ("quarantined", "empty_file")
    assert _reasons(lead_home) == {long_bad: "empty_file"}
    assert not any(lead_home.inbox.iterdir())


def test_an_inbox_on_another_file_system_still_lands(lead_home, monkeypatch):
    """os.replace raises EXDEV across file systems: the move falls back to copy, sync, remove."""
    real = os.replace

    def cross_device(src, dst):
        if str(src).startswith(str(lead_home.inbox)):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)
    monkeypatch.setattr(ledger.os, "replace", cross_device)
    path = _drop(lead_home, "a.csv")
    entry = ledger.receive(lead_home, path, FIRST, TODAY)
    assert entry.status == "accepted" and not path.exists()
    assert (lead_home.landing / entry.landed_as).read_bytes() == raw_leads(5).to_csv(index=False).encode()
    bad = ledger.receive(lead_home, _drop(lead_home, "b.csv", content=b""), FIRST, TODAY)
    assert bad.status == "quarantined" and _reasons(lead_home) == {"b.csv": "empty_file"}
    assert not [p for p in lead_home.landing.iterdir() if p.name.endswith(".tmp")]


def test_a_gzip_bomb_is_refused_by_a_configurable_rule(lead_home, monkeypatch):
    monkeypatch.setenv("LEAD_ASSETS_MAX_INFLATED_BYTES", str(4 * 1024 * 1024))
    line = raw_leads(1).to_csv(index=False).splitlines()[1] + "\n"
    header = ",".join(raw_leads(1).columns) + "\n"
    bomb = gzip.compress((header + line * 200_000).encode(), compresslevel=9)  # ~50 MB inflated
    assert len(bomb) < 1024 * 1024
    entry = ledger.receive(lead_home, _drop(lead_home, "bomb.csv.gz", content=bomb), FIRST, TODAY)
    assert (entry.status, entry.rule) == ("quarantined", "too_large")
    assert "LEAD_ASSETS_MAX_INFLATED_BYTES" in entry.detail


def test_any_unexpected_error_quarantines_that_file_only(lead_home, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("something nobody foresaw")
    monkeypatch.setattr(ledger, "sniff_file", explode)
    entry = ledger.receive(lead_home, _drop(lead_home, "odd.csv"), FIRST, TODAY)
    assert (entry.status, entry.rule) == ("quarantined", "receive_failed")
    assert "something nobody foresaw" in entry.detail
    assert _reasons(lead_home) == {"odd.csv": "receive_failed"}


def test_a_move_to_landing_that_fails_quarantines_the_file_and_takes_the_intent_back(lead_home, monkeypatch):
    real = ledger._move

    def refuse_landing(source, target):
        if target.parent.path == lead_home.landing.path:
            raise PermissionError(13, "Permission denied")
        return real(source, target)
    monkeypatch.setattr(ledger, "_move", refuse_landing)
    entry = ledger.receive(lead_home, _drop(lead_home, "a.csv"), FIRST, TODAY)
    assert (entry.status, entry.rule) == ("quarantined", "receive_failed") and "Permission" in entry.detail
    assert ledger.landed_entries(lead_home) == [] and _reasons(lead_home) == {"a.csv": "receive_failed"}
    assert [json.loads(p.read_text())["status"] for p in lead_home.ledger.glob("*.json")] == ["quarantined"]


# ------------------------------------------------------------------- crashes and races lose nothing
@pytest.mark.parametrize("step", ["write_entry", "_move"])
def test_a_crash_between_ledger_and_move_loses_nothing(lead_home, monkeypatch, step):
    """Killed at either step of a landing, the file lands on the next look and the ledger knows it."""
    path = _drop(lead_home, "a.csv")

    def crash(*args, **kwargs):
        raise SystemExit("killed")
    monkeypatch.setattr(ledger, step, crash)
    with pytest.raises(SystemExit):
        ledger.receive(lead_home, path, FIRST, TODAY)
    monkeypatch.undo()
    again = _drop(lead_home, "a.csv") if not path.exists() else path  # the sender retries if it vanished
    entry = ledger.receive(lead_home, again, FIRST, TODAY)
    assert entry.status == "accepted" and (lead_home.landing / entry.landed_as).exists()
    assert [e.sha256 for e in ledger.landed_entries(lead_home)] == [entry.sha256]
    assert ledger.read_entry(lead_home, entry.sha256).status == "accepted"


def test_a_landed_file_the_ledger_lost_is_recorded_not_deleted_as_a_duplicate(lead_home):
    """A landing/ file without a ledger entry (an older crash): dropping it again records it."""
    frame = raw_leads(5)
    first = ledger.receive(lead_home, _drop(lead_home, "a.csv", frame), FIRST, TODAY)
    for item in list(lead_home.ledger.iterdir()):
        item.unlink()
    again = ledger.receive(lead_home, _drop(lead_home, "a.csv", frame), FIRST, TODAY)
    assert again.status == "accepted" and again.sha256 == first.sha256
    assert [e.file for e in ledger.landed_entries(lead_home)] == ["a.csv"]


def test_sequence_numbers_only_grow_whatever_the_clock_says(lead_home, monkeypatch):
    a = ledger.receive(lead_home, _drop(lead_home, "a.csv", raw_leads(3, seed=1)), FIRST, TODAY)
    monkeypatch.setattr(ledger, "_now", lambda: "2000-01-01T00:00:00.000000+00:00")
    b = ledger.receive(lead_home, _drop(lead_home, "b.csv", raw_leads(3, seed=2)), FIRST, TODAY)
    assert b.seq == a.seq + 1
    records, offset = ledger.read_index(lead_home)
    assert [r.seq for r in records] == [a.seq, b.seq]
    assert ledger.read_index(lead_home, offset) == ([], offset)


def test_a_ledger_from_before_the_index_is_migrated_in_landing_order(lead_home):
    frame = raw_leads(5)
    entry = ledger.receive(lead_home, _drop(lead_home, "a.csv", frame), FIRST, TODAY)
    (lead_home.ledger / ledger.INDEX).unlink()
    assert [(e.seq, e.sha256) for e in ledger.landed_entries(lead_home)] == [(1, entry.sha256)]


def test_withdrawing_a_file_moves_it_to_quarantine_and_records_a_change(lead_home):
    keep = ledger.receive(lead_home, _drop(lead_home, "keep.csv", raw_leads(3, seed=1)), FIRST, TODAY)
    gone = ledger.receive(lead_home, _drop(lead_home, "wrong.csv", raw_leads(3, "2021-07-09", seed=2)), FIRST, TODAY)
    withdrawn = ledger.withdraw(lead_home, gone.sha256[:10], "wrong export")
    assert withdrawn.status == "withdrawn" and withdrawn.seq > gone.seq and withdrawn.days == gone.days
    assert [e.file for e in ledger.landed_entries(lead_home)] == [keep.file]
    assert not (lead_home.landing / gone.landed_as).exists()
    assert _reasons(lead_home) == {"wrong.csv": "withdrawn"}
    with pytest.raises(ValueError, match="matches 0 landed files"):
        ledger.withdraw(lead_home, "wrong.csv", "again")


def _reasons(home) -> dict[str, str]:
    found = [json.loads(p.read_text()) for p in home.quarantine.iterdir() if p.name.endswith(".reason.json")]
    return {r["file"]: r["rule"] for r in found}


@pytest.mark.parametrize("key", ["", "   ", "\t", "a", "0"])
def test_withdrawing_needs_a_name_or_enough_of_a_sha256(lead_home, key):
    """``withdraw ""`` once matched every landed file (issue #20): a key too short to mean one file is refused."""
    ledger.receive(lead_home, _drop(lead_home, "only.csv"), FIRST, TODAY)
    with pytest.raises(ValueError, match="name|sha256"):
        ledger.find_landed(lead_home, key)
    assert [e.file for e in ledger.landed_entries(lead_home)] == ["only.csv"]


def test_a_file_is_found_by_its_name_or_a_sha256_prefix(lead_home):
    entry = ledger.receive(lead_home, _drop(lead_home, "a.csv"), FIRST, TODAY)
    other = ledger.receive(lead_home, _drop(lead_home, "b.csv", raw_leads(4, seed=3)), FIRST, TODAY)
    assert ledger.find_landed(lead_home, " a.csv ").sha256 == entry.sha256
    assert ledger.find_landed(lead_home, entry.sha256[:6].upper()).sha256 == entry.sha256
    assert ledger.find_landed(lead_home, other.sha256).file == "b.csv"
    with pytest.raises(ValueError, match="matches 0 landed files"):
        ledger.find_landed(lead_home, "zzzzzzzz")
