"""scored_leads: every lead of a day scored by the champion model, with bucket and reasons."""

import time
from collections import Counter

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

from lead_assets.core import clock
from lead_assets.core.model.cutoff import DEFAULT_WINDOW_DAYS
from lead_assets.core.schema import CREATED_DATE
from lead_assets.core.store.warehouse import DayChunks, DayStream
from lead_assets.defs.partitions import lead_days, one_run_per_range
from lead_assets.defs.resources import ModelRegistry

# Each day's junk cut-off looks at the leads of the days before it (core.model.cutoff), so a scored day
# reads the features of its trailing window; those days set cut-offs and are not rescored.
CUTOFF_WINDOW = TimeWindowPartitionMapping(start_offset=-(DEFAULT_WINDOW_DAYS - 1), end_offset=0,
                                           allow_nonexistent_upstream_partitions=True)


class ScoringConfig(Config):
    """Bucket cut-offs on the calibrated probability; junk is below each lead's cut-off (core.model.cutoff)."""

    hot_min_probability: float = Field(0.80, description="At or above: call first.")
    warm_min_probability: float = Field(0.60, description="At or above (and above junk): call next.")


@asset(
    partitions_def=lead_days,
    backfill_policy=one_run_per_range,
    ins={"lead_features": AssetIn(partition_mapping=CUTOFF_WINDOW, metadata={"allow_missing_partitions": True})},
    deps=[AssetKey("champion_model"), AssetKey("champion_calibration")],
    group_name="scoring",
    kinds={"catboost", "parquet"},
    pool="lead_scoring",
    description="Probability, 0-100 score, bucket, top-3 reasons and the model version, per lead.",
)
def scored_leads(
    context: AssetExecutionContext, config: ScoringConfig, lead_features: DayChunks, model_registry: ModelRegistry
) -> DayStream:
    """Scores the run's days a chunk at a time; the trailing window's probabilities (not its
    features) are carried from chunk to chunk, so every cut-off is the one an all-at-once run gets."""
    from lead_assets.core.model import recalibration
    from lead_assets.core.scoring import shown
    from lead_assets.core.scoring.batch import BucketConfig, score_leads

    started = time.perf_counter()
    champion = model_registry.load_champion()
    loading = time.perf_counter() - started
    if champion is None:
        raise Failure(
            f"no '{model_registry.model_name}@champion' model in MLflow at {model_registry.uri()}: "
            "materialize lead_scoring_model (and champion_model) first, e.g. with `make demo`"
        )
    model, version = champion
    root, now = model_registry.lead_home.resolve().warehouse, clock.now()
    refit = recalibration.latest(root, str(version))  # champion_calibration's latest refit, if any
    model = recalibration.recalibrated(model, refit)
    run_days = sorted(context.partition_keys)
    before = [day for day in lead_features.days if day < run_days[0]]
    buckets = BucketConfig(hot=config.hot_min_probability, warm=config.warm_min_probability)
    summary = ScoreSummary()

    def frames():
        window = pd.concat(
            [pd.DataFrame({CREATED_DATE: prior[CREATED_DATE], "probability": model.predict_proba(prior)})
             for _, prior in lead_features.chunks(before) if len(prior)]  # days before the run: cut-offs only
            or [pd.DataFrame({CREATED_DATE: pd.Series(dtype="datetime64[ns]"), "probability": pd.Series(dtype=float)})],
            ignore_index=True)
        for days, features in lead_features.chunks(run_days):
            if len(features):
                features = features[features[CREATED_DATE].dt.strftime("%Y-%m-%d").isin(days).to_numpy()]
            if not len(features.columns):
                continue
            scored = score_leads(features, model, model_name=model_registry.model_name,
                                 model_version=str(version), buckets=buckets, context=window)
            del features
            summary.add(scored, shown.record(root, scored, now))
            window = carried_window(window, scored, days[-1])
            yield scored

    return DayStream(frames(), lambda: {**summary.metadata(str(version)), **lead_features.stats(),
                                        "champion_load_seconds": round(loading, 3),
                                        "calibration": refit.name if refit else "as trained"})


def carried_window(window: pd.DataFrame, scored: pd.DataFrame, last_day: str) -> pd.DataFrame:
    """The probabilities the next chunk's cut-offs need: the leads of the window's days up to ``last_day``."""
    first = pd.Timestamp(last_day) - pd.Timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    recent = scored[[CREATED_DATE, "probability"]]
    both = pd.concat([window, recent], ignore_index=True) if len(window) else recent
    return both[(both[CREATED_DATE] >= first).to_numpy()].reset_index(drop=True)


class ScoreSummary:
    """The run's metadata, summed chunk by chunk (buckets, cut-off rules, means)."""

    def __init__(self):
        self.leads = 0
        self.newly_served = 0
        self.buckets: Counter = Counter()
        self.rules: Counter = Counter()
        self.cutoff_sum = 0.0
        self.score_sum = 0.0

    def add(self, scored: pd.DataFrame, newly_served: int) -> None:
        self.leads += len(scored)
        self.newly_served += newly_served
        self.buckets.update(scored["bucket"].value_counts().to_dict())
        rules = scored["cutoff_rule"].str.replace(r" of \d+ leads created .*", " of the trailing window", regex=True)
        self.rules.update(rules.value_counts().to_dict())
        self.cutoff_sum += float(scored["cutoff"].sum())
        self.score_sum += float(scored["score"].sum())

    def metadata(self, version: str) -> dict:
        buckets = pd.Series({b: self.buckets.get(b, 0) for b in ("hot", "warm", "cold", "junk")}, dtype="int64")
        rules = pd.Series(dict(self.rules.most_common()), dtype="int64")
        return {
            "leads": self.leads,
            "newly_served": self.newly_served,
            "model_version": version,
            "buckets": MetadataValue.md(buckets.rename("leads").to_frame().to_markdown()),
            "cutoff_rules": MetadataValue.md(rules.rename("leads").to_frame().to_markdown() if self.leads
                                             else "no leads"),
            "mean_cutoff": self.cutoff_sum / self.leads if self.leads else 0.0,
            "mean_score": self.score_sum / self.leads if self.leads else 0.0,
        }
