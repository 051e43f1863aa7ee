"""lead_scoring_model: train on the labelled history, track in MLflow, promote through a gate."""


import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    AutomationCondition,
    Config,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from lead_assets.core import clock
from lead_assets.core.model.cutoff import DEFAULT_WINDOW_DAYS
from lead_assets.core.model.judging import promotion_verdict
from lead_assets.core.schema import CREATED_DATE
from lead_assets.core.store.warehouse import DayChunks
from lead_assets.defs.resources import ModelRegistry

MODEL_GROUP = "model"

# A training run (UI, CLI or schedule) whose gate passed is enough: the champion follows, and
# never when the blocking gate failed.
PROMOTE_WHEN_GATE_PASSES = AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()


class TrainingConfig(Config):
    """How the model is trained and judged; defaults follow the issue's targets and the backtests."""

    holdout_fraction: float = Field(
        0.0, description="0: judge on monthly backtests and refit on every labelled lead; else hold out this "
                         "latest share of labelled leads by time (the registered model never sees it).")
    train_until: str | None = Field(None, description="Judge on the leads created after this date instead.")
    backtest_months: int = Field(3, description="Latest labelled months, each scored by a model trained before it.")
    month_tolerance: float = Field(0.05, description="How far one backtest month may miss a target.")
    min_fold_share: float = Field(0.5, description="A backtest month counts when the model judged on it was "
                                                   "trained on at least this share of the training window.")
    validation_fraction: float = Field(0.2, description="Latest share of the training window for tuning.")
    validation_blocks: int = Field(3, description="Time blocks of the validation slice, each cross-fitted.")
    recall_margin: float = Field(0.05, description="The cut-off aims at target recall plus this (models age).")
    cutoff: str = Field("trailing_share", description="'trailing_share': keep the best share of the leads of "
                                                      "the trailing window; 'threshold': a fixed probability.")
    cutoff_window_days: int = Field(14, description="Days of leads each cut-off is taken over (at most 14).")
    calibration: str = Field("sigmoid", description="'sigmoid' (Platt) or 'isotonic'.")
    half_life_days: float | None = Field(30.0, description="Recency weighting of training leads; None: off.")
    seeds: int = Field(1, description="CatBoost models with consecutive seeds averaged into one.")
    min_auc: float = 0.75
    min_precision: float = 0.65
    min_recall: float = 0.75
    champion_margin: float = Field(0.02, description="How much AUC a challenger may lose to the champion.")
    min_labelled_leads: int = 500
    history_days: int | None = Field(
        365, description="Train on the labelled leads of this many days up to the newest labelled day (older "
                         "feature files are not read); None: all of them.")

    def train_config(self):
        from lead_assets.core.model.recipe import TrainConfig

        return TrainConfig(
            holdout_fraction=self.holdout_fraction, train_until=self.train_until,
            backtest_months=self.backtest_months, month_tolerance=self.month_tolerance,
            min_fold_share=self.min_fold_share,
            validation_fraction=self.validation_fraction, validation_blocks=self.validation_blocks,
            target_auc=self.min_auc, target_precision=self.min_precision, target_recall=self.min_recall,
            recall_margin=self.recall_margin, cutoff=self.cutoff,
            cutoff_window_days=min(self.cutoff_window_days, DEFAULT_WINDOW_DAYS),
            calibration=self.calibration, half_life_days=self.half_life_days, seeds=self.seeds,
        )

    def gate_settings(self) -> dict:
        """Stored with the trained model: the gate judges it by the settings it was trained with."""
        return {"targets": {"auc": self.min_auc, "precision": self.min_precision, "recall": self.min_recall},
                "champion_margin": self.champion_margin, "month_tolerance": self.month_tolerance}


@asset(
    ins={"lead_features": AssetIn(metadata={"allow_missing_partitions": True})},
    group_name=MODEL_GROUP,
    io_manager_key="json_io_manager",
    required_resource_keys={"mlflow", "model_registry", "lead_home", "outcome_policy"},
    pool="lead_training",
    kinds={"catboost", "mlflow"},
    description="CatBoost judged on monthly backtests of the labelled history, refit on all of it; "
                "a registered version.",
)
def lead_scoring_model(context: AssetExecutionContext, config: TrainingConfig, lead_features: DayChunks) -> dict:
    """The dagster-mlflow resource opens this run's MLflow run; this asset always closes it. Only the
    labelled leads of the configured history window are read (``history_days``)."""
    import mlflow

    from lead_assets.core.release import registry
    from lead_assets.core.model.backtest import compare_with_champion
    from lead_assets.core.model.recipe import sort_labelled
    from lead_assets.core.model.plots import markdown_images, training_plots
    from lead_assets.core.model.training import gate_inputs, labelled_window, train_model

    from lead_assets.core.leads.labels import matured_labels

    model_registry: ModelRegistry = context.resources.model_registry
    lead_home = context.resources.lead_home
    maturity = context.resources.outcome_policy.label_maturity_days
    try:
        labelled = labelled_window(lead_features, config.history_days,
                                   labels=lambda frame: matured_labels(frame, maturity, lead_home.today()))
        if len(labelled) < config.min_labelled_leads:
            raise ValueError(
                f"lead_scoring_model: only {len(labelled)} labelled leads in lead_features "
                f"(need {config.min_labelled_leads}; history_days={config.history_days}); backfill labelled "
                "history first"
            )
        context.log.info(f"training on {len(labelled):,} labelled leads: {config.backtest_months} monthly "
                         "backtests, then the refit on all of them")
        result = train_model(labelled, config.train_config())
        plots = training_plots(result)  # rendered once: MLflow artifacts and the asset page
        version = registry.log_training(result, model_name=model_registry.model_name,
                                        tags={"dagster_run_id": context.run_id}, plots=plots)
        _write_reference_profile(lead_home.resolve(), result, version, labelled)
        champion = model_registry.load_champion()
        champion_metrics = (compare_with_champion(champion[0], sort_labelled(labelled), result.holdout)
                            if champion else None)
        run_id = mlflow.active_run().info.run_id if mlflow.active_run() else None
        mlflow.end_run("FINISHED")
    except BaseException:
        if mlflow.active_run():
            mlflow.end_run("FAILED")
        raise
    judged = gate_inputs(result)
    metrics = judged["metrics"]
    info = {
        "model_name": model_registry.model_name,
        "version": version,
        "mlflow_run_id": run_id,
        "judged_on": result.judged_on,
        "metrics": metrics,
        "backtest_months": judged["backtest_months"],
        "gate": config.gate_settings(),
        "champion_version": champion[1] if champion else None,
        "champion_metrics": champion_metrics,
        "trained_at": clock.now().isoformat(timespec="seconds"),
    }
    verdict = promotion_verdict(info)
    context.add_output_metadata({
        "model_version": version,
        "mlflow_run_id": run_id or "",
        "judged_on": result.judged_on,
        "auc": metrics.get("auc"),
        "precision": metrics.get("precision"),
        "recall": metrics.get("recall"),
        "flag_share": metrics.get("flag_share"),
        "threshold": metrics.get("threshold_fixed"),
        "gate": MetadataValue.md(verdict.table.round(3).to_markdown(index=False)),
        "backtest_months": MetadataValue.md(result.backtest.markdown()),
        "metrics": MetadataValue.md(pd.Series(metrics).rename("value").to_frame().to_markdown()),
        "model_card": MetadataValue.md(result.card_markdown),
        "plots": MetadataValue.md(markdown_images(plots)),
        "champion_on_same_leads": MetadataValue.json(champion_metrics or {}),
    })
    return info


def _write_reference_profile(home, result, version: str, labelled: pd.DataFrame) -> None:
    """How this version's recipe scored leads it had not seen (the judged leads, at their cut-offs):
    what monitoring compares each scored day with; and what it was trained on (the last lead day
    and the ledger position), which realised performance and the retrain trigger count from."""
    import json

    from lead_assets.core.inbox import ledger

    from lead_assets.core.scoring import drift

    from lead_assets.core.store import warehouse
    from lead_assets.core.store.home import profile_path
    from lead_assets.core.scoring.batch import assign_buckets, scores

    judged = result.holdout
    probability = judged["probability"].to_numpy()
    scored = pd.DataFrame({
        "probability": probability,
        "score": scores(probability),
        "bucket": assign_buckets(probability, judged["cutoff"].to_numpy()),
        "unseen_levels": result.model.unseen_levels(judged).to_numpy(),
    })
    records, _ = ledger.read_index(home)
    reference = {"version": str(version), "threshold": result.model.threshold,
                 "profile": drift.profile(scored, result.model.threshold, drift.others_share(judged)),
                 "trained_until": labelled[CREATED_DATE].max().strftime("%Y-%m-%d"),
                 "ledger_seq": max((r.seq for r in records), default=0)}
    warehouse.atomic_write_bytes(profile_path(home, str(version)), json.dumps(reference, indent=1).encode())


@asset_check(asset=lead_scoring_model, blocking=True, description=(
    "Promotion gate: pooled AUC, precision and recall of the backtest months that count (their model saw at "
    "least min_fold_share of the window) meet the targets; a challenger also holds every such month within the "
    "tolerance and is not worse than the champion on the leads the champion never saw by more than the margin. "
    "Uses the settings the model was trained with."))
def promotion_gate(lead_scoring_model: dict) -> AssetCheckResult:
    verdict = promotion_verdict(lead_scoring_model)
    return AssetCheckResult(
        passed=bool(verdict.passed),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "version": lead_scoring_model["version"],
            "reasons": MetadataValue.md("\n".join(f"- {r}" for r in verdict.reasons) or "all targets met"),
            "checks": MetadataValue.md(verdict.table.round(3).to_markdown(index=False)),
            "champion_version": str(lead_scoring_model.get("champion_version")),
        },
    )


@asset(
    group_name=MODEL_GROUP,
    io_manager_key="json_io_manager",
    kinds={"mlflow"},
    automation_condition=PROMOTE_WHEN_GATE_PASSES,
    description="The MLflow alias 'champion' moved to a model version that passed the gate; follows a "
                "passed lead_scoring_model on its own (champion_promotion sensor).",
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
            "promoted_at": clock.now().isoformat(timespec="seconds")}
