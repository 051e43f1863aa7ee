"""crm_export: each scored day published where a CRM sync picks it up (an outbox file and a SQL table)."""

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from lead_assets.core.scoring import crm

from lead_assets.core.store import warehouse
from lead_assets.core.scoring.capacity import CAPACITY_ENV, IN_CAPACITY, capacity_from_environment, check_capacity
from lead_assets.core.store.warehouse import DayChunks
from lead_assets.defs.partitions import lead_days, one_run_per_range
from lead_assets.defs.resources import CrmResource



class CrmExportConfig(Config):
    daily_capacity: int | None = Field(
        None, description="Leads the team can call a day: a lead is in_capacity when its rank in its day is at "
                          f"most this and it is not junk. None: {CAPACITY_ENV}, else no limit.")
    max_bucket_changed_share: float = Field(
        0.3, description="Warn when more than this share of the run's recent leads changed bucket.")
    recent_days: int = Field(14, description="The run's latest days that the stability check looks at.")


@asset(
    partitions_def=lead_days,
    backfill_policy=one_run_per_range,
    ins={"scored_leads": AssetIn(metadata={"allow_missing_partitions": True})},
    group_name="scoring",
    kinds={"csv", "sql"},
    check_specs=[AssetCheckSpec("lists_stable", asset="crm_export",
                                description="Few recent leads changed bucket in this run (a new champion "
                                            "reshuffling the call lists warns).")],
    description="Each scored day for the CRM: outbox/<day>.csv and the lead_scores table (lead_id, score, "
                "bucket, rank in the day, in_capacity, top reasons in words, model version, scored at); a day "
                "written again replaces its rows and records what changed.",
)
def crm_export(context: AssetExecutionContext, config: CrmExportConfig, scored_leads: DayChunks,
               crm_sync: CrmResource) -> MaterializeResult:
    capacity = check_capacity(config.daily_capacity) or capacity_from_environment()
    days = sorted(context.partition_keys)
    outbox, engine = crm_sync.outbox_path(), crm_sync.engine()
    recent = set(days[-config.recent_days:])
    befores, afters = [], []
    for group, frame in scored_leads.chunks(days):
        rows = crm.export_rows(frame, capacity) if len(frame.columns) else _empty_rows()
        for day in group:
            warehouse.atomic_write_bytes(outbox / f"{day}.csv", crm.to_csv_bytes(rows[rows[crm.DAY] == day]))
        before = crm.replace_days(engine, group, rows)
        befores.append(before[before[crm.DAY].isin(recent)] if len(before) else before)
        afters.append(rows[rows[crm.DAY].isin(recent)])
        context.log.info(f"{len(rows):,} leads of {group[0]}..{group[-1]} published")
    after = pd.concat(afters, ignore_index=True) if afters else _empty_rows()
    before = pd.concat([b for b in befores if len(b)], ignore_index=True) if any(len(b) for b in befores) \
        else _empty_rows()
    moved = crm.changes(before, after)
    stable = moved["bucket_changed_share"] <= config.max_bucket_changed_share
    transitions = moved["transitions"]
    return MaterializeResult(
        metadata={
            "days": len(days), "leads_recent_days": moved["leads"], "capacity": capacity if capacity else "none",
            "in_capacity_recent_days": int(after[IN_CAPACITY].sum()) if len(after) else 0,
            "changed": moved["changed"], "bucket_changed": moved["bucket_changed"],
            "bucket_changed_share": moved["bucket_changed_share"],
            "in_capacity_changed_share": moved["in_capacity_changed_share"],
            "bucket_transitions": MetadataValue.md(transitions.to_markdown(index=False) if len(transitions)
                                                   else "no lead was published before"),
            "changed_leads": MetadataValue.json(moved["changed_leads"][:200]),
            "outbox": MetadataValue.path(str(outbox)),
        },
        check_results=[AssetCheckResult(
            check_name="lists_stable", passed=bool(stable), severity=AssetCheckSeverity.WARN,
            metadata={"bucket_changed_share": moved["bucket_changed_share"],
                      "max_bucket_changed_share": config.max_bucket_changed_share,
                      "in_capacity_changed_share": moved["in_capacity_changed_share"]})],
    )


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in crm.EXPORT_COLUMNS})
