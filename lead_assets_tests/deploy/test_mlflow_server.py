"""MLflow as a shared tracking server on PostgreSQL: the project needs only MLFLOW_TRACKING_URI.

Training (through the production code location and instance, see conftest.trained) registers a
model version on the server and moves the `champion` alias; the registry rows are in MLflow's
PostgreSQL database, the model files are in the server's artifact store (uploaded through the
server, never written by the client), and a scoring run loads the champion back from the server.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pandas as pd
import pytest

from lead_assets_tests.deploy.harness import tail

pytestmark = [pytest.mark.deploy, pytest.mark.slow(seconds=70)]  # started first by make test (conftest.py)


def artifact_requests(log) -> int:
    """Artifact downloads the server has answered (uvicorn's access log)."""
    return len(re.findall(r"GET /api/2\.0/mlflow-artifacts/artifacts/\S+ HTTP", tail(log, 100000)))


def test_training_registers_champion_on_server_and_scoring_loads_it(trained):
    from dagster import AssetKey
    from mlflow import MlflowClient

    deployment, services = trained.deployment, trained.deployment.services
    client = MlflowClient(tracking_uri=services.mlflow_uri)

    # the registry: a version and the champion alias, on the server, stored in PostgreSQL
    champion = client.get_model_version_by_alias("lead_scoring", "champion")
    assert str(champion.version) == trained.version
    rows = services.mlflow_sql("SELECT name, alias, version FROM registered_model_aliases")
    assert ("lead_scoring", "champion", int(trained.version)) in rows, rows
    (source,) = services.mlflow_sql("SELECT source FROM model_versions WHERE name = %s AND version = %s",
                                    ("lead_scoring", int(trained.version)))[0]
    assert champion.run_id, "the champion's model version names no MLflow run"
    run = client.get_run(champion.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "lead_scoring"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), (
        "artifacts should be proxied by the server, not written by the client: " + run.info.artifact_uri)

    # the model files live in the server's artifact store; the client kept no local MLflow state
    assert list(services.mlflow_artifacts.rglob("MLmodel")), f"no model in {services.mlflow_artifacts} ({source})"
    training_home = deployment.root / "training_home"
    assert not (training_home / "mlflow" / "mlflow.db").exists(), "training used a local SQLite MLflow store"
    assert not list((training_home / "mlflow").rglob("MLmodel")), "model files were written locally"

    # Dagster recorded the promotion (in PostgreSQL) with the same version
    with deployment.instance() as instance:
        promotions = instance.fetch_materializations(AssetKey("champion_model"), limit=10).records
        assert promotions, "no champion_model materialization recorded"
        metadata = promotions[0].asset_materialization.metadata
        assert str(metadata["champion_version"].value) == trained.version

    # scoring loads the champion from the server: downloads show up in the server's access log
    before = artifact_requests(services.state / "mlflow.log")
    last = date.fromisoformat(trained.last_day)
    first = last - timedelta(days=2)
    deployment.materialize(["scored_leads"], "scoring with the champion from the MLflow server",
                           (first.isoformat(), last.isoformat()))
    after = artifact_requests(services.state / "mlflow.log")
    assert after > before, "scoring did not download the model from the MLflow server"
    for offset in range(3):
        day = (first + timedelta(days=offset)).isoformat()
        frame = pd.read_parquet(training_home / "warehouse" / "scored_leads" / f"{day}.parquet")
        assert len(frame) > 0
        assert set(frame["model_version"].astype(str)) == {trained.version}
