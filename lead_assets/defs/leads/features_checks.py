"""lead_features: exactly the model's input schema, or nothing is scored (blocking)."""

from dagster import AssetCheckExecutionContext, AssetCheckSeverity

from lead_assets.core.leads import quality
from lead_assets.core.store.warehouse import DayChunks
from lead_assets.defs.daily_checks import chunked_evaluations, daily_check


@daily_check(
    asset="lead_features",
    blocking=True,
    description=(
        "Great Expectations on each day of lead_features: the columns are the keys, the model's "
        "feature columns in the model's order, then the label, and nothing else; each feature has the "
        "model's dtype. Blocking: a failed day stops scored_leads in the same run."
    ),
)
def lead_features_schema(context: AssetCheckExecutionContext, lead_features: DayChunks):
    yield from chunked_evaluations(context, lead_features, quality.check_lead_features, severity=AssetCheckSeverity.ERROR,
                                   blocking=True)
