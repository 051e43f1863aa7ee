"""Scores that stay fresh: rescore everything after a promotion; retrain weekly through the gate."""

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    EventLogEntry,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    asset_sensor,
    define_asset_job,
)

from lead_assets.core import warehouse
from lead_assets.defs.partitions import lead_days
from lead_assets.defs.resources import LeadHomeResource

SCORED = AssetKey("scored_leads")

rescore_job = define_asset_job(
    "rescore_leads",
    selection=AssetSelection.assets(SCORED),
    partitions_def=lead_days,
    description="Rescore a range of days with the current champion (one run per range).",
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


def rescoring_request(days: list[str], version: str) -> RunRequest | SkipReason:
    """One single-run backfill of scored_leads over every day that has features."""
    if not days:
        return SkipReason("champion changed, but no day has lead features yet")
    return RunRequest(
        run_key=f"rescore-v{version}-{days[0]}-{days[-1]}",
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1],
              "lead_assets/reason": f"champion is now version {version}"},
    )


@asset_sensor(
    asset_key=AssetKey("champion_model"),
    job=rescore_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="When a new champion is promoted, rescore every day with leads in one run.",
)
def rescore_on_promotion(context: SensorEvaluationContext, asset_event: EventLogEntry, lead_home: LeadHomeResource):
    metadata = asset_event.asset_materialization.metadata if asset_event.asset_materialization else {}
    version = metadata.get("champion_version")
    version = str(version.value) if version is not None else asset_event.run_id[:8]
    days = warehouse.existing_partitions(lead_home.resolve().warehouse, "lead_features")
    return rescoring_request(days, version)
