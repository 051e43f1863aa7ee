"""scored_leads: one scored row per lead, with a sane score, bucket and model version (warns)."""

from dagster import AssetCheckExecutionContext, AssetCheckSeverity

from lead_assets.core.leads import quality
from lead_assets.core.store.warehouse import DayChunks
from lead_assets.defs.daily_checks import chunked_evaluations, daily_check


@daily_check(
    asset="scored_leads",
    blocking=False,
    description=(
        "Great Expectations on each day of scored_leads: lead_id unique, score in [0, 100], bucket in "
        "{hot, warm, cold, junk}, model_version present. Warns (severity WARN): nothing downstream "
        "is stopped, the scores are already written."
    ),
)
def scored_leads_quality(context: AssetCheckExecutionContext, scored_leads: DayChunks):
    yield from chunked_evaluations(context, scored_leads, quality.check_scored_leads, severity=AssetCheckSeverity.WARN,
                                   blocking=False)
