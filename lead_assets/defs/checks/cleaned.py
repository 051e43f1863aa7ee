"""cleaned_leads: nothing the model reads is null or unknown, and no lead went missing (blocking)."""

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckSeverity, AssetIn

from lead_assets.core import quality
from lead_assets.defs.checks.common import daily_check, evaluations


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
def cleaned_leads_quality(context: AssetCheckExecutionContext, cleaned_leads: pd.DataFrame,
                          raw_leads: pd.DataFrame):
    result = quality.check_cleaned_leads(cleaned_leads, raw_leads, list(context.partition_keys))
    yield from evaluations(context, result, severity=AssetCheckSeverity.ERROR, blocking=True)
