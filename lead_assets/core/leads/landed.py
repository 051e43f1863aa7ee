"""Landed files to the leads of a day: each file parsed once, each lead in exactly one day.

A landed file never changes (it is named by its content hash), so its full parse is kept next
to the warehouse (``warehouse/_parsed/<first day>/<sha256>.{accepted,rejected}.parquet``) the
first time a run needs it, written a chunk at a time (a row group per chunk, so the parse's
memory follows the chunk, not the file); later runs read back only the columns and days they
need instead of parsing the file again. The row rules are applied at that first parse
(``date_in_future`` is judged then).

One lead, one day: the first landed copy of a ``lead_id`` wins, across files and across
days. A later copy (same day or another one) is a rejected row (rule
``duplicate_of_earlier_file``) naming the copy that won. Only an explicit ``lead_id`` column
can put one lead on two days (a derived id includes ``created_date``), so only files that
carry one are read to decide it. To correct a lead's date, withdraw the file that carried
the wrong copy (``lead-assets withdraw``): its days and the days it shared leads with re-run,
found from what landing and earlier parses recorded (the ledger, the parse caches): a file
taken back is never parsed again.

Outcomes files are read once per run into an :class:`OutcomeIndex` (events sorted by lead id),
so each chunk of a range run looks up its own leads' events instead of reloading every event.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from lead_assets.core import schema

from lead_assets.core.leads import labels

from lead_assets.core.store import warehouse
from lead_assets.core.store.home import LeadHome, is_local
from lead_assets.core.inbox.ledger import IndexRecord, LedgerEntry, files_for_days, find_landed, landed_entries
from lead_assets.core.inbox.ledger import withdraw as inbox_withdraw
from lead_assets.core.inbox.parsing import (
    REJECTED_COLUMNS,
    ParsedChunk,
    ParsedFile,
    lead_ids,
    parse_lead_chunks,
    parse_outcome_chunks,
)
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT, OUTCOME_SEQ

PARSED = "_parsed"


def _cache(home: LeadHome, first_day: date, sha256: str, part: str):
    return home.warehouse / PARSED / first_day.isoformat() / f"{sha256}.{part}.parquet"


def _arrow_schema(columns: Iterable[str]):
    """The Parquet types of a parse's columns (fixed, so every chunk of a file writes the same schema)."""
    import pyarrow as pa

    types = {LEAD_ID: pa.string(), CREATED_DATE: pa.timestamp("ns"), OUTCOME_AT: pa.timestamp("ns"),
             LABEL: pa.int8(), "source_row": pa.int64(), **{c: pa.float64() for c in schema.numeric_columns()}}
    return pa.schema([(c, types.get(c, pa.string())) for c in columns])


def _to_pandas(table) -> pd.DataFrame:
    import pyarrow as pa

    return table.to_pandas(types_mapper={pa.int8(): pd.Int8Dtype()}.get)


class _ParquetSink:
    """A Parquet file written a frame at a time (one row group each), then moved into place whole."""

    def __init__(self, path, columns: list[str]):
        import pyarrow.parquet as pq

        self.path, self.columns, self.schema = path, columns, _arrow_schema(columns)
        self.rows = 0
        if is_local(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = path.parent / f".{path.name[:100]}.{uuid.uuid4().hex}.tmp"
            self._handle = open(self._tmp.path, "wb")
        else:
            self._tmp, self._handle = None, io.BytesIO()
        self._writer = pq.ParquetWriter(self._handle, self.schema)

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        table = pa.Table.from_pandas(frame[self.columns], schema=self.schema, preserve_index=False)
        self._writer.write_table(table.replace_schema_metadata(None))
        self.rows += len(frame)

    def close(self) -> None:
        self._writer.close()
        if self._tmp is None:
            warehouse.atomic_write_bytes(self.path, self._handle.getvalue())
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp.path, self.path.path)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._handle.close()
            if self._tmp is not None:
                warehouse.remove_quietly(self._tmp)


@dataclass
class Parsed:
    """A landed file's parse as stored: read back by columns and days, never whole unless asked."""

    accepted_path: object
    rejected_path: object
    rows: int

    def accepted(self, columns: list[str] | None = None, days: Iterable[str] | None = None) -> pd.DataFrame:
        """Accepted rows (``days``: only leads created on those days)."""
        return _read(self.accepted_path, columns, _day_filter(days))

    def rejected(self, days: Iterable[str] | None = None) -> pd.DataFrame:
        """Rejected rows (``days``: of those days, and every row without a day)."""
        import pyarrow.dataset as ds

        where = None
        if days is not None:
            where = ds.field("day").isin(sorted(set(days))) | ds.field("day").is_null()
        return _read(self.rejected_path, None, where)


def _day_filter(days: Iterable[str] | None):
    import pyarrow as pa
    import pyarrow.dataset as ds

    if days is None:
        return None
    wanted = sorted(set(days))
    if not wanted:
        return ds.field(CREATED_DATE).is_null() & ~ds.field(CREATED_DATE).is_null()
    start = pd.Timestamp(wanted[0]).to_pydatetime()
    stop = (pd.Timestamp(wanted[-1]) + pd.Timedelta(days=1)).to_pydatetime()
    return (ds.field(CREATED_DATE) >= pa.scalar(start, pa.timestamp("ns"))) & (
        ds.field(CREATED_DATE) < pa.scalar(stop, pa.timestamp("ns")))


def _read(path, columns: list[str] | None, where) -> pd.DataFrame:
    import pyarrow.parquet as pq

    with path.open("rb") as handle:
        names = pq.ParquetFile(handle).schema_arrow.names
        handle.seek(0)
        wanted = None if columns is None else [c for c in columns if c in names]
        frame = _to_pandas(pq.read_table(handle, columns=wanted, filters=where))
    return frame if columns is None else frame.reindex(columns=columns)


def _chunks_of(result) -> Iterable[ParsedChunk | ParsedFile]:
    """A parser gives chunks (``parse_lead_chunks``) or a whole file (``parse_lead_file``)."""
    return [result] if isinstance(result, ParsedFile) else result


def load_parsed(home: LeadHome, entry: IndexRecord, first_day: date, today: date,
                parse: Callable = parse_lead_chunks) -> Parsed:
    """The full parse of one landed file, computed once (by ``parse``, chunk by chunk) and then read back."""
    accepted_path = _cache(home, first_day, entry.sha256, "accepted")
    rejected_path = _cache(home, first_day, entry.sha256, "rejected")
    if accepted_path.exists() and rejected_path.exists():
        return Parsed(accepted_path, rejected_path, entry.rows_read)
    sinks: list[_ParquetSink] = []
    rows = 0
    try:
        accepted = rejected = None
        for part in _chunks_of(parse(home.landing / entry.landed_as, name=entry.file, sha256=entry.sha256,
                                     first_day=first_day, today=today)):
            if accepted is None:
                accepted = _ParquetSink(accepted_path, list(part.accepted.columns))
                rejected = _ParquetSink(rejected_path, list(REJECTED_COLUMNS))
                sinks = [accepted, rejected]
            accepted.write(part.accepted)
            rejected.write(part.rejected)
            rows += part.rows
        if accepted is None:  # no rows at all: nothing to keep but the fact
            return Parsed(_empty(accepted_path), _empty(rejected_path, REJECTED_COLUMNS), 0)
        rejected.close()
        accepted.close()
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    return Parsed(accepted_path, rejected_path, rows)


def _empty(path, columns=(LEAD_ID, CREATED_DATE)):
    sink = _ParquetSink(path, list(columns))
    sink.write(pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c == CREATED_DATE else object) for c in columns}))
    sink.close()
    return path


def withdraw(home: LeadHome, key: str, reason: str, first_day: date, today: date) -> LedgerEntry:
    """Withdraw a landed file (see ``inbox.withdraw``) and forget what was derived from it.

    Never parses: the days to re-run are the file's own days (counted at landing) and the days
    where another file holds a copy of one of its explicit lead ids (from the parses runs
    made: a file never parsed decided nothing yet). An outcomes file's days are found by
    ``lead_outcomes`` from the history it left.
    """
    entry = find_landed(home, key)
    shared: dict[str, int] = {}
    mine = _cache(home, first_day, entry.sha256, "accepted")
    if entry.kind == "leads" and entry.lead_ids_given and mine.exists():
        ids = set(_read(mine, [LEAD_ID], None)[LEAD_ID])
        for other in landed_entries(home):
            cached = _cache(home, first_day, other.sha256, "accepted")
            if other.sha256 == entry.sha256 or not other.lead_ids_given or not cached.exists():
                continue
            copies = _read(cached, [LEAD_ID, CREATED_DATE], None)
            for day in _day(copies[copies[LEAD_ID].isin(ids).to_numpy()]).unique():
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

    ``history`` holds every outcome event of these leads (``current`` marks the one shown,
    ``label_changed`` the new outcomes); ``rejected`` includes outcomes refused as
    ``outcome_before_lead``.
    """

    leads: pd.DataFrame | None
    rejected: pd.DataFrame
    files: list[dict]
    not_yet_landed: list[str]
    duplicates: int
    history: pd.DataFrame | None = None
    relabelled: int = 0
    conflicts: int = 0
    refused_outcomes: int = 0


def _day(frame: pd.DataFrame) -> pd.Series:
    return frame[CREATED_DATE].dt.strftime("%Y-%m-%d")


def _received(entry: IndexRecord) -> pd.Timestamp:
    moment = pd.Timestamp(entry.received_at)
    return moment.tz_convert(None) if moment.tzinfo else moment


def _parse_outcomes(path, *, name: str, sha256: str, first_day: date, today: date):
    return parse_outcome_chunks(path, name=name, sha256=sha256, today=today)


def parsed_outcome_files(home: LeadHome, first_day: date, today: date) -> list[tuple[IndexRecord, Parsed]]:
    """Every landed outcomes file with its parse (computed once, then read back like a lead file's)."""
    return [(entry, load_parsed(home, entry, first_day, today, parse=_parse_outcomes))
            for entry in landed_entries(home, kind="outcomes") if (home.landing / entry.landed_as).exists()]


class OutcomeIndex:
    """Every event of the landed outcomes files, read once and looked up by lead id.

    A range run builds one and asks it for each chunk's leads, so a chunk's cost follows its
    own leads (a binary search per lead), not every event ever landed. ``outcome_at`` defaults
    to when the file was received; the file's name and sha256 are kept once per file.
    """

    def __init__(self, home: LeadHome, first_day: date, today: date):
        frames, files = [], []
        for code, (entry, parsed) in enumerate(parsed_outcome_files(home, first_day, today)):
            events = parsed.accepted([LEAD_ID, LABEL, OUTCOME_AT, "source_row"])
            events[OUTCOME_AT] = events[OUTCOME_AT].fillna(_received(entry))
            frames.append(events.assign(_file=np.int32(code)))
            files.append((entry.file, entry.sha256, entry.seq))
        self.files = pd.DataFrame(files, columns=["source_file", "source_sha256", OUTCOME_SEQ])
        every = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            {LEAD_ID: pd.Series(dtype=object), LABEL: pd.Series(dtype="Int8"),
             OUTCOME_AT: pd.Series(dtype="datetime64[ns]"), "source_row": pd.Series(dtype="int64"),
             "_file": pd.Series(dtype="int32")})
        self._events = every.sort_values(LEAD_ID, kind="stable").reset_index(drop=True)
        self._ids = self._events[LEAD_ID].to_numpy(dtype=object)

    def __len__(self) -> int:
        return len(self._events)

    def events_for(self, ids: Iterable[str]) -> pd.DataFrame:
        """The events of these leads (``EVENT_COLUMNS`` and ``via``)."""
        wanted = np.unique(np.asarray(list(ids), dtype=object)) if len(self._ids) else np.array([], dtype=object)
        if not len(wanted):
            return self._frame(self._events.iloc[:0])
        lo = np.searchsorted(self._ids, wanted, side="left")
        hi = np.searchsorted(self._ids, wanted, side="right")
        counts = hi - lo
        take = np.repeat(lo - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())
        return self._frame(self._events.iloc[take])

    def all(self) -> pd.DataFrame:
        return self._frame(self._events)

    def _frame(self, events: pd.DataFrame) -> pd.DataFrame:
        files = self.files.iloc[events["_file"].to_numpy()] if len(self.files) else self.files.iloc[:0]
        out = pd.DataFrame({
            LEAD_ID: events[LEAD_ID].to_numpy(dtype=object),
            LABEL: pd.array(events[LABEL], dtype="Int8"),
            OUTCOME_AT: events[OUTCOME_AT].to_numpy(dtype="datetime64[ns]"),
            "source_file": files["source_file"].to_numpy(dtype=object),
            "source_sha256": files["source_sha256"].to_numpy(dtype=object),
            "source_row": events["source_row"].to_numpy(dtype="int64"),
            OUTCOME_SEQ: files[OUTCOME_SEQ].to_numpy(dtype="int64"),
        })
        return out.assign(via=labels.OUTCOMES_FILE)


def outcome_events(home: LeadHome, first_day: date, today: date) -> pd.DataFrame:
    """The accepted rows of every landed outcomes file as events; ``outcome_at`` defaults to receipt."""
    return OutcomeIndex(home, first_day, today).all()


def leads_for_days(home: LeadHome, days: list[str], first_day: date, today: date,
                   parse: Callable = parse_lead_chunks, index: OutcomeIndex | None = None) -> DayLeads:
    """Accepted leads of every landed file for ``days`` (first landed copy wins), labelled by their outcomes.

    A later copy of a lead (the same ``lead_id``, or the same fields when either copy's id was
    derived) is not a second lead: with a label and the same fields it is an outcome for the
    lead; with a label and other fields a conflict (``outcome_conflict``); without a label a
    duplicate (``duplicate_of_earlier_file``). Outcomes files attach by ``lead_id`` (from
    ``index``, built here when not given: a range run builds one for all its chunks).
    ``parse`` turns a landed file into accepted and rejected rows (``parse_lead_chunks``; the
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
        accepted = parsed.accepted(days=wanted)
        in_run = _day(accepted).isin(wanted).to_numpy()
        kept.append(accepted[in_run].assign(_seq=entry.seq))
        received[entry.seq] = _received(entry)
        rows_refused = parsed.rejected(days=wanted)
        rejected.append(rows_refused)
        files.append({"file": entry.file, "sha256": entry.sha256[:12], "seq": entry.seq,
                      "rows_in_run": int(in_run.sum()),
                      "rejected_in_run": int(rows_refused["day"].isin(wanted).sum())})
    if not kept:
        return DayLeads(None, _concat(rejected), files, missing, 0)
    leads = pd.concat(kept, ignore_index=True).sort_values(["_seq", "source_row"], kind="stable")
    leads = leads.reset_index(drop=True)
    leads["_canon"] = _canonical_ids(leads)
    later = leads["_canon"].duplicated(keep="first").to_numpy()
    winners = leads[~later].set_index("_canon")
    copies, stored = leads[later], winners.loc[leads[later]["_canon"]]
    labelled = copies[LABEL].notna().to_numpy() if LABEL in copies.columns else np.zeros(len(copies), bool)
    same = np.array([not d for d in labels.differing_columns(copies, stored)], dtype=bool)
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
    index = index if index is not None else OutcomeIndex(home, first_day, today)
    events = pd.concat([
        labels.events_from_leads(leads, leads["_seq"].map(seqs), "lead_file"),
        labels.events_from_leads(relabels, relabels["_seq"].map(seqs), "re_export"),
        index.events_for(leads[LEAD_ID]),
    ], ignore_index=True)
    conflicts = int(sum((r["rule"] == "outcome_conflict").sum() for r in refused))
    duplicates = sum(len(r) for r in refused)
    leads = leads.assign(lead_seq=leads["_seq"]).drop(columns=["_seq", "_canon"]).reset_index(drop=True)
    leads, history, before = labels.attach(leads, events)
    return DayLeads(leads.drop(columns=["lead_seq"]), _concat(rejected + refused + [before]), files, missing,
                    duplicates, history, len(relabels), conflicts, len(before))


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
        accepted = load_parsed(home, entry, first_day, today).accepted([LEAD_ID, CREATED_DATE, "source_file",
                                                                         "source_row"])
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
        "raw": [json.dumps({LEAD_ID: v}, ensure_ascii=False) for v in copies[LEAD_ID]],
    }, columns=list(REJECTED_COLUMNS))


def _as_conflicts(copies: pd.DataFrame, stored: pd.DataFrame, moved_day: bool = False) -> pd.DataFrame:
    """Labelled copies whose fields differ from the stored lead: reported, their label not applied."""
    if moved_day:
        differ = [[CREATED_DATE]] * len(copies)
    else:
        differ = labels.differing_columns(copies, stored)
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
