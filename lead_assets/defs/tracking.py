"""MLflow tracking through dagster-mlflow, without paying mlflow's import at code-location load.

``dagster_mlflow`` imports mlflow (~1.2 s) at module import; every run start and code server
would pay it. This resource has dagster-mlflow's own config and builds its ``MlFlow`` object
only when a step that needs tracking starts.
"""

from dagster import Field, InitResourceContext, Noneable, Permissive, StringSource, resource


@resource(
    config_schema={
        "experiment_name": Field(StringSource, is_required=True),
        "mlflow_tracking_uri": Field(Noneable(StringSource), default_value=None, is_required=False),
        "parent_run_id": Field(Noneable(str), default_value=None, is_required=False),
        "mlflow_run_id": Field(Noneable(str), default_value=None, is_required=False),
        "env": Field(Permissive(), is_required=False),
        "env_to_tag": Field(Noneable(list), default_value=None, is_required=False),
        "extra_tags": Field(Permissive(), is_required=False),
    },
    description="dagster-mlflow's mlflow_tracking resource, imported when first used.",
)
def mlflow_tracking(context: InitResourceContext):
    """Without a configured URI, the data home's is used (resolved now, not at code load)."""
    from dagster_mlflow.resources import MlFlow

    from lead_assets.core.experiments import use_experiment
    from lead_assets.core.home import LeadHome

    home = LeadHome.resolve(mlflow_tracking_uri=context.resource_config.get("mlflow_tracking_uri"))
    use_experiment(context.resource_config["experiment_name"], home)
    return MlFlow(context)
