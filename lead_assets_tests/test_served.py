"""A served smoke test: `dagster dev` on 127.0.0.1 and a free port lists the assets, checks and sensor."""

import os
import socket
from pathlib import Path

import pytest

from lead_assets_tests.served import dev_server

pytestmark = pytest.mark.slow(seconds=20)  # started first by make test (conftest.py)

QUERY = """{
  assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { name sensors { name sensorState { status } } } } }
}"""


@pytest.fixture
def served(lead_home, tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path / "dagster"))
    os.makedirs(env["DAGSTER_HOME"])
    Path(env["DAGSTER_HOME"], "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dev_server(env, query=QUERY) as (_, port, data):
        yield port, data


def test_ui_lists_assets_checks_and_sensor(served):
    port, data = served
    assets = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
    assert {"raw_leads", "cleaned_leads", "lead_features", "lead_scoring_model", "scored_leads"} <= assets
    checks = {c["name"] for n in data["assetNodes"] for c in (n["assetChecksOrError"].get("checks") or [])}
    assert "promotion_gate" in checks
    (repo,) = data["repositoriesOrError"]["nodes"]
    sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    assert sensors.get("inbox_sensor") == "RUNNING"
    with socket.socket() as sock:  # bound to loopback only
        assert sock.connect_ex(("127.0.0.1", port)) == 0
