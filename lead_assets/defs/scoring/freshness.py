"""Scores that stay fresh: promote a passed model, rescore every day when the champion changes
(promotion, rollback, or an alias moved by hand in MLflow), retrain weekly through the gate."""

import json

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from lead_assets.core.store import warehouse
from lead_assets.defs.partitions import lead_days
from lead_assets.defs.resources import LeadHomeResource, ModelRegistry
from lead_assets.defs import ticks

SCORED = AssetKey("scored_leads")

rescore_job = define_asset_job(
    "rescore_leads",
    selection=AssetSelection.assets(SCORED, AssetKey("crm_export")),
    partitions_def=lead_days,
    description="Rescore a range of days with the current champion and publish them to the CRM (one run per "
                "range).",
)

retrain_job = define_asset_job(
    "retrain_lead_scoring_model",
    selection=AssetSelection.assets("lead_scoring_model", "champion_model"),
    tags={"lead_assets/stage": "training"},
    description="Train a challenger; it becomes champion only if the promotion gate passes.",
)

retrain_schedule = ScheduleDefinition(
    job=retrain_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Weekly retraining (Mondays 03:00 UTC); stopped by default, start it in the UI.",
)


champion_promotion = AutomationConditionSensorDefinition(
    "champion_promotion",
    target=AssetSelection.assets("champion_model"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=ticks.every(30),
    description="Moves the champion alias after a training run whose promotion gate passed, "
                "however that run was launched (UI, CLI, schedule).",
)


def rescoring_request(days: list[str], version: str, change: int) -> RunRequest | SkipReason:
    """One single-run backfill of scored_leads over every day that has features.

    ``change`` counts champion changes, so going back to an earlier version (a rollback) is a new
    run key, not a duplicate of that version's first rescoring.
    """
    if not days:
        return SkipReason(f"champion is now version {version}, but no day has lead features yet")
    return RunRequest(
        run_key=f"rescore-{change}-v{version}-{days[0]}-{days[-1]}",
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1],
              "lead_assets/reason": f"champion is now version {version}"},
    )


@sensor(
    job=rescore_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=ticks.every(30),
    description="When the champion alias changes (promotion or rollback), rescore every day with leads in one run.",
)
def rescore_on_champion_change(context: SensorEvaluationContext, lead_home: LeadHomeResource,
                               model_registry: ModelRegistry):
    version = model_registry.champion_version()
    seen = json.loads(context.cursor) if context.cursor else {}
    if version is None:
        return SkipReason(f"no {model_registry.model_name}@champion yet")
    if seen.get("version") == version:
        return SkipReason(f"champion is still version {version}")
    change = int(seen.get("changes", 0)) + 1
    context.update_cursor(json.dumps({"version": version, "changes": change}))
    days = warehouse.existing_partitions(lead_home.resolve().warehouse, "lead_features")
    return rescoring_request(days, version, change)
