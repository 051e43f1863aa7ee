"""cleaned_leads: nothing the model reads is null or unknown, and no lead went missing (blocking)."""

from dagster import AssetCheckExecutionContext, AssetCheckSeverity, AssetIn

from lead_assets.core.leads import quality
from lead_assets.core.store.warehouse import DayChunks
from lead_assets.defs.daily_checks import chunked_evaluations, daily_check


@daily_check(
    asset="cleaned_leads",
    blocking=True,
    additional_ins={"raw_leads": AssetIn("raw_leads")},
    description=(
        "Great Expectations on each day of cleaned_leads: no nulls in the model's columns; city_tier "
        "in {1, 2, 3}; platform/medium/source levels significant or 'others'; as many rows as "
        "raw_leads for the same day. Blocking: a failed day stops lead_features and scoring."
    ),
)
def cleaned_leads_quality(context: AssetCheckExecutionContext, cleaned_leads: DayChunks, raw_leads: DayChunks):
    def check(cleaned, days):  # the raw rows of the same days, to reconcile the counts
        return quality.check_cleaned_leads(cleaned, raw_leads.read(days), days)

    yield from chunked_evaluations(context, cleaned_leads, check, severity=AssetCheckSeverity.ERROR, blocking=True)
