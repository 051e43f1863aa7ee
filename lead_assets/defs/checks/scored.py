"""scored_leads: one scored row per lead, with a sane score, bucket and model version (warns)."""

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckSeverity

from lead_assets.core import quality
from lead_assets.defs.checks.common import daily_check, evaluations


@daily_check(
    asset="scored_leads",
    blocking=False,
    description=(
        "Great Expectations on each day of scored_leads: lead_id unique, score in [0, 100], bucket in "
        "{hot, warm, cold, junk}, model_version present. Warns (severity WARN): nothing downstream "
        "is stopped, the scores are already written."
    ),
)
def scored_leads_quality(context: AssetCheckExecutionContext, scored_leads: pd.DataFrame):
    result = quality.check_scored_leads(scored_leads, list(context.partition_keys))
    yield from evaluations(context, result, severity=AssetCheckSeverity.WARN, blocking=False)
