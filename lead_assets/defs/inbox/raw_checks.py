"""raw_leads: the typed rows ingest accepted, checked before cleaning reads them (blocking)."""

from dagster import AssetCheckExecutionContext, AssetCheckSeverity

from lead_assets.core.leads import quality
from lead_assets.core.store.warehouse import DayChunks
from lead_assets.defs.daily_checks import chunked_evaluations, daily_check


@daily_check(
    asset="raw_leads",
    blocking=True,
    description=(
        "Great Expectations on each day of raw_leads: required columns present; created_date parsed, "
        "inside its partition day and not in the future; counts are non-negative numbers; referred_lead "
        "and the label (when known) are 0/1; lead_id present and unique (duplicate rate reported). "
        "Blocking: a failed day stops cleaned_leads, lead_features and scoring in the same run."
    ),
)
def raw_leads_quality(context: AssetCheckExecutionContext, raw_leads: DayChunks):
    yield from chunked_evaluations(context, raw_leads, quality.check_raw_leads, severity=AssetCheckSeverity.ERROR,
                                   blocking=True)
