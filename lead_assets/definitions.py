"""The lead_assets code location: assets, checks, sensors and resources, wired together."""

import os

from dagster import Definitions, in_process_executor, multiprocess_executor

from lead_assets.defs.checks import all_checks
from lead_assets.defs.cleaning import cleaned_leads
from lead_assets.defs.features import lead_features
from lead_assets.defs.freshness import (
    champion_promotion,
    rescore_job,
    rescore_on_champion_change,
    retrain_job,
    retrain_schedule,
)
from lead_assets.defs.ingest import inbox_sensor, raw_leads
from lead_assets.defs.insights import lead_insights
from lead_assets.defs.model import ModelRegistry, champion_model, lead_scoring_model, promotion_gate
from lead_assets.defs.resources import JsonIOManagerFactory, LeadHomeResource, WarehouseIOManager
from lead_assets.defs.scoring import scored_leads
from lead_assets.defs.tracking import mlflow_tracking

EXPERIMENT = "lead_scoring"


EXECUTORS = {"in_process": in_process_executor, "multiprocess": multiprocess_executor}


def build_definitions(executor=None) -> Definitions:
    """Paths and URIs resolve when a run uses them (env vars of the run's process).

    ``executor`` lets a deployment (``deploy/definitions.py``) run the same graph on Celery or
    Kubernetes; by default one process per run: steps share one import of pandas, CatBoost and
    Great Expectations (a step process would pay ~4-6 s each) and parallelism comes from
    concurrent runs.
    """
    if executor is None:
        name = os.environ.get("LEAD_ASSETS_EXECUTOR", "in_process")
        if name not in EXECUTORS:
            raise ValueError(f"LEAD_ASSETS_EXECUTOR={name!r}: use one of {', '.join(EXECUTORS)}")
        executor = EXECUTORS[name]
    return Definitions(
        executor=executor,
        assets=[raw_leads, cleaned_leads, lead_features, lead_scoring_model, champion_model, scored_leads,
                lead_insights],
        asset_checks=[promotion_gate, *all_checks],
        sensors=[inbox_sensor, rescore_on_champion_change, champion_promotion],
        schedules=[retrain_schedule],
        jobs=[retrain_job, rescore_job],
        resources={
            "lead_home": LeadHomeResource(),
            "io_manager": WarehouseIOManager(),
            "json_io_manager": JsonIOManagerFactory(),
            "model_registry": ModelRegistry(),
            "mlflow": mlflow_tracking.configured({"experiment_name": EXPERIMENT}),
        },
    )


defs = build_definitions()
