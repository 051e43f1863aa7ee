"""The lead_assets code location: assets, checks, sensors and resources, wired together."""

from dagster import Definitions

from lead_assets.core.home import LeadHome
from lead_assets.defs.checks import all_checks
from lead_assets.defs.cleaning import cleaned_leads
from lead_assets.defs.features import lead_features
from lead_assets.defs.freshness import rescore_on_promotion, retrain_job, retrain_schedule
from lead_assets.defs.ingest import inbox_sensor, raw_leads
from lead_assets.defs.insights import lead_insights
from lead_assets.defs.model import ModelRegistry, champion_model, lead_scoring_model, promotion_gate
from lead_assets.defs.resources import JsonIOManagerFactory, LeadHomeResource, WarehouseIOManager
from lead_assets.defs.scoring import scored_leads
from lead_assets.defs.tracking import mlflow_tracking

EXPERIMENT = "lead_scoring"


def build_definitions() -> Definitions:
    """Resolve the environment once, at load time, so every run of this location agrees."""
    home = LeadHome.resolve()
    return Definitions(
        assets=[raw_leads, cleaned_leads, lead_features, lead_scoring_model, champion_model, scored_leads,
                lead_insights],
        asset_checks=[promotion_gate, *all_checks],
        sensors=[inbox_sensor, rescore_on_promotion],
        schedules=[retrain_schedule],
        jobs=[retrain_job],
        resources={
            "lead_home": LeadHomeResource(),
            "io_manager": WarehouseIOManager(),
            "json_io_manager": JsonIOManagerFactory(),
            "model_registry": ModelRegistry(),
            "mlflow": mlflow_tracking.configured({
                "experiment_name": EXPERIMENT,
                "mlflow_tracking_uri": home.mlflow_tracking_uri,
            }),
        },
    )


defs = build_definitions()
