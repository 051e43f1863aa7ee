"""MLflow logging and the registry on a throwaway sqlite store: runs, versions, champion, rollback."""

import json
import logging
import os

import numpy as np
import pytest

from lead_assets.core.model.recipe import TrainConfig
from lead_assets.core.model.training import train_model
from lead_assets_tests.factories import make_features

pytestmark = pytest.mark.slow(seconds=20)  # started first by make test (conftest.py)

NAME = "lead_scoring_test"


@pytest.fixture(scope="module")
def result():
    return train_model(make_features(n=1200, seed=8),
                       TrainConfig(iterations=20, min_iterations=10, early_stopping_rounds=10, thread_count=2))


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    mlflow = pytest.importorskip("mlflow")
    tmp_path = tmp_path_factory.mktemp("mlflow")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("lead_scoring_tests", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    yield mlflow
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_log_training_registers_versions_and_champion_moves(tracking, result):
    from lead_assets.core.release import registry

    mlflow = tracking
    client = mlflow.MlflowClient()
    assert registry.load_champion(NAME) is None
    assert registry.champion_version(NAME) is None

    first = registry.log_training(result, model_name=NAME, run_name="first", tags={"purpose": "test"})
    assert first == "1"
    assert mlflow.active_run() is None  # it started its own run and ended it
    run = client.get_run(client.get_model_version(NAME, first).run_id)
    assert run.info.status == "FINISHED" and run.data.tags["purpose"] == "test"
    for key in ("auc", "precision", "recall", "ece", "brier", "threshold", "lift_top_10pct", "n_test"):
        assert run.data.metrics[key] == pytest.approx(result.metrics[key])
    assert run.data.params["iterations_chosen"] == str(result.params["iterations_chosen"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model_card.md", "plots", "tables"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/roc.png", "plots/precision_recall.png", "plots/calibration.png", "plots/cumulative_gains.png",
            "plots/feature_importance.png"} == plots

    with mlflow.start_run(run_name="owned by the caller") as outer:
        second = registry.log_training(result, model_name=NAME)
        assert mlflow.active_run().info.run_id == outer.info.run_id  # left open for its owner
    assert second == "2"
    assert client.get_model_version(NAME, second).run_id == outer.info.run_id

    assert registry.set_champion(NAME, first) is None
    assert registry.set_champion(NAME, second) == first
    assert registry.champion_version(NAME) == second
    assert registry.champion_version(NAME, registry.PREVIOUS) == first

    model, version = registry.load_champion(NAME)
    assert version == second
    np.testing.assert_allclose(model.predict_proba(result.holdout), result.model.predict_proba(result.holdout))
    assert model.threshold == result.model.threshold

    described = registry.describe(NAME)
    assert described["champion_version"] == second and described["previous_champion_version"] == first
    assert described["champion_metrics"]["auc"] == pytest.approx(result.metrics["auc"])

    assert registry.rollback(NAME) == first
    assert registry.champion_version(NAME) == first
    assert registry.champion_version(NAME, registry.PREVIOUS) is None
    assert client.get_model_version(NAME, second).tags.get("rolled_back_at")
    with pytest.raises(registry.NoChampionError, match="no previous champion.*champion is version 1"):
        registry.rollback(NAME)


def test_rollback_walks_back_through_the_history(tracking, result):
    from lead_assets.core.release import registry

    name = f"{NAME}_history"
    versions = [registry.log_training(result, model_name=name) for _ in range(3)]
    for version in versions:
        registry.set_champion(name, version)
    assert registry.rollback(name) == versions[1]
    assert registry.champion_version(name, registry.PREVIOUS) == versions[0]
    assert registry.rollback(name) == versions[0]
    with pytest.raises(ValueError, match="no previous champion"):
        registry.rollback(name)


def test_pyfunc_scores_raw_leads_like_the_model(tracking, result):
    from lead_assets.core.release import registry
    from lead_assets.core.scoring import online
    from lead_assets.core.leads.cleaning import clean_leads
    from lead_assets.core.leads.features import build_features

    name = f"{NAME}_pyfunc"
    version = registry.log_training(result, model_name=name)
    loaded = tracking.pyfunc.load_model(f"models:/{name}/{version}", model_config={"model_version": version})
    signature = loaded.metadata.signature
    inputs = {spec.name: spec for spec in signature.inputs.inputs}
    assert {"lead_id", "created_date", "referred_lead", "syllabus"} <= set(inputs)
    # every field uncast and optional for MLflow: the batch's row rules judge the JSON values (issue #20)
    assert {str(spec.type) for spec in inputs.values()} == {"Any"} and not any(s.required for s in inputs.values())
    assert {p.name for p in signature.params.params} == {"cutoff", "hot_min_probability", "warm_min_probability"}

    example = loaded.input_example
    answers = loaded.predict(example)
    features = build_features(clean_leads(online.type_leads(example)))
    np.testing.assert_allclose([a["probability"] for a in answers], result.model.predict_proba(features), atol=1e-9)
    assert [a["lead_id"] for a in answers][1:] == example["lead_id"].tolist()[1:]
    assert answers[0]["lead_id"] == features["lead_id"].iloc[0] != "None"  # derived as ingest derives it
    assert {a["model_version"] for a in answers} == {version} and {a["model_name"] for a in answers} == {name}
    assert all(len(a["reason_details"]) == 3 and "fallback" in a["cutoff_rule"] for a in answers)
    given = loaded.predict(example, params={"cutoff": 0.0})
    assert {a["bucket"] for a in given} != {"junk"} and {a["cutoff"] for a in given} == {0.0}
    with pytest.raises(tracking.exceptions.MlflowException, match="record 0: created_date: unparseable_date"):
        loaded.predict(example.assign(created_date="2021-02-30"))


def test_registered_model_loads_where_the_repository_is_not_importable(tracking, result, tmp_path):
    """The model's own code copy is what a model server imports: no repository, no PYTHONPATH."""
    import subprocess
    import sys
    import sysconfig

    from lead_assets.core.release import registry

    name = f"{NAME}_portable"
    version = registry.log_training(result, model_name=name)
    local = tracking.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp_path / "model"))
    expected = [a["probability"] for a in tracking.pyfunc.load_model(local).predict(
        tracking.pyfunc.load_model(local).input_example)]
    script = f"""
import json, sys
sys.path.append({sysconfig.get_paths()["purelib"]!r})  # site-packages without its .pth files: no editable install
try:
    import lead_assets
    raise SystemExit("lead_assets is importable before the model is loaded: " + lead_assets.__file__)
except ImportError:
    pass
import mlflow.pyfunc
model = mlflow.pyfunc.load_model({local!r})
answers = model.predict(model.input_example)
import lead_assets
print(json.dumps({{"code": lead_assets.__file__, "dagster": "dagster" in sys.modules,
                  "probability": [a["probability"] for a in answers]}}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["code"].startswith(str(tmp_path / "model")) and not out["dagster"]
    np.testing.assert_allclose(out["probability"], expected, atol=1e-12)
