"""The production shape on one machine: code server, daemon and webserver on PostgreSQL.

`dagster code-server start` serves deploy/definitions.py over gRPC; `dagster-daemon run` and
`dagster-webserver` load only deploy/workspace.yaml (a grpc_server entry); all three use
deploy/dagster.yaml from DAGSTER_HOME with its PostgreSQL settings from the environment.
A file dropped into the inbox is landed by the inbox sensor and scored by the champion that
the session trained through the same instance and MLflow server. The daemon is then stopped, a
second file dropped while it is down, and the daemon started again: the second file is scored,
the first one is not run again, and everything is in PostgreSQL.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pandas as pd
import pytest

from lead_assets_tests.deploy.conftest import utc_today
from lead_assets_tests.deploy.harness import BIN, DEPLOY, Process, free_port, graphql, port_open, wait_for

pytestmark = [pytest.mark.deploy, pytest.mark.slow(seconds=70)]  # started first by make test (conftest.py)

WAIT_SCORED = 180
ASSETS_QUERY = """{
  assetNodes { assetKey { path } }
  repositoriesOrError { ... on RepositoryConnection { nodes { name sensors { name sensorState { status } } } } }
}"""
DAEMONS_QUERY = """{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required lastHeartbeatTime } } } }"""
RUNS_QUERY = """{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"""


def daemons_healthy(port: int, since: float = 0.0) -> bool:
    statuses = graphql(port, DAEMONS_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    wanted = {s["daemonType"]: s for s in statuses if s["daemonType"] in ("SENSOR", "QUEUED_RUN_COORDINATOR")}
    return len(wanted) == 2 and all(s["healthy"] and (s["lastHeartbeatTime"] or 0) > since for s in wanted.values())


def drop_file(inbox, day, seed: int, prefix: str, leads: int = 20) -> pd.DataFrame:
    """Unlabelled new leads for one day, written atomically into the inbox (as a user's upload)."""
    from lead_assets.core.leads.synth import generate_leads, write_daily_files

    frame = generate_leads(day, 1, leads, seed=seed, labelled=False)
    (path,) = write_daily_files(frame, inbox, prefix=prefix)
    return frame


def scored(lead_home, day: str) -> pd.DataFrame | None:
    path = lead_home / "warehouse" / "scored_leads" / f"{day}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def test_inbox_file_scored_through_daemon_code_server_and_webserver(trained, deployment, tmp_path):
    from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

    code_port, web_port = free_port(), free_port()
    # In-process runs: on CI's two cores every multiprocess step would pay ~5 s of imports, and
    # what this test is about is the servers, the queue and PostgreSQL (the Celery test covers
    # steps in other processes).
    pg = deployment.services.pg  # the CRM table lives in the deployment's PostgreSQL database too
    crm_url = f"postgresql+psycopg2://{pg['user']}:{pg['password']}@{pg['host']}:{pg['port']}/{deployment.database}"
    served = deployment.with_env(LEAD_ASSETS_CODE_SERVER_HOST="127.0.0.1",
                                 LEAD_ASSETS_CODE_SERVER_PORT=str(code_port), LEAD_ASSETS_EXECUTOR="in_process",
                                 LEAD_ASSETS_CRM_DATABASE_URL=crm_url, LEAD_ASSETS_DAILY_CAPACITY="5")
    env = served.env
    logs = tmp_path / "logs"
    inbox = deployment.lead_home / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)

    code_server = Process("code-server", [BIN / "dagster", "code-server", "start", "-h", "127.0.0.1", "-p",
                                          code_port, "-f", DEPLOY / "definitions.py", "--location-name",
                                          "lead_assets"], env, logs)
    daemon_args = [BIN / "dagster-daemon", "run", "-w", DEPLOY / "workspace.yaml"]
    daemon = Process("daemon", daemon_args, env, logs)
    webserver = Process("webserver", [BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", web_port, "-w",
                                      DEPLOY / "workspace.yaml"], env, logs)
    processes = [code_server, daemon, webserver]
    timings = {}
    try:
        started = time.monotonic()
        code_server.start()
        wait_for("the code server to listen", lambda: port_open(code_port), 120, [code_server])
        daemon.start()
        webserver.start()
        data = wait_for("the webserver to list the assets", lambda: graphql(web_port, ASSETS_QUERY)["assetNodes"]
                        and graphql(web_port, ASSETS_QUERY), 120, processes)
        assets = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
        assert {"raw_leads", "cleaned_leads", "lead_features", "scored_leads", "champion_model"} <= assets
        (repo,) = data["repositoriesOrError"]["nodes"]
        assert {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}["inbox_sensor"] == "RUNNING"
        wait_for("the daemon's sensor and run-queue threads", lambda: daemons_healthy(web_port), 120, processes)
        timings["servers up"] = time.monotonic() - started

        # 1. a file dropped while everything runs is landed, run and scored by the champion
        day1 = (utc_today() - timedelta(days=3)).isoformat()
        first = drop_file(inbox, day1, seed=101, prefix="drop1")
        started = time.monotonic()
        scores1 = wait_for(f"the leads of {day1} in scored_leads", lambda: scored(deployment.lead_home, day1),
                           WAIT_SCORED, processes, interval=2)
        timings["file 1 scored"] = time.monotonic() - started
        assert len(scores1) == len(first)
        assert set(scores1["model_version"].astype(str)) == {trained.version}

        # 2. the daemon goes down; a file arrives meanwhile; the daemon comes back
        restarted_at = time.time()
        daemon.stop(signal.SIGTERM, timeout=60)
        day2 = (utc_today() - timedelta(days=2)).isoformat()
        second = drop_file(inbox, day2, seed=202, prefix="drop2")
        time.sleep(6)  # longer than the sensor interval: nothing may happen without the daemon
        assert len(list((deployment.lead_home / "ledger").glob("*.json"))) == 1, "a file was landed without daemon"
        assert (inbox / f"drop2_{day2}.csv").exists()
        daemon = Process("daemon", daemon_args, env, logs)
        processes[1] = daemon
        daemon.start()
        started = time.monotonic()
        wait_for("the restarted daemon's heartbeats", lambda: daemons_healthy(web_port, since=restarted_at), 120,
                 processes)
        scores2 = wait_for(f"the leads of {day2} in scored_leads", lambda: scored(deployment.lead_home, day2),
                           WAIT_SCORED, processes, interval=2)
        timings["file 2 scored after restart"] = time.monotonic() - started
        assert len(scores2) == len(second)
        assert set(scores2["model_version"].astype(str)) == {trained.version}

        # a few more sensor ticks: the first file must not be requested again
        with served.instance() as instance:
            sensor_runs = lambda: instance.get_runs(RunsFilter(tags={"dagster/sensor_name": "inbox_sensor"}))
            wait_for("both inbox runs to finish", lambda: all(r.is_finished for r in sensor_runs()) and sensor_runs(),
                     120, processes)
        time.sleep(12)
        runs = graphql(web_port, RUNS_QUERY)["runsOrError"]["results"]
    finally:
        for process in reversed(processes):
            process.stop()

    # Everything the deployment did is in PostgreSQL, readable by any process with the same config.
    with served.instance() as instance:
        inbox_runs = instance.get_runs(RunsFilter(tags={"dagster/sensor_name": "inbox_sensor"}))
        files = sorted(r.tags.get("lead_assets/files", "") for r in inbox_runs)
        assert files == [f"drop1_{day1}.csv", f"drop2_{day2}.csv"], f"inbox runs: {files}"
        assert all(r.status == DagsterRunStatus.SUCCESS for r in inbox_runs), [(r.run_id, r.status)
                                                                                for r in inbox_runs]
        for run in inbox_runs:
            types = {r.dagster_event.event_type for r in instance.all_logs(run.run_id) if r.dagster_event}
            assert DagsterEventType.RUN_ENQUEUED in types, "the run did not go through the QueuedRunCoordinator"
        state = next(s for s in instance.all_instigator_state() if s.name == "inbox_sensor")
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000)
        assert sum(1 for t in ticks if t.run_ids) == 2, "each file gives exactly one run-requesting tick"
        assert min(t.timestamp for t in ticks) < restarted_at < max(t.timestamp for t in ticks), (
            "ticks from before the restart should still be there")
    assert {r["runId"] for r in runs} >= {r.run_id for r in inbox_runs}, "the webserver lists the inbox runs"

    materialized = deployment.sql(
        "SELECT DISTINCT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
        "AND asset_key = %s", ['["scored_leads"]'])
    assert {day1, day2} <= {row[0] for row in materialized}
    # each scored day was published for the CRM: its rows in PostgreSQL and a file in the outbox
    published = dict(deployment.sql("SELECT lead_day, count(*) FROM lead_scores GROUP BY lead_day"))
    assert published == {day1: len(first), day2: len(second)}, published
    inside = deployment.sql("SELECT lead_day, max(day_rank) FROM lead_scores WHERE in_capacity GROUP BY lead_day")
    assert all(rank <= 5 for _, rank in inside), inside
    for day, frame in ((day1, first), (day2, second)):
        assert len(pd.read_csv(deployment.lead_home / "outbox" / f"{day}.csv")) == len(frame)
    assert not list(deployment.lead_home.rglob("lead_scores.db")), "the CRM table went to SQLite, not PostgreSQL"
    checks = deployment.sql("SELECT check_name, execution_status FROM asset_check_executions")
    assert ("promotion_gate", "SUCCEEDED") in checks, checks
    # every check the code location defines on the inbox pipeline's assets ran in both inbox runs
    from lead_assets.definitions import defs

    pipeline = {"raw_leads", "cleaned_leads", "lead_features", "scored_leads"}
    expected = {k.name for k in defs.resolve_asset_graph().asset_check_keys
                if k.asset_key.to_user_string() in pipeline}
    for run in inbox_runs:
        recorded = {row[0] for row in deployment.sql(
            "SELECT check_name FROM asset_check_executions WHERE run_id = %s", [run.run_id])}
        assert expected <= recorded, f"run {run.run_id}: checks recorded {recorded}, defined {expected}"
    assert deployment.sql("SELECT count(*) FROM runs")[0][0] >= 4  # training runs + the two inbox runs
    assert not list(served.dagster_home.rglob("*.db")), "a SQLite file appeared in DAGSTER_HOME"
    print("\nserved deployment timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + f"; training {trained.seconds:.0f} s")
