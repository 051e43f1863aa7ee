"""Outcomes in: narrow outcomes files attached to the leads they name, and the policy that labels use.

A narrow file (``lead_id``, ``app_complete_flag``, optional ``outcome_at``) has no days of its
own, so the inbox sensor cannot know which day partitions it changes. ``lead_outcomes`` reads
every landed outcomes file, reports each row as attached, pending (no such lead yet) or
rejected, and records the days whose stored labels no longer show their latest outcome; the
inbox sensor then re-runs those days (``raw_leads`` attaches every outcome on its own).
"""

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, MetadataValue, asset

from lead_assets.core import inbox, landed, outcomes, warehouse
from lead_assets.core.schema import CREATED_DATE, LEAD_ID, OUTCOME_SEQ
from lead_assets.defs.ingest import REJECTED
from lead_assets.defs.resources import LeadHomeResource

EVENTS = "outcome_events"


def _ingested_leads(root) -> pd.DataFrame:
    """Id, day and the outcome each ingested lead shows: three columns of every raw_leads file."""
    leads = warehouse.read_columns(root, "raw_leads", [LEAD_ID, CREATED_DATE, OUTCOME_SEQ])
    return leads.astype({LEAD_ID: object, CREATED_DATE: "datetime64[ns]", OUTCOME_SEQ: "Int64"})


@asset(
    deps=[AssetKey("raw_leads")],
    group_name="leads",
    io_manager_key="json_io_manager",
    kinds={"pandas", "parquet"},
    pool="lead_ingest",
    description="Every row of every outcomes file: attached to its lead, pending (no such lead yet) or "
                "rejected; asks the inbox sensor to re-run the days whose labels changed.",
)
def lead_outcomes(context: AssetExecutionContext, lead_home: LeadHomeResource) -> dict:
    home = lead_home.resolve()
    parsed = landed.parsed_outcome_files(home, lead_home.first_date, lead_home.today())
    narrow = landed.outcome_events(home, lead_home.first_date, lead_home.today())
    ingested = _ingested_leads(home.warehouse)
    known = set(ingested[LEAD_ID])
    landed_now = {entry.sha256 for entry, _ in parsed}
    for path in (home.warehouse / EVENTS).glob("*.parquet") if (home.warehouse / EVENTS).exists() else []:
        if path.stem not in landed_now:  # a withdrawn file's events leave the view
            path.unlink()
    files = []
    for entry, result in parsed:
        events = narrow[narrow[OUTCOME_SEQ] == entry.seq]
        warehouse.write_partition(home.warehouse, EVENTS, entry.sha256, events)
        warehouse.write_partition(home.warehouse, f"{REJECTED}/undated", entry.sha256, result.rejected)
        attached = int(events[LEAD_ID].isin(known).sum())
        files.append({"file": entry.file, "seq": entry.seq, "rows_read": result.rows, "attached": attached,
                      "pending": len(events) - attached, "rejected": len(result.rejected)})
    every_seq = {r.seq for r in inbox.read_index(home)[0] if r.kind == "outcomes" and r.status == "accepted"}
    stale = outcomes.stale_days(ingested, narrow, every_seq)
    seq = inbox.record_relabel(home, stale, "outcomes attached to leads already ingested") if stale else None
    report = pd.DataFrame(files, columns=["file", "seq", "rows_read", "attached", "pending", "rejected"])
    context.add_output_metadata({
        "outcome_files": len(files),
        "attached": int(report["attached"].sum()),
        "pending": int(report["pending"].sum()),
        "rejected": int(report["rejected"].sum()),
        "days_to_relabel": len(stale),
        "files": MetadataValue.md(report.to_markdown(index=False) if len(report) else "no outcomes files"),
    })
    return {"files": files, "days_to_relabel": sorted(stale), "relabel_seq": seq}
