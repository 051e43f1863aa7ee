"""lead_features: exactly the model's input columns for each day's cleaned leads (streamed by chunk of days)."""

from dagster import AssetExecutionContext, asset

from lead_assets.core.leads.features import build_features
from lead_assets.core.schema import LABEL
from lead_assets.core.store.warehouse import DayChunks, DayStream
from lead_assets.defs.partitions import lead_days, one_run_per_range


@asset(
    partitions_def=lead_days,
    backfill_policy=one_run_per_range,
    group_name="leads",
    kinds={"pandas", "parquet"},
    description="Keys, the model's feature columns in order, and the label where known.",
)
def lead_features(context: AssetExecutionContext, cleaned_leads: DayChunks) -> DayStream:
    totals = {"leads": 0, "labelled": 0}

    def frames():
        for _, cleaned in cleaned_leads.chunks(context.partition_keys):
            if not len(cleaned.columns):
                continue
            features = build_features(cleaned)
            del cleaned
            totals["leads"] += len(features)
            totals["labelled"] += int(features[LABEL].notna().sum())
            yield features

    return DayStream(frames(), lambda: {**totals, **cleaned_leads.stats()})
