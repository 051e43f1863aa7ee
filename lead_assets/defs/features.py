"""lead_features: exactly the model's input columns for each day's cleaned leads."""

import pandas as pd
from dagster import AssetExecutionContext, asset

from lead_assets.core.features import build_features
from lead_assets.core.schema import LABEL
from lead_assets.defs.partitions import lead_days, one_run_per_range


@asset(
    partitions_def=lead_days,
    backfill_policy=one_run_per_range,
    group_name="leads",
    kinds={"pandas", "parquet"},
    description="Keys, the model's feature columns in order, and the label where known.",
)
def lead_features(context: AssetExecutionContext, cleaned_leads: pd.DataFrame) -> pd.DataFrame:
    features = build_features(cleaned_leads)
    context.add_output_metadata({"leads": len(features), "labelled": int(features[LABEL].notna().sum())})
    return features
