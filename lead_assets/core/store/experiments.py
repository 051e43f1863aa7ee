"""MLflow experiments whose artifacts live under the data home, resolved when used.

With a sqlite (or any database) tracking store MLflow puts artifacts of a new experiment in a
folder relative to the current directory; creating experiments here pins their artifact root
to ``$LEAD_ASSETS_HOME/mlflow/artifacts`` (local) unless a tracking server decides it.
"""

from __future__ import annotations

from lead_assets.core.store.home import LeadHome, is_local


def use_experiment(name: str, home: LeadHome | None = None) -> str:
    """Point MLflow at the home's tracking URI and make ``name`` the active experiment."""
    import mlflow

    home = (home or LeadHome.resolve()).ensure()
    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        local_store = not home.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
        location = None
        if local_store:
            folder = home.mlflow_artifacts / name
            location = folder.as_uri() if is_local(folder) else str(folder)
        try:
            experiment_id = mlflow.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            experiment_id = mlflow.get_experiment_by_name(name).experiment_id  # created meanwhile
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
