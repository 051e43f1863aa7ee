"""The MLflow server as deploy/bin/mlflow-server.sh starts it: nobody unauthenticated registers a model.

A registered version is code that run workers and the scoring service unpickle, so the script
runs MLflow's basic-auth app by default. Here (sqlite stores, a free loopback port): requests
without credentials to create a model, register a version or move ``champion`` get 401; a user
with only the default READ permission gets 403 on moving the alias but can load the champion
(what workers and the scoring service need); the training user registers and promotes through
the project's own registry code. The script refuses to run without auth beyond loopback.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from lead_assets_tests.deploy.harness import DEPLOY, Process, free_port

pytestmark = pytest.mark.slow(seconds=55)  # started first by make test (conftest.py)

ADMIN_PASSWORD = "Adm1n-" + secrets.token_hex(8)
SCRIPT = DEPLOY / "bin" / "mlflow-server.sh"


def _call(url: str, path: str, body: dict | None = None, user: tuple[str, str] | None = None,
          method: str = "POST") -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    request = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                     headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:  # not listening yet
        return 0, str(error)


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LEAD_ASSETS_"))}


@pytest.fixture
def auth_server(tmp_path):
    port = free_port()
    env = dict(_clean_env(), MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"), MLFLOW_SERVER_PORT=str(port),
               MLFLOW_SERVER_WORKERS="1", MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
               MLFLOW_AUTH_DATABASE_URI=f"sqlite:///{tmp_path / 'auth.db'}",
               MLFLOW_AUTH_STATE_DIR=str(tmp_path / "auth"), MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD)
    server = Process("mlflow-auth", ["bash", SCRIPT], env, tmp_path).start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while _call(url, "/health", method="GET")[0] != 200:
            if not server.alive():
                pytest.fail("mlflow-server.sh exited: " + server.log.read_text()[-3000:])
            if time.time() > deadline:
                pytest.fail("the MLflow server did not answer /health in 180 s: " + server.log.read_text()[-3000:])
            time.sleep(1)
        yield url
    finally:
        server.stop()


def test_no_auth_is_refused_beyond_loopback(tmp_path):
    env = dict(_clean_env(), MLFLOW_BACKEND_STORE_URI="sqlite:///x.db", MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path),
               MLFLOW_SERVER_AUTH="none", MLFLOW_SERVER_HOST="0.0.0.0")
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "MLFLOW_SERVER_AUTH=none on 0.0.0.0" in done.stderr
    missing = dict(env, MLFLOW_SERVER_AUTH="basic-auth", MLFLOW_SERVER_HOST="127.0.0.1")
    done = subprocess.run(["bash", str(SCRIPT)], env=missing, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "MLFLOW_FLASK_SERVER_SECRET_KEY" in done.stderr


def test_registering_and_moving_champion_need_a_user_with_edit(auth_server, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    from lead_assets.core.release import registry
    from lead_assets.core.model.recipe import TrainConfig
    from lead_assets.core.model.training import train_model
    from lead_assets_tests.factories import make_features

    url, admin = auth_server, ("admin", ADMIN_PASSWORD)
    trainer, reader = ("trainer", "Tr4iner-" + secrets.token_hex(6)), ("scorer", "Sc0rer-" + secrets.token_hex(6))
    for user, password in (trainer, reader):
        status, text = _call(url, "/api/2.0/mlflow/users/create", {"username": user, "password": password}, admin)
        assert status == 200, text

    # without credentials: nothing about models, not even reading
    assert _call(url, "/api/2.0/mlflow/registered-models/create", {"name": "lead_scoring"})[0] == 401
    assert _call(url, "/api/2.0/mlflow/model-versions/create",
                 {"name": "lead_scoring", "source": "mlflow-artifacts:/x"})[0] == 401
    assert _call(url, "/api/2.0/mlflow/registered-models/alias",
                 {"name": "lead_scoring", "alias": "champion", "version": "1"})[0] == 401

    # the training user: the project's own code registers and promotes (creator of the model: MANAGE)
    mlflow.set_tracking_uri(url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", trainer[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", trainer[1])
    mlflow.set_experiment("lead_scoring_auth")
    result = train_model(make_features(n=1200, seed=8),
                         TrainConfig(iterations=20, min_iterations=10, early_stopping_rounds=10, thread_count=2))
    version = registry.log_training(result, model_name="lead_scoring", plots={})
    assert registry.set_champion("lead_scoring", version) is None
    assert registry.champion_version("lead_scoring") == version

    # a READ-only user (what run workers and the scoring service get): loads the champion,
    # cannot move it
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", reader[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", reader[1])
    model, loaded = registry.load_champion("lead_scoring")
    assert loaded == version and model.threshold == result.model.threshold
    with pytest.raises(MlflowException) as refused:
        mlflow.MlflowClient().set_registered_model_alias("lead_scoring", "champion", version)
    assert refused.value.get_http_status_code() == 403 or "PERMISSION_DENIED" in str(refused.value)
    status, _ = _call(url, "/api/2.0/mlflow/registered-models/alias",
                      {"name": "lead_scoring", "alias": "champion", "version": version}, reader)
    assert status == 403
    status, _ = _call(url, "/api/2.0/mlflow/model-versions/create",
                      {"name": "lead_scoring", "source": "mlflow-artifacts:/x"}, reader)
    assert status == 403
    assert registry.champion_version("lead_scoring") == version
