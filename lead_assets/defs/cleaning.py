"""cleaned_leads: the case study's cleaning rules applied to each day of raw leads."""

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from lead_assets.core.clean import clean_leads
from lead_assets.core.schema import CITY_TIER, CREATED_DATE, LABEL, LEAD_ID
from lead_assets.defs.partitions import lead_days, one_run_per_range

SOURCE_COLUMNS = ["source_file", "source_sha256", "source_row"]


@asset(
    partitions_def=lead_days,
    backfill_policy=one_run_per_range,
    group_name="leads",
    kinds={"pandas", "parquet"},
    description="Null fill, city tier, rare levels to 'others', interactions summed into 5 groups.",
)
def cleaned_leads(context: AssetExecutionContext, raw_leads: pd.DataFrame) -> pd.DataFrame:
    cleaned = clean_leads(raw_leads.drop(columns=SOURCE_COLUMNS, errors="ignore"))
    labelled = int(cleaned[LABEL].notna().sum()) if LABEL in cleaned else 0
    context.add_output_metadata({
        "leads": len(cleaned),
        "labelled": labelled,
        "by_city_tier": MetadataValue.md(
            cleaned[CITY_TIER].value_counts().sort_index().rename("leads").to_frame().to_markdown()
        ),
    })
    first = [LEAD_ID, CREATED_DATE]
    return cleaned[first + [c for c in cleaned.columns if c not in first]]
