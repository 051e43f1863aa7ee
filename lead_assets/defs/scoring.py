"""scored_leads: every lead of a day scored by the champion model, with bucket and reasons."""


from datetime import datetime, timezone

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    Config,
    Failure,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from lead_assets.core.cutoff import DEFAULT_WINDOW_DAYS
from lead_assets.core.schema import CREATED_DATE
from lead_assets.defs.partitions import lead_days, one_run_per_range
from lead_assets.defs.resources import ModelRegistry

# Each day's junk cut-off looks at the leads of the days before it (core.cutoff), so a scored day
# reads the features of its trailing window; those days set cut-offs and are not rescored.
CUTOFF_WINDOW = TimeWindowPartitionMapping(start_offset=-(DEFAULT_WINDOW_DAYS - 1), end_offset=0,
                                           allow_nonexistent_upstream_partitions=True)


class ScoringConfig(Config):
    """Bucket cut-offs on the calibrated probability; junk is below each lead's cut-off (core.cutoff)."""

    hot_min_probability: float = Field(0.80, description="At or above: call first.")
    warm_min_probability: float = Field(0.60, description="At or above (and above junk): call next.")


@asset(
    partitions_def=lead_days,
    backfill_policy=one_run_per_range,
    ins={"lead_features": AssetIn(partition_mapping=CUTOFF_WINDOW, metadata={"allow_missing_partitions": True})},
    deps=[AssetKey("champion_model")],
    group_name="scoring",
    kinds={"catboost", "parquet"},
    pool="lead_scoring",
    description="Probability, 0-100 score, bucket, top-3 reasons and the model version, per lead.",
)
def scored_leads(
    context: AssetExecutionContext, config: ScoringConfig, lead_features: pd.DataFrame, model_registry: ModelRegistry
) -> pd.DataFrame:
    from lead_assets.core import served
    from lead_assets.core.scoring import BucketConfig, score_leads

    champion = model_registry.load_champion()
    if champion is None:
        raise Failure(
            f"no '{model_registry.model_name}@champion' model in MLflow at {model_registry.uri()}: "
            "materialize lead_scoring_model (and champion_model) first, e.g. with `make demo`"
        )
    model, version = champion
    days = set(context.partition_keys)
    in_run = (lead_features[CREATED_DATE].dt.strftime("%Y-%m-%d").isin(days) if len(lead_features)
              else pd.Series(dtype=bool))
    scored = score_leads(
        lead_features[in_run.to_numpy()], model, model_name=model_registry.model_name, model_version=str(version),
        buckets=BucketConfig(hot=config.hot_min_probability, warm=config.warm_min_probability),
        context=lead_features[~in_run.to_numpy()],
    )
    served_rows = served.record(model_registry.lead_home.resolve().warehouse, scored, datetime.now(timezone.utc))
    buckets = scored["bucket"].value_counts().reindex(["hot", "warm", "cold", "junk"], fill_value=0)
    rules = scored["cutoff_rule"].str.replace(r" of \d+ leads created .*", " of the trailing window", regex=True)
    context.add_output_metadata({
        "leads": len(scored),
        "newly_served": served_rows,
        "model_version": str(version),
        "buckets": MetadataValue.md(buckets.rename("leads").to_frame().to_markdown()),
        "cutoff_rules": MetadataValue.md(rules.value_counts().rename("leads").to_frame().to_markdown()
                                         if len(scored) else "no leads"),
        "mean_cutoff": float(scored["cutoff"].mean()) if len(scored) else 0.0,
        "mean_score": float(scored["score"].mean()) if len(scored) else 0.0,
    })
    return scored
