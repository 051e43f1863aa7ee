"""cleaned_leads: the case study's cleaning rules applied to each day of raw leads.

A range run streams (``DayChunks`` in, ``DayStream`` out): one chunk of days is cleaned and
written at a time, and the metadata is summed over the chunks.
"""

from collections import Counter

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.schema import CITY_TIER, CREATED_DATE, LABEL, LEAD_ID
from lead_assets.core.store.warehouse import DayChunks, DayStream
from lead_assets.defs.partitions import lead_days, one_run_per_range

SOURCE_COLUMNS = ["source_file", "source_sha256", "source_row"]


@asset(
    partitions_def=lead_days,
    backfill_policy=one_run_per_range,
    group_name="leads",
    kinds={"pandas", "parquet"},
    description="Null fill, city tier, rare levels to 'others', interactions summed into 5 groups.",
)
def cleaned_leads(context: AssetExecutionContext, raw_leads: DayChunks) -> DayStream:
    totals = {"leads": 0, "labelled": 0}
    tiers: Counter = Counter()

    def frames():
        for _, raw in raw_leads.chunks(context.partition_keys):
            if not len(raw.columns):
                continue
            cleaned = clean_leads(raw.drop(columns=SOURCE_COLUMNS, errors="ignore"))
            del raw
            totals["leads"] += len(cleaned)
            totals["labelled"] += int(cleaned[LABEL].notna().sum()) if LABEL in cleaned else 0
            tiers.update(cleaned[CITY_TIER].value_counts().to_dict())
            first = [LEAD_ID, CREATED_DATE]
            yield cleaned[first + [c for c in cleaned.columns if c not in first]]

    def metadata() -> dict:
        by_tier = {tier: tiers[tier] for tier in sorted(tiers)}
        return {
            **totals,
            "by_city_tier": MetadataValue.md(
                pd.Series(by_tier, dtype="int64").rename_axis(CITY_TIER).rename("leads").to_frame().to_markdown()),
            **raw_leads.stats(),
        }

    return DayStream(frames(), metadata)
