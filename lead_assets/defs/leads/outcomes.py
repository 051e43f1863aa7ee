"""Outcomes in: narrow outcomes files attached to the leads they name, and the policy that labels use.

A narrow file (``lead_id``, ``app_complete_flag``, optional ``outcome_at``) has no days of its
own, so the inbox sensor cannot know which day partitions it changes. ``lead_outcomes`` reads
every landed outcomes file, reports each row as attached (it set or changed its lead's label),
unchanged (it repeats the label in force, or an outcome with a later ``outcome_at`` is in
force), pending (no such lead yet) or rejected, and records the days whose stored labels no
longer show their outcomes; the inbox sensor then re-runs those days (``raw_leads`` attaches
every outcome on its own, with the same rules: ``core.leads.labels.resolve``).
"""

import os
import shutil

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, MetadataValue, asset

from lead_assets.core.inbox import ledger

from lead_assets.core.leads import labels, landed

from lead_assets.core.store import warehouse
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT, OUTCOME_SEQ
from lead_assets.defs.inbox.ingest import HISTORY, REJECTED
from lead_assets.defs.resources import LeadHomeResource

EVENTS = "outcome_events"
STATUSES = ("attached", "unchanged", "pending", "rejected")


def _ingested_leads(home) -> pd.DataFrame:
    """Every ingested lead: id, day, the outcome it shows, and the ledger position of its file."""
    leads = warehouse.read_columns(home.warehouse, "raw_leads",
                                   [LEAD_ID, CREATED_DATE, LABEL, OUTCOME_AT, OUTCOME_SEQ, "source_sha256"])
    leads = leads.astype({LEAD_ID: object, CREATED_DATE: "datetime64[ns]", OUTCOME_AT: "datetime64[ns]",
                          OUTCOME_SEQ: "Int64"})
    leads[LABEL] = pd.array(leads[LABEL], dtype="Int8")
    seqs = {e.sha256: e.seq for e in ledger.landed_entries(home)}
    return leads.assign(lead_seq=leads["source_sha256"].map(seqs).astype("float64"))


def _recorded(home) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What earlier raw_leads runs recorded: the events lead files carried, and the outcomes-file
    events already in outcome_history or refused in rejected_leads."""
    history = warehouse.read_columns(home.warehouse, HISTORY, list(labels.HISTORY_COLUMNS))
    history = history.astype({LEAD_ID: object, OUTCOME_AT: "datetime64[ns]"})
    from_files = history["via"].eq(labels.OUTCOMES_FILE).to_numpy(dtype=bool)
    lead_events = history[~from_files][[*labels.EVENT_COLUMNS, "via"]]
    lead_events = lead_events.astype({LABEL: "Int8", OUTCOME_SEQ: "int64", "source_row": "int64"})
    refused = warehouse.read_columns(home.warehouse, REJECTED, ["source_sha256", "source_row", "day", "rule"])
    refused = refused[refused["rule"].eq("outcome_before_lead").to_numpy(dtype=bool)]
    keys = ["source_sha256", "source_row", "day"]
    recorded = pd.concat([history[from_files][keys], refused[keys]], ignore_index=True)
    return lead_events, recorded.astype({"source_row": "int64"})


@asset(
    deps=[AssetKey("raw_leads")],
    group_name="leads",
    io_manager_key="json_io_manager",
    kinds={"pandas", "parquet"},
    pool="lead_ingest",
    description="Every row of every outcomes file: attached (set or changed its lead's label), unchanged "
                "(repeats the label in force), pending (no such lead yet) or rejected; asks the inbox sensor "
                "to re-run the days whose labels changed.",
)
def lead_outcomes(context: AssetExecutionContext, lead_home: LeadHomeResource) -> dict:
    home = lead_home.resolve()
    parsed = landed.parsed_outcome_files(home, lead_home.first_date, lead_home.today())
    narrow = landed.OutcomeIndex(home, lead_home.first_date, lead_home.today()).all()
    ingested = _ingested_leads(home)
    lead_events, recorded = _recorded(home)
    live = {entry.sha256 for entry, _ in parsed}
    status, stale = labels.judge(narrow, ingested, lead_events, recorded, live)
    narrow = narrow.assign(status=status)
    for path in (home.warehouse / EVENTS).glob("*.parquet") if (home.warehouse / EVENTS).exists() else []:
        if path.stem not in live:  # a withdrawn file's events leave the view
            path.unlink()
    files = []
    for entry, result in parsed:
        events = narrow[narrow["source_sha256"].eq(entry.sha256).to_numpy()]
        warehouse.write_partition(home.warehouse, EVENTS, entry.sha256, events.drop(columns=["via"]))
        refused = _copy_rejected(home, entry.sha256, result)
        counts = events["status"].value_counts()
        files.append({"file": entry.file, "seq": entry.seq, "rows_read": result.rows,
                      **{s: int(counts.get(s, 0)) for s in STATUSES[:3]},
                      "rejected": refused + int(counts.get("rejected", 0))})
    seq = ledger.record_relabel(home, stale, "outcomes attached to leads already ingested") if stale else None
    report = pd.DataFrame(files, columns=["file", "seq", "rows_read", *STATUSES])
    context.add_output_metadata({
        "outcome_files": len(files),
        **{s: int(report[s].sum()) for s in STATUSES},
        "days_to_relabel": len(stale),
        "files": MetadataValue.md(report.to_markdown(index=False) if len(report) else "no outcomes files"),
    })
    return {"files": files, "days_to_relabel": sorted(stale), "relabel_seq": seq}


def _copy_rejected(home, sha256: str, parsed: landed.Parsed) -> int:
    """The file's rejected rows into rejected_leads (undated), copied as stored: never held in memory."""
    import pyarrow.parquet as pq

    from lead_assets.core.store.home import is_local

    target = warehouse.partition_path(home.warehouse, f"{REJECTED}/undated", sha256)
    with parsed.rejected_path.open("rb") as source:
        rows = pq.ParquetFile(source).metadata.num_rows
        source.seek(0)
        if not is_local(target):
            target.write_bytes(source.read())
            return int(rows)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
        try:
            with open(tmp.path, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            os.replace(tmp.path, target.path)
        finally:
            warehouse.remove_quietly(tmp)
    return int(rows)
