"""raw_leads and the inbox sensor: files in, typed leads per day out."""


import json

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

from lead_assets.core import inbox, warehouse
from lead_assets.core.home import LeadHome
from lead_assets.core.ingest import REJECTED_COLUMNS, parse_lead_file
from lead_assets.core.schema import CREATED_DATE, LEAD_ID
from lead_assets.defs.partitions import lead_days, one_run_per_range
from lead_assets.defs.resources import LeadHomeResource

REJECTED = "rejected_leads"


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
def raw_leads(context: AssetExecutionContext, lead_home: LeadHomeResource) -> pd.DataFrame:
    home = lead_home.resolve()
    days = list(context.partition_keys)
    wanted = set(days)
    kept, rejected, files = [], [], []
    for entry in inbox.files_for_days(home, days):
        parsed = parse_lead_file(
            home.landing / entry.landed_as, name=entry.file, sha256=entry.sha256,
            first_day=lead_home.first_date, today=lead_home.today(),
        )
        in_run = parsed.accepted[CREATED_DATE].dt.strftime("%Y-%m-%d").isin(wanted)
        kept.append(parsed.accepted[in_run])
        rejected.append(parsed.rejected[parsed.rejected["day"].isin(wanted) | parsed.rejected["day"].isna()])
        files.append({"file": entry.file, "sha256": entry.sha256[:12], "rows_in_run": int(in_run.sum()),
                      "rejected_in_run": int(parsed.rejected["day"].isin(wanted).sum())})
    leads = pd.concat(kept, ignore_index=True) if kept else _empty_raw()
    before = len(leads)
    leads = leads.drop_duplicates(subset=[LEAD_ID], keep="first").reset_index(drop=True)
    rejects = pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame(columns=list(REJECTED_COLUMNS))
    _write_rejected(home, days, rejects)
    per_day = leads[CREATED_DATE].dt.strftime("%Y-%m-%d").value_counts().reindex(days, fill_value=0)
    context.add_output_metadata({
        "leads": len(leads),
        "duplicates_across_files": before - len(leads),
        "rejected_rows": int(rejects["day"].notna().sum()) if len(rejects) else 0,
        "files": MetadataValue.md(pd.DataFrame(files).to_markdown(index=False) if files else "no files"),
        "leads_per_day": MetadataValue.md(per_day.rename("leads").to_frame().to_markdown()),
    })
    return leads


def _empty_raw() -> pd.DataFrame:
    from lead_assets.core import schema

    columns = [LEAD_ID, *schema.raw_columns(), "source_file", "source_sha256", "source_row"]
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    frame[CREATED_DATE] = pd.Series(dtype="datetime64[ns]")
    for c in (LEAD_ID, schema.CITY, *schema.LEVEL_COLUMNS, "source_file", "source_sha256"):
        frame[c] = pd.Series(dtype="object")
    return frame


PIPELINE = AssetSelection.assets(
    AssetKey("raw_leads"), AssetKey("cleaned_leads"), AssetKey("lead_features"), AssetKey("scored_leads")
)


def inbox_run_request(entries: list[inbox.LedgerEntry]) -> RunRequest:
    """One run over the day range that a tick's files cover (single-run backfill policy)."""
    first = min(e.first_day for e in entries)
    last = max(e.last_day for e in entries)
    key = "ingest-" + "-".join(sorted(e.sha256[:16] for e in entries))
    return RunRequest(
        run_key=key,
        asset_selection=[AssetKey(k) for k in ("raw_leads", "cleaned_leads", "lead_features", "scored_leads")],
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
            "lead_assets/files": ",".join(sorted(e.file for e in entries))[:1000],
        },
    )


@sensor(
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    asset_selection=PIPELINE,
    description="Moves ready inbox files to landing or quarantine and scores their days.",
)
def inbox_sensor(context: SensorEvaluationContext, lead_home: LeadHomeResource):
    """Cheap by design: header and created_date only, no pandas, no model."""
    home = lead_home.resolve()
    cursor = json.loads(context.cursor) if context.cursor else {}
    seen: dict[str, list] = cursor.get("seen", {})
    watermark: str = cursor.get("requested_through", "")
    at_watermark = set(cursor.get("requested_at_watermark", []))
    candidates, links = inbox.list_candidates(home.inbox)
    next_seen = {}
    received = [inbox.refuse_link(home, link) for link in links]
    for candidate in candidates:
        if not inbox.ready(candidate, seen.get(candidate.name), lead_home.settle_seconds):
            next_seen[candidate.name] = [candidate.size, candidate.mtime]
            continue
        received.append(inbox.receive(home, candidate.path, lead_home.first_date, lead_home.today()))
    pending = [
        e for e in inbox.landed_entries(home)
        if e.received_at > watermark or (e.received_at == watermark and e.sha256 not in at_watermark)
    ]
    if pending:
        newest = max(e.received_at for e in pending)
        at_watermark = (at_watermark if newest == watermark else set()) | {
            e.sha256 for e in pending if e.received_at == newest}
        watermark = newest
    new_cursor = {"seen": next_seen, "requested_through": watermark,
                  "requested_at_watermark": sorted(at_watermark)}
    for entry in received:
        context.log.info(f"{entry.file}: {entry.status}" + (f" ({entry.rule}: {entry.detail})" if entry.rule else ""))
    if not pending:
        return SensorResult(skip_reason=SkipReason(f"{len(candidates)} file(s) waiting, none ready"),
                            cursor=json.dumps(new_cursor))
    return SensorResult(run_requests=[inbox_run_request(pending)], cursor=json.dumps(new_cursor))
