"""raw_leads and the inbox sensor: files in, typed leads per day out."""


import json
import time

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    sensor,
)

from lead_assets.core.inbox import ledger, writers

from lead_assets.core.leads import landed

from lead_assets.core.store import warehouse
from lead_assets.core.store.home import LeadHome
from lead_assets.core.inbox.parsing import REJECTED_COLUMNS, parse_lead_chunks
from lead_assets.core.leads.labels import HISTORY_COLUMNS
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT, OUTCOME_SEQ, OUTCOME_SOURCE
from lead_assets.core.store.warehouse import DayStream
from lead_assets.defs.partitions import lead_days, one_run_per_range
from lead_assets.defs.resources import LeadHomeResource
from lead_assets.defs import ticks

REJECTED = "rejected_leads"
HISTORY = "outcome_history"


def _write_rejected(home: LeadHome, days: list[str], rejected: pd.DataFrame) -> None:
    """Rejected rows per day (replaced on re-run) and undated ones per source file."""
    frame = rejected if len(rejected) else pd.DataFrame(columns=list(REJECTED_COLUMNS))
    for day in days:
        warehouse.write_partition(home.warehouse, REJECTED, day, frame[frame["day"] == day])
    undated = frame[frame["day"].isna()]
    for sha, part in undated.groupby("source_sha256"):
        warehouse.write_partition(home.warehouse, f"{REJECTED}/undated", sha, part)


@asset(
    partitions_def=lead_days,
    backfill_policy=one_run_per_range,
    group_name="leads",
    kinds={"pandas", "parquet"},
    pool="lead_ingest",
    description="Every accepted lead of every landed file, by creation day; one row per lead_id.",
)
def raw_leads(context: AssetExecutionContext, lead_home: LeadHomeResource) -> DayStream:
    """A range streams in chunks of days (sized from the ledger's rows per day, ``lead_home``'s
    chunk settings): each chunk's leads are found, labelled and written before the next is read.
    A copy of a lead in another chunk is judged as a copy in another run is (``core.leads.landed``)."""
    home = lead_home.resolve()
    days = sorted(context.partition_keys)
    rows_per_day: dict[str, int] = dict.fromkeys(days, 0)
    for entry in ledger.files_for_days(home, days):
        for day, rows in entry.days.items():
            if day in rows_per_day:
                rows_per_day[day] += rows
    chunk_rows, chunk_days = lead_home.chunk_sizes()
    summary = IngestSummary(days)

    def frames():
        index = None  # every outcomes file's events, read once for all chunks (a chunk looks up its own leads)
        for group in warehouse.plan_chunks(list(rows_per_day.items()), chunk_rows, chunk_days):
            if index is None:
                index = landed.OutcomeIndex(home, lead_home.first_date, lead_home.today())
            found = landed.leads_for_days(home, group, lead_home.first_date, lead_home.today(),
                                          parse=parse_lead_chunks, index=index)
            leads = found.leads if found.leads is not None else _empty_raw()
            _write_rejected(home, group, found.rejected)
            _write_history(home, group, found.history)
            summary.add(found, leads)
            yield leads

    return DayStream(frames(), summary.metadata)


class IngestSummary:
    """raw_leads' metadata, summed chunk by chunk."""

    def __init__(self, days: list[str]):
        self.days = days
        self.counts = dict.fromkeys(("leads", "duplicates_across_files", "labelled", "relabelled_by_re_exports",
                                     "outcome_conflicts", "outcomes_from_outcome_files", "new_outcomes",
                                     "outcomes_before_lead", "rejected_rows"), 0)
        self.files: dict[str, dict] = {}
        self.not_yet_landed: set[str] = set()
        self.per_day: dict[str, int] = {}
        self.chunks = 0

    def add(self, found: landed.DayLeads, leads: pd.DataFrame) -> None:
        self.chunks += 1
        history, rejects = found.history, found.rejected
        self.counts["leads"] += len(leads)
        self.counts["duplicates_across_files"] += found.duplicates
        self.counts["labelled"] += int(leads[LABEL].notna().sum())
        self.counts["relabelled_by_re_exports"] += found.relabelled
        self.counts["outcome_conflicts"] += found.conflicts
        self.counts["outcomes_from_outcome_files"] += int((history["via"] == "outcomes_file").sum()) \
            if history is not None else 0
        self.counts["new_outcomes"] += int(history["label_changed"].sum()) if history is not None else 0
        self.counts["outcomes_before_lead"] += found.refused_outcomes
        self.counts["rejected_rows"] += int(rejects["day"].notna().sum()) if len(rejects) else 0
        for row in found.files:
            kept = self.files.setdefault(row["sha256"], {**row, "rows_in_run": 0, "rejected_in_run": 0})
            kept["rows_in_run"] += row["rows_in_run"]
            kept["rejected_in_run"] += row["rejected_in_run"]
        self.not_yet_landed.update(found.not_yet_landed)
        self.per_day.update(leads[CREATED_DATE].dt.strftime("%Y-%m-%d").value_counts().to_dict())

    def metadata(self) -> dict:
        per_day = pd.Series({day: self.per_day.get(day, 0) for day in self.days}, dtype="int64")
        files = sorted(self.files.values(), key=lambda f: f["seq"])
        return {
            **self.counts,
            "chunks": self.chunks,
            "files_not_yet_landed": MetadataValue.json(sorted(self.not_yet_landed)),
            "files": MetadataValue.md(pd.DataFrame(files).to_markdown(index=False) if files else "no files"),
            "leads_per_day": MetadataValue.md(per_day.rename("leads").to_frame().to_markdown()),
        }


def _write_history(home: LeadHome, days: list[str], history: pd.DataFrame | None) -> None:
    """Every outcome event of each day's leads (replaced on re-run): what ``outcome_history`` shows."""
    frame = history if history is not None else pd.DataFrame(columns=list(HISTORY_COLUMNS))
    for day in days:
        warehouse.write_partition(home.warehouse, HISTORY, day, frame[frame["day"] == day])


def _empty_raw() -> pd.DataFrame:
    from lead_assets.core import schema

    columns = [LEAD_ID, *schema.raw_columns(), "source_file", "source_sha256", "source_row",
               OUTCOME_AT, OUTCOME_SOURCE, OUTCOME_SEQ]
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    frame[CREATED_DATE] = pd.Series(dtype="datetime64[ns]")
    frame[OUTCOME_AT] = pd.Series(dtype="datetime64[ns]")
    frame[LABEL] = pd.Series(dtype="Int8")
    frame[OUTCOME_SEQ] = pd.Series(dtype="Int64")
    for c in (LEAD_ID, schema.CITY, *schema.LEVEL_COLUMNS, "source_file", "source_sha256", OUTCOME_SOURCE):
        frame[c] = pd.Series(dtype="object")
    return frame


PIPELINE = AssetSelection.assets(
    AssetKey("raw_leads"), AssetKey("cleaned_leads"), AssetKey("lead_features"), AssetKey("scored_leads"),
    AssetKey("crm_export"),
)
OUTCOMES = AssetKey("lead_outcomes")
INGEST_ONLY = ("raw_leads", "cleaned_leads", "lead_features")


def has_champion(instance) -> bool:
    """A champion has been promoted once (cheap: one event-log lookup, no MLflow)."""
    return instance.get_latest_materialization_event(AssetKey("champion_model")) is not None


def _seqs(entries: list[ledger.IndexRecord]) -> str:
    return "-".join(sorted(str(e.seq) if e.seq is not None else e.sha256[:16] for e in entries))[:200]


def inbox_run_request(entries: list[ledger.IndexRecord], score: bool = True, prefix: str = "ingest") -> RunRequest:
    """One run over the day range that a tick's changes cover (single-run backfill policy).

    Before the first champion exists, the run stops at ``lead_features``: scoring would fail.
    A relabel (outcomes attached to days already scored) stops there too: scores do not change.
    """
    dated = [e for e in entries if e.days]
    first = min(e.first_day for e in dated)
    last = max(e.last_day for e in dated)
    key = f"{prefix}-" + _seqs(entries)
    keys = (*INGEST_ONLY, "scored_leads", "crm_export") if score else INGEST_ONLY
    return RunRequest(
        run_key=key,
        asset_selection=[AssetKey(k) for k in keys],
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
            "lead_assets/files": ",".join(sorted({e.file for e in entries}))[:1000],
        },
    )


def take_ready_files(home: LeadHome, lead_home: LeadHomeResource, seen: dict, failed: dict):
    """Receive the ready inbox files, up to this tick's budget; everything else waits a tick."""
    max_files, max_bytes = ledger.tick_limits()
    max_files, max_bytes = lead_home.tick_max_files or max_files, lead_home.tick_max_bytes or max_bytes
    candidates, links = ledger.list_candidates(home.inbox)
    asks_kernel = lead_home.settles_closed_files(home)
    closed = _closed_early(candidates, home, lead_home) if asks_kernel else set()  # no settle time to wait
    candidates, looked = ledger.settle(candidates, {**seen, **dict.fromkeys(closed, ())},
                                       lead_home.settle_seconds)  # settled within this tick
    seen = {**seen, **looked}
    received = [ledger.refuse_link(home, link) for link in links]
    next_seen, next_failed, spent, taken = {}, {}, 0, 0
    for candidate in candidates:
        stamp = [candidate.size, candidate.mtime]
        if failed.get(candidate.name) == stamp:  # could not even be quarantined: retry when it changes
            next_failed[candidate.name] = stamp
            continue
        over_budget = taken >= max_files or (taken and spent >= max_bytes)
        if over_budget or not (candidate.name in closed or ledger.ready(
                candidate, seen.get(candidate.name), lead_home.settle_seconds)) or (
                asks_kernel and candidate.name not in closed and writers.has_writer(candidate.path.path)):
            next_seen[candidate.name] = stamp  # a writer that paused past the settle time still writes it
            continue
        entry = ledger.receive(home, candidate.path, lead_home.first_date, lead_home.today())
        taken += 1
        if entry is None:
            continue
        spent += max(candidate.size, entry.inflated_bytes)
        if entry.status == "failed":
            next_failed[candidate.name] = stamp
        received.append(entry)
    return received, next_seen, next_failed, len(candidates) - taken


def _closed_early(candidates, home: LeadHome, lead_home: LeadHomeResource) -> set[str]:
    """Fresh files in a local inbox that no process writes any more (``core.inbox.writers``), when
    ``settle_closed_files`` is on: they are ready now instead of after ``settle_seconds``."""
    now = time.time()
    fresh = {c.path.path: c for c in candidates if 0 <= now - c.mtime < lead_home.settle_seconds}
    closed = writers.closed_by_their_writers({path: (c.size, c.mtime) for path, c in fresh.items()})
    return {fresh[path].name for path in closed}


def outcomes_run_request(entries: list[ledger.IndexRecord]) -> RunRequest:
    """Landed (or withdrawn) outcomes files: ``lead_outcomes`` finds the days they change."""
    return RunRequest(run_key="outcomes-" + _seqs(entries), asset_selection=[OUTCOMES],
                      tags={"lead_assets/files": ",".join(sorted({e.file for e in entries}))[:1000]})


@sensor(
    # Dagster's sensor daemon evaluates sensors at most every 5 s (MIN_INTERVAL_LOOP_TIME in
    # dagster._daemon.sensor); asking for less changes nothing. A fresh file settles within the
    # tick, and a tick may watch the inbox for a while (tick_watch_seconds) instead of returning.
    minimum_interval_seconds=ticks.every(5),
    default_status=DefaultSensorStatus.RUNNING,
    asset_selection=PIPELINE | AssetSelection.assets(OUTCOMES),
    description="Moves ready inbox files to landing or quarantine and scores their days; outcomes files "
                "go to lead_outcomes, and the days whose labels they change re-run.",
)
def inbox_sensor(context: SensorEvaluationContext, lead_home: LeadHomeResource):
    """Cheap by design: header and created_date only, no pandas, no model.

    The cursor holds the index offset and sequence number already requested: a tick reads
    only index lines written since, so its cost follows the new files, not the history, and a
    ``lead-assets land`` that finishes after a tick is requested by the next one. With
    ``tick_watch_seconds`` the tick looks again every ``WATCH_POLL_SECONDS`` until a file is
    ready or the time is up, so a drop is seen within a fraction of a second, not 0-5 s later.
    """
    home = lead_home.resolve()
    watch = lead_home.watch_seconds(home)
    until = time.monotonic() + watch
    cursor = json.loads(context.cursor) if context.cursor else {}
    while True:
        result, cursor, acted = _tick(context, home, lead_home, cursor)
        if acted or time.monotonic() + WATCH_POLL_SECONDS > until:
            return result
        time.sleep(WATCH_POLL_SECONDS)


WATCH_POLL_SECONDS = 0.25


def _tick(context: SensorEvaluationContext, home: LeadHome, lead_home: LeadHomeResource,
          cursor: dict) -> tuple[SensorResult, dict, bool]:
    received, next_seen, next_failed, waiting = take_ready_files(
        home, lead_home, cursor.get("seen", {}), cursor.get("failed", {}))
    for entry in received:
        context.log.info(f"{entry.file}: {entry.status}" + (f" ({entry.rule}: {entry.detail})" if entry.rule else ""))
    requested = cursor.get("requested_seq", 0)
    changes, offset = ledger.read_index(home, cursor.get("index_offset", 0) if requested else 0)
    new = [c for c in changes if c.seq > requested]
    pending = [c for c in new if c.status in ledger.ACCEPTED_OR_WITHDRAWN and c.kind == "leads" and c.days]
    outcome_files = [c for c in new if c.status in ledger.ACCEPTED_OR_WITHDRAWN and c.kind == "outcomes"]
    relabels = [c for c in new if c.status == ledger.RELABEL and c.days]
    new_cursor = {"seen": next_seen, "failed": next_failed, "index_offset": offset,
                  "requested_seq": max([requested, *(c.seq for c in changes)])}
    requests = []
    if pending:
        requests.append(inbox_run_request(pending, score=has_champion(context.instance)))
    if outcome_files:
        requests.append(outcomes_run_request(outcome_files))
    if relabels:
        requests.append(inbox_run_request(relabels, score=False, prefix="relabel"))
    if not requests:
        return (SensorResult(skip_reason=SkipReason(f"{waiting} file(s) waiting, none ready"),
                             cursor=json.dumps(new_cursor)), new_cursor, bool(received))
    return SensorResult(run_requests=requests, cursor=json.dumps(new_cursor)), new_cursor, True
