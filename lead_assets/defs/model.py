"""lead_scoring_model: train on the labelled history, track in MLflow, promote through a gate."""


from datetime import datetime, timezone

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    Config,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from lead_assets.core.schema import LABEL
from lead_assets.defs.resources import ModelRegistry

MODEL_GROUP = "model"


class TrainingConfig(Config):
    """How the model is trained and judged; defaults follow the issue's targets."""

    holdout_fraction: float = Field(0.2, description="Latest share of labelled leads held out, by time.")
    train_until: str | None = Field(None, description="Train on leads created up to this date instead.")
    validation_fraction: float = Field(0.2, description="Latest share of the training window for tuning.")
    validation_blocks: int = Field(3, description="Time blocks of the validation slice, each cross-fitted.")
    recall_margin: float = Field(0.03, description="Threshold aims at target recall plus this (models age).")
    calibration: str = Field("sigmoid", description="'sigmoid' (Platt) or 'isotonic'.")
    half_life_days: float | None = Field(30.0, description="Recency weighting of training leads; None: off.")
    min_auc: float = 0.75
    min_precision: float = 0.65
    min_recall: float = 0.75
    champion_margin: float = Field(0.02, description="How much AUC a challenger may lose to the champion.")
    min_labelled_leads: int = 500


def _targets(config: TrainingConfig) -> dict[str, float]:
    return {"auc": config.min_auc, "precision": config.min_precision, "recall": config.min_recall}


@asset(
    ins={"lead_features": AssetIn(metadata={"allow_missing_partitions": True})},
    group_name=MODEL_GROUP,
    io_manager_key="json_io_manager",
    required_resource_keys={"mlflow", "model_registry", "lead_home"},
    pool="lead_training",
    kinds={"catboost", "mlflow"},
    description="CatBoost trained on older labelled leads, judged on the latest ones; a registered version.",
)
def lead_scoring_model(context: AssetExecutionContext, config: TrainingConfig, lead_features: pd.DataFrame) -> dict:
    """The dagster-mlflow resource opens this run's MLflow run; this asset always closes it."""
    import mlflow

    from lead_assets.core import registry
    from lead_assets.core.evaluation import evaluate_model
    from lead_assets.core.model import TrainConfig, train_model

    model_registry: ModelRegistry = context.resources.model_registry
    try:
        labelled = lead_features[lead_features[LABEL].notna()] if len(lead_features) else lead_features
        if len(labelled) < config.min_labelled_leads:
            raise ValueError(
                f"lead_scoring_model: only {len(labelled)} labelled leads in lead_features "
                f"(need {config.min_labelled_leads}); backfill labelled history first"
            )
        result = train_model(labelled, TrainConfig(
            holdout_fraction=config.holdout_fraction, train_until=config.train_until,
            validation_fraction=config.validation_fraction, validation_blocks=config.validation_blocks,
            target_precision=config.min_precision, target_recall=config.min_recall,
            recall_margin=config.recall_margin, calibration=config.calibration,
            half_life_days=config.half_life_days,
        ))
        version = registry.log_training(result, model_name=model_registry.model_name,
                                        tags={"dagster_run_id": context.run_id})
        _write_reference_profile(context.resources.lead_home.resolve(), result, model_registry.model_name, version)
        champion = model_registry.load_champion()
        champion_metrics = evaluate_model(champion[0], result.holdout) if champion else None
        run_id = mlflow.active_run().info.run_id if mlflow.active_run() else None
        mlflow.end_run("FINISHED")
    except BaseException:
        if mlflow.active_run():
            mlflow.end_run("FAILED")
        raise
    metrics = {k: float(v) for k, v in result.metrics.items()}
    context.add_output_metadata({
        "model_version": version,
        "mlflow_run_id": run_id or "",
        "auc": metrics.get("auc"),
        "precision": metrics.get("precision"),
        "recall": metrics.get("recall"),
        "threshold": metrics.get("threshold"),
        "metrics": MetadataValue.md(pd.Series(metrics).rename("value").to_frame().to_markdown()),
        "model_card": MetadataValue.md(result.card_markdown),
        "champion_on_same_holdout": MetadataValue.json(champion_metrics or {}),
    })
    return {
        "model_name": model_registry.model_name,
        "version": version,
        "mlflow_run_id": run_id,
        "metrics": metrics,
        "champion_version": champion[1] if champion else None,
        "champion_metrics": champion_metrics,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _write_reference_profile(home, result, model_name: str, version: str) -> None:
    """How this version scores its own holdout: what monitoring compares each scored day with."""
    import json

    from lead_assets.core import monitoring, warehouse
    from lead_assets.core.home import profile_path
    from lead_assets.core.scoring import score_leads

    scored = score_leads(result.holdout, result.model, model_name=model_name, model_version=str(version))
    reference = {"version": str(version), "threshold": result.model.threshold,
                 "profile": monitoring.profile(scored, result.model.threshold,
                                               monitoring.others_share(result.holdout))}
    warehouse.atomic_write_bytes(profile_path(home, str(version)), json.dumps(reference, indent=1).encode())


def promotion_verdict(info: dict, config: TrainingConfig | None = None):
    from lead_assets.core.evaluation import gate

    config = config or TrainingConfig()
    return gate(info["metrics"], info.get("champion_metrics"), _targets(config), margin=config.champion_margin)


@asset_check(asset=lead_scoring_model, blocking=True, description=(
    "Promotion gate: holdout AUC, precision and recall meet the targets and the challenger is not "
    "worse than the champion on the same holdout by more than the margin."))
def promotion_gate(lead_scoring_model: dict) -> AssetCheckResult:
    verdict = promotion_verdict(lead_scoring_model)
    return AssetCheckResult(
        passed=bool(verdict.passed),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "version": lead_scoring_model["version"],
            "reasons": MetadataValue.md("\n".join(f"- {r}" for r in verdict.reasons) or "all targets met"),
            "champion_version": str(lead_scoring_model.get("champion_version")),
        },
    )


@asset(
    group_name=MODEL_GROUP,
    io_manager_key="json_io_manager",
    kinds={"mlflow"},
    description="The MLflow alias 'champion' moved to a model version that passed the gate.",
)
def champion_model(context: AssetExecutionContext, lead_scoring_model: dict, model_registry: ModelRegistry) -> dict:
    verdict = promotion_verdict(lead_scoring_model)
    if not verdict.passed:
        raise ValueError(
            f"version {lead_scoring_model['version']} did not pass the promotion gate: "
            + "; ".join(verdict.reasons)
        )
    previous = model_registry.set_champion(lead_scoring_model["version"])
    context.add_output_metadata({"champion_version": lead_scoring_model["version"],
                                 "previous_champion": str(previous)})
    return {"model_name": lead_scoring_model["model_name"], "version": lead_scoring_model["version"],
            "previous_version": previous,
            "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
