"""raw_leads: the typed rows ingest accepted, checked before cleaning reads them (blocking)."""

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckSeverity

from lead_assets.core import quality
from lead_assets.defs.checks.common import daily_check, evaluations


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
def raw_leads_quality(context: AssetCheckExecutionContext, raw_leads: pd.DataFrame):
    result = quality.check_raw_leads(raw_leads, list(context.partition_keys))
    yield from evaluations(context, result, severity=AssetCheckSeverity.ERROR, blocking=True)
