"""A served smoke test: `dagster dev` on 127.0.0.1 and a free port lists the assets, checks and sensor."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUERY = """{
  assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { name sensors { name sensorState { status } } } } }
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


@pytest.fixture
def served(lead_home, tmp_path):
    port = free_port()
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path / "dagster"))
    os.makedirs(env["DAGSTER_HOME"])
    Path(env["DAGSTER_HOME"], "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster = Path(sys.executable).with_name("dagster")
    process = subprocess.Popen(
        [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                data = graphql(port, QUERY)
                if data["assetNodes"]:
                    break
            except Exception:
                if process.poll() is not None:
                    pytest.fail(f"dagster dev exited with {process.returncode}")
                if time.time() > deadline:
                    pytest.fail("dagster dev did not answer GraphQL within 180 s")
            time.sleep(1)
        yield port, data
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


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
