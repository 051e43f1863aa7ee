"""Landed files to the leads of a day: each file parsed once, each lead in exactly one day.

A landed file never changes (it is named by its content hash), so its full parse is kept next
to the warehouse (``warehouse/_parsed/<first day>/<sha256>.*.parquet``) the first time a run
needs it; later runs read that instead of parsing the whole file again for every day it
touches. The row rules are applied at that first parse (``date_in_future`` is judged then).

One lead, one day: the first landed copy of a ``lead_id`` wins, across files and across
days. A later copy (same day or another one) is a rejected row (rule
``duplicate_of_earlier_file``) naming the copy that won. Only an explicit ``lead_id`` column
can put one lead on two days (a derived id includes ``created_date``), so only files that
carry one are read to decide it. To correct a lead's date, withdraw the file that carried
the wrong copy (``lead-assets withdraw``): its days and the days it shared leads with re-run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from lead_assets.core import outcomes, warehouse
from lead_assets.core.home import LeadHome
from lead_assets.core.inbox import IndexRecord, LedgerEntry, files_for_days, find_landed, landed_entries
from lead_assets.core.inbox import withdraw as inbox_withdraw
from lead_assets.core.ingest import REJECTED_COLUMNS, ParsedFile, lead_ids, parse_lead_file, parse_outcome_file
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT, OUTCOME_SEQ

PARSED = "_parsed"


def _cache(home: LeadHome, first_day: date, sha256: str, part: str):
    return home.warehouse / PARSED / first_day.isoformat() / f"{sha256}.{part}.parquet"


def load_parsed(home: LeadHome, entry: IndexRecord, first_day: date, today: date,
                parse: Callable[..., ParsedFile] = parse_lead_file) -> ParsedFile:
    """The full parse of one landed file, computed once (by ``parse``) and then read back."""
    accepted_path = _cache(home, first_day, entry.sha256, "accepted")
    rejected_path = _cache(home, first_day, entry.sha256, "rejected")
    if accepted_path.exists() and rejected_path.exists():
        accepted = warehouse.read_parquet(accepted_path)
        rejected = warehouse.read_parquet(rejected_path)
        return ParsedFile(accepted, rejected, entry.rows_read)
    parsed = parse(home.landing / entry.landed_as, name=entry.file, sha256=entry.sha256,
                   first_day=first_day, today=today)
    warehouse.atomic_write_bytes(rejected_path, warehouse.frame_to_parquet_bytes(parsed.rejected))
    warehouse.atomic_write_bytes(accepted_path, warehouse.frame_to_parquet_bytes(parsed.accepted))
    return parsed


def withdraw(home: LeadHome, key: str, reason: str, first_day: date, today: date) -> LedgerEntry:
    """Withdraw a landed file (see ``inbox.withdraw``) and forget what was derived from it.

    Days where another file holds a copy of one of its explicit lead ids re-run too: with the
    withdrawn copy gone, that copy may now be the first landed one.
    """
    entry = find_landed(home, key)
    shared: dict[str, int] = {}
    if entry.kind == "leads" and entry.lead_ids_given and (home.landing / entry.landed_as).exists():
        ids = set(load_parsed(home, entry, first_day, today).accepted[LEAD_ID])
        for other in landed_entries(home):
            if other.sha256 == entry.sha256 or not other.lead_ids_given:
                continue
            if not (home.landing / other.landed_as).exists():
                continue
            accepted = load_parsed(home, other, first_day, today).accepted
            for day in _day(accepted[accepted[LEAD_ID].isin(ids).to_numpy()]).unique():
                shared[day] = 0
    withdrawn = inbox_withdraw(home, entry.sha256, reason, also_days=shared)
    for path in [_cache(home, first_day, entry.sha256, p) for p in ("accepted", "rejected")] + [
            warehouse.partition_path(home.warehouse, "rejected_leads/undated", entry.sha256)]:
        if path.exists():
            path.unlink()
    return withdrawn


@dataclass
class DayLeads:
    """What ``raw_leads`` writes for a set of days (``leads`` is None when no file has any).

    ``history`` holds every outcome event of these leads (``current`` marks the one in force).
    """

    leads: pd.DataFrame | None
    rejected: pd.DataFrame
    files: list[dict]
    not_yet_landed: list[str]
    duplicates: int
    history: pd.DataFrame | None = None
    relabelled: int = 0
    conflicts: int = 0


def _day(frame: pd.DataFrame) -> pd.Series:
    return frame[CREATED_DATE].dt.strftime("%Y-%m-%d")


def _received(entry: IndexRecord) -> pd.Timestamp:
    moment = pd.Timestamp(entry.received_at)
    return moment.tz_convert(None) if moment.tzinfo else moment


def _parse_outcomes(path, *, name: str, sha256: str, first_day: date, today: date) -> ParsedFile:
    return parse_outcome_file(path, name=name, sha256=sha256, today=today)


def parsed_outcome_files(home: LeadHome, first_day: date, today: date) -> list[tuple[IndexRecord, ParsedFile]]:
    """Every landed outcomes file with its parse (computed once, then read back like a lead file's)."""
    return [(entry, load_parsed(home, entry, first_day, today, parse=_parse_outcomes))
            for entry in landed_entries(home, kind="outcomes") if (home.landing / entry.landed_as).exists()]


def outcome_events(home: LeadHome, first_day: date, today: date) -> pd.DataFrame:
    """The accepted rows of every landed outcomes file as events; ``outcome_at`` defaults to receipt."""
    frames = []
    for entry, parsed in parsed_outcome_files(home, first_day, today):
        events = parsed.accepted.assign(**{OUTCOME_SEQ: entry.seq, "via": "outcomes_file"})
        events[OUTCOME_AT] = events[OUTCOME_AT].fillna(_received(entry))
        frames.append(events)
    if not frames:
        return outcomes.empty_events()
    return pd.concat(frames, ignore_index=True)[[*outcomes.EVENT_COLUMNS, "via"]]


def leads_for_days(home: LeadHome, days: list[str], first_day: date, today: date,
                   parse: Callable[..., ParsedFile] = parse_lead_file) -> DayLeads:
    """Accepted leads of every landed file for ``days`` (first landed copy wins), labelled by their outcomes.

    A later copy of a lead (the same ``lead_id``, or the same fields when either copy's id was
    derived) is not a second lead: with a label and the same fields it is an outcome for the
    lead; with a label and other fields a conflict (``outcome_conflict``); without a label a
    duplicate (``duplicate_of_earlier_file``). Outcomes files attach by ``lead_id``.
    ``parse`` turns a landed file into accepted and rejected rows (``parse_lead_file``; the
    Dagster layer passes its own reference so a run can be given another parser).
    """
    wanted = set(days)
    kept, rejected, files, missing, received = [], [], [], [], {}
    entries = files_for_days(home, days)
    for entry in entries:
        if not (home.landing / entry.landed_as).exists():  # recorded, not yet moved: its landing re-runs
            missing.append(entry.file)
            continue
        parsed = load_parsed(home, entry, first_day, today, parse)
        in_run = _day(parsed.accepted).isin(wanted).to_numpy()
        kept.append(parsed.accepted[in_run].assign(_seq=entry.seq))
        received[entry.seq] = _received(entry)
        rejected.append(parsed.rejected[parsed.rejected["day"].isin(wanted) | parsed.rejected["day"].isna()])
        files.append({"file": entry.file, "sha256": entry.sha256[:12], "seq": entry.seq,
                      "rows_in_run": int(in_run.sum()),
                      "rejected_in_run": int(parsed.rejected["day"].isin(wanted).sum())})
    if not kept:
        return DayLeads(None, _concat(rejected), files, missing, 0)
    leads = pd.concat(kept, ignore_index=True).sort_values(["_seq", "source_row"], kind="stable")
    leads = leads.reset_index(drop=True)
    leads["_canon"] = _canonical_ids(leads)
    later = leads["_canon"].duplicated(keep="first").to_numpy()
    winners = leads[~later].set_index("_canon")
    copies, stored = leads[later], winners.loc[leads[later]["_canon"]]
    labelled = copies[LABEL].notna().to_numpy() if LABEL in copies.columns else np.zeros(len(copies), bool)
    same = np.array([not d for d in outcomes.differing_columns(copies, stored)], dtype=bool)
    relabels = copies[labelled & same].assign(**{LEAD_ID: stored[LEAD_ID].to_numpy()[labelled & same]})
    refused = [_as_rejected(copies[~labelled], stored[~labelled]),
               _as_conflicts(copies[labelled & ~same], stored[labelled & ~same])]
    leads = leads[~later]
    if any(e.lead_ids_given for e in entries):  # a derived id holds its day: only given ids can move
        earlier = _earlier_copies(home, leads, wanted, first_day, today).set_index(LEAD_ID)
        beaten = leads[LEAD_ID].map(earlier["_seq"]).lt(leads["_seq"]).to_numpy()
        moved = leads[beaten]
        carries = moved[LABEL].notna().to_numpy() if LABEL in moved.columns else np.zeros(len(moved), bool)
        refused.append(_as_rejected(moved[~carries], earlier.loc[moved[~carries][LEAD_ID]]))
        refused.append(_as_conflicts(moved[carries], earlier.loc[moved[carries][LEAD_ID]], moved_day=True))
        leads = leads[~beaten]
    seqs = pd.Series(received)
    events = pd.concat([
        outcomes.events_from_leads(leads, leads["_seq"].map(seqs), "lead_file"),
        outcomes.events_from_leads(relabels, relabels["_seq"].map(seqs), "re_export"),
        outcome_events(home, first_day, today),
    ], ignore_index=True)
    leads = leads.drop(columns=["_seq", "_canon"]).reset_index(drop=True)
    leads, history = outcomes.attach(leads, events)
    conflicts = int(sum((r["rule"] == "outcome_conflict").sum() for r in refused))
    return DayLeads(leads, _concat(rejected + refused), files, missing,
                    sum(len(r) for r in refused), history, len(relabels), conflicts)


def _canonical_ids(leads: pd.DataFrame) -> np.ndarray:
    """The id two copies of one lead share: their ``lead_id``, or the first copy's when either id was
    derived from the fields (a re-export without ids of leads sent with CRM ids, or the reverse)."""
    key = pd.Series(lead_ids(leads), index=leads.index)
    derived = (leads[LEAD_ID].to_numpy(dtype=object) == key.to_numpy(dtype=object))
    first_id = leads[LEAD_ID].groupby(key).transform("first")
    first_derived = pd.Series(derived, index=leads.index).groupby(key).transform("first").to_numpy(dtype=bool)
    return np.where(derived | first_derived, first_id.to_numpy(dtype=object), leads[LEAD_ID].to_numpy(dtype=object))


def _earlier_copies(home: LeadHome, leads: pd.DataFrame, wanted: set[str], first_day: date,
                    today: date) -> pd.DataFrame:
    """Copies of the run's explicit lead ids on days outside the run, with their file's sequence."""
    found = []
    ids = set(leads[LEAD_ID])
    for entry in landed_entries(home):
        if not entry.lead_ids_given or not (home.landing / entry.landed_as).exists():
            continue
        if set(entry.days) <= wanted:
            continue
        accepted = load_parsed(home, entry, first_day, today).accepted
        outside = accepted[~_day(accepted).isin(wanted).to_numpy() & accepted[LEAD_ID].isin(ids).to_numpy()]
        if len(outside):
            found.append(outside[[LEAD_ID, "source_file", "source_row"]].assign(_seq=entry.seq))
    if not found:
        return pd.DataFrame(columns=[LEAD_ID, "source_file", "source_row", "_seq"])
    every = pd.concat(found, ignore_index=True).sort_values("_seq", kind="stable")
    return every.drop_duplicates(LEAD_ID, keep="first")


def _as_rejected(copies: pd.DataFrame, winners: pd.DataFrame) -> pd.DataFrame:
    """Later copies of a lead as rejected rows naming the copy that won."""
    detail = [f"lead {lid} was landed first by {f} row {r} (the first landed copy wins)"
              for lid, f, r in zip(copies[LEAD_ID], winners["source_file"], winners["source_row"])]
    return pd.DataFrame({
        "source_file": copies["source_file"].to_numpy(),
        "source_sha256": copies["source_sha256"].to_numpy(),
        "source_row": copies["source_row"].to_numpy(),
        "day": _day(copies).to_numpy(),
        "rule": "duplicate_of_earlier_file",
        "column": LEAD_ID,
        "detail": detail,
        "raw": copies[LEAD_ID].map(lambda v: f'{{"lead_id": "{v}"}}').to_numpy(),
    }, columns=list(REJECTED_COLUMNS))


def _as_conflicts(copies: pd.DataFrame, stored: pd.DataFrame, moved_day: bool = False) -> pd.DataFrame:
    """Labelled copies whose fields differ from the stored lead: reported, their label not applied."""
    if moved_day:
        differ = [[CREATED_DATE]] * len(copies)
    else:
        differ = outcomes.differing_columns(copies, stored)
    detail = [f"lead {lid} was landed first by {f} row {r} with other {', '.join(d)}: a labelled copy may only "
              "relabel a lead whose fields it repeats; its label is not applied"
              for lid, f, r, d in zip(copies[LEAD_ID], stored["source_file"], stored["source_row"], differ)]
    rows = _as_rejected(copies, stored)
    rows["rule"] = "outcome_conflict"
    rows["detail"] = detail
    return rows


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(REJECTED_COLUMNS))
