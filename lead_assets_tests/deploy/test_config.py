"""The deployment's configuration files, checked against Dagster's own schemas (no servers needed)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from lead_assets_tests.deploy.harness import DEPLOY, ROOT

pytestmark = pytest.mark.deploy

ENV_FIELDS = ("hostname", "port", "username", "password", "db_name")


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.mark.parametrize("name", ["dagster.yaml", "k8s/dagster.yaml"])
def test_instance_yaml_is_valid_and_takes_secrets_from_env(name):
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str((DEPLOY / name).parent), config_filename=(DEPLOY / name).name)
    assert config["telemetry"] == {"enabled": False}
    db = config["storage"]["postgres"]["postgres_db"]
    assert {field: db[field] for field in ENV_FIELDS} == {
        "hostname": {"env": "DAGSTER_PG_HOST"}, "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"}, "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"}}
    assert db["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1 would pick psycopg 3 otherwise
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["concurrency"]["runs"]["max_concurrent_runs"] > 0
    # a run whose worker died is failed and re-run once, and the pool slot its step held is freed
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    assert config["run_retries"]["enabled"] and not config["run_retries"]["retry_on_asset_or_op_failure"]
    assert "sqlite" not in (DEPLOY / name).read_text().split("# ")[0]


def test_tag_limits_name_real_tags_and_schedules():
    """The run-queue limits must follow the code: tags the sensors set, the schedule's name."""
    from lead_assets.defs.scoring.freshness import rescoring_request, retrain_schedule
    from lead_assets.defs.inbox.ingest import inbox_run_request
    from lead_assets.core.inbox.ledger import LedgerEntry

    entry = LedgerEntry(file="a.csv", sha256="0" * 64, status="accepted", received_at="x", size_bytes=1,
                        days={"2024-01-01": 1})
    tags = set(inbox_run_request([entry]).tags) | set(rescoring_request(["2024-01-01"], "1", change=1).tags)
    for name in ("dagster.yaml", "k8s/dagster.yaml"):
        limits = load(name)["concurrency"]["runs"]["tag_concurrency_limits"]
        keys = {limit["key"] for limit in limits}
        assert {"lead_assets/files", "lead_assets/reason"} <= keys <= tags | {
            "dagster/backfill", "dagster/schedule_name", "lead_assets/stage"}
        schedule = [limit for limit in limits if limit["key"] == "dagster/schedule_name"]
        assert schedule and schedule[0]["value"] == retrain_schedule.name


def test_k8s_run_launcher_and_executor_config_match_dagster_k8s():
    from dagster._config import validate_config
    from dagster_k8s import K8sRunLauncher, k8s_job_executor

    launcher = load("k8s/dagster.yaml")["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s.launcher", "K8sRunLauncher")
    result = validate_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    assert "lead-assets-env" in launcher["config"]["env_config_maps"]
    assert load("k8s/env.yaml")["metadata"]["name"] == "lead-assets-env"

    execution = load("k8s/executor-run-config.yaml")["execution"]["config"]
    result = validate_config(k8s_job_executor.config_schema.config_type, execution)
    assert result.success, result.errors


def test_helm_values_hold_no_secrets():
    values = load("k8s/values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"][1].endswith("deploy/definitions.py")
    text = (DEPLOY / "k8s" / "values.yaml").read_text()
    assert not re.search(r"(?i)(password|secret_access_key)\s*:\s*\S", text.replace("postgresqlSecretName", ""))


def test_workspace_points_at_a_code_server_from_env(monkeypatch):
    from dagster._core.workspace.config_schema import process_workspace_config

    workspace = load("workspace.yaml")
    monkeypatch.delenv("LEAD_ASSETS_CODE_SERVER_HOST", raising=False)
    assert not process_workspace_config(workspace).success, "a missing variable must be an error"
    monkeypatch.setenv("LEAD_ASSETS_CODE_SERVER_HOST", "code.internal")
    monkeypatch.setenv("LEAD_ASSETS_CODE_SERVER_PORT", "4000")
    processed = process_workspace_config(workspace)
    assert processed.success, processed.errors
    assert processed.value["load_from"][0]["grpc_server"]["port"] == 4000
    (entry,) = workspace["load_from"]
    assert entry["grpc_server"]["host"] == {"env": "LEAD_ASSETS_CODE_SERVER_HOST"}
    assert entry["grpc_server"]["port"] == {"env": "LEAD_ASSETS_CODE_SERVER_PORT"}


def test_executor_is_chosen_by_configuration(monkeypatch):
    import runpy

    monkeypatch.delenv("LEAD_ASSETS_EXECUTOR", raising=False)
    module = runpy.run_path(str(DEPLOY / "definitions.py"))
    executor_from_env = module["executor_from_env"]
    assert executor_from_env({}) is None  # the project's own default
    default = module["build_deployment_definitions"]({}).resolve_implicit_global_asset_job_def().executor_def
    assert default.name == "in_process_or_multiprocess"
    for kind in ("multiprocess", "in_process", "celery", "k8s"):
        assert executor_from_env({"LEAD_ASSETS_EXECUTOR": kind}).name == kind
        deployed = module["build_deployment_definitions"]({"LEAD_ASSETS_EXECUTOR": kind})
        assert deployed.resolve_implicit_global_asset_job_def().executor_def.name == kind
    assert "LEAD_ASSETS_EXECUTOR" not in os.environ, "building the definitions must not set the variable"
    with pytest.raises(ValueError, match="LEAD_ASSETS_EXECUTOR"):
        executor_from_env({"LEAD_ASSETS_EXECUTOR": "threads"})
    # workers and runs read the same Celery settings
    assert module["celery_config"]() == load("celery.yaml")["execution"]["config"]
    assert module["celery_config"]()["broker"] == {"env": "DAGSTER_CELERY_BROKER_URL"}
    # the deployment adds an executor and nothing else
    from lead_assets.definitions import defs

    deployed = module["build_deployment_definitions"]({"LEAD_ASSETS_EXECUTOR": "celery"})
    assert {k.to_user_string() for k in deployed.resolve_asset_graph().get_all_asset_keys()} == {
        k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}


def test_scripts_parse():
    for script in ("ci/services.sh", "bin/mlflow-server.sh", "bin/init-instance.sh"):
        subprocess.run(["bash", "-n", str(DEPLOY / script)], check=True)
    usage = subprocess.run(["bash", str(DEPLOY / "ci" / "services.sh")], capture_output=True, text=True)
    assert usage.returncode == 2 and "start|stop" in usage.stderr


def test_readme_names_only_files_that_exist():
    readme = (DEPLOY / "README.md").read_text()
    paths = set(re.findall(r"(?<![\w/])deploy/[\w./-]+\w", readme))
    assert {"deploy/dagster.yaml", "deploy/ci/services.sh", "deploy/definitions.py", "deploy/workspace.yaml",
            "deploy/celery.yaml", "deploy/k8s/values.yaml"} <= paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"deploy/README.md names files that do not exist: {missing}"
