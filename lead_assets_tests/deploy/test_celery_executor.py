"""Scale-out for real: partition-range runs of the project's assets on two dagster-celery workers.

Redis (Debian's redis-server) is the broker and result backend, the production instance
(deploy/dagster.yaml on PostgreSQL) holds runs and events, and the runs come from the production
code location (deploy/definitions.py) with LEAD_ASSETS_EXECUTOR=celery. Every step must run in
a Celery worker and both workers must take part.

Not asserted: that the `lead_ingest` pool (one slot) keeps the two runs' raw_leads steps apart.
The celery executor does claim pool slots, but with dagster-postgres 0.29.27 two runs claiming
the last slot in the same instant can both get it (the slot row is selected FOR UPDATE on an
autocommit connection, then updated without re-checking it is free); seen in about one of five
runs of this test. See deploy/README.md, section 6.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import date, timedelta

import pytest

from lead_assets_tests.deploy.harness import BIN, DEPLOY, Process, make_deployment, tail, wait_for
from lead_assets_tests.factories import raw_leads

pytestmark = [pytest.mark.deploy, pytest.mark.slow(seconds=60)]  # started first by make test (conftest.py)

STEPS = ("raw_leads", "cleaned_leads", "lead_features")
FIRST = date(2024, 3, 1)
DAYS = 8
RANGES = [(FIRST, FIRST + timedelta(days=3)), (FIRST + timedelta(days=4), FIRST + timedelta(days=DAYS - 1))]


def test_partition_ranges_run_on_celery_workers(services, tmp_path):
    from dagster import AssetKey, DagsterEventType, DagsterRunStatus, RunsFilter

    deployment = make_deployment(tmp_path, services, f"dagster_celery_{os.getpid()}").with_env(
        LEAD_ASSETS_EXECUTOR="celery")
    inbox = deployment.lead_home / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for offset in range(DAYS):
        day = (FIRST + timedelta(days=offset)).isoformat()
        raw_leads(25, day, seed=offset).to_csv(inbox / f"leads_{day}.csv", index=False)
    deployment.cli([BIN / "lead-assets", "land"], "landing the test files")

    logs = tmp_path / "logs"
    workers = [
        Process(f"celery-{name}", [BIN / "dagster-celery", "worker", "start", "-A", "dagster_celery.app",
                                   "-y", DEPLOY / "celery.yaml", "--name", name, "--",
                                   "--concurrency", "1", "--without-mingle", "--without-gossip"],
                deployment.env, logs)
        for name in ("w1", "w2")
    ]
    launches: list[subprocess.Popen] = []
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            wait_for(f"{worker.name} to connect to the broker",
                     lambda w=worker: re.search(r"\b" + w.name.split("-")[1] + r"@\S+ ready", tail(w.log, 200)),
                     timeout=90, watch=workers)

        # Two partition ranges launched at once, as two operators (or a backfill and the sensor) would.
        started = time.monotonic()
        for first, last in RANGES:
            launches.append(subprocess.Popen(
                [BIN / "dagster", "asset", "materialize", "-f", DEPLOY / "definitions.py", "--select", ",".join(STEPS),
                 "--partition-range", f"{first.isoformat()}...{last.isoformat()}"],
                cwd=deployment.root, env=deployment.env, stdout=open(logs / f"materialize-{first}.log", "wb"),
                stderr=subprocess.STDOUT, start_new_session=True))
        for launch, (first, _) in zip(launches, RANGES):
            try:
                code = launch.wait(timeout=240)
            except subprocess.TimeoutExpired:
                pytest.fail(f"materializing the range from {first} on Celery took over 240 s\n"
                            + tail(logs / f"materialize-{first}.log") + "\n"
                            + "\n".join(w.describe() for w in workers), pytrace=False)
            assert code == 0, (f"range from {first} failed on Celery\n{tail(logs / f'materialize-{first}.log')}\n"
                               + "\n".join(w.describe() for w in workers))
        elapsed = time.monotonic() - started
    finally:
        for launch in launches:
            if launch.poll() is None:
                os.killpg(launch.pid, 9)
                launch.wait(timeout=10)
        for worker in workers:
            worker.stop()

    with deployment.instance() as instance:
        runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
        assert len(runs) == 2, f"expected one run per range, got {[(r.run_id, r.status) for r in runs]}"
        by_range = {(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]): r
                    for r in runs}
        assert set(by_range) == {(a.isoformat(), b.isoformat()) for a, b in RANGES}

        workers_used: set[str] = set()
        for run in runs:
            records = instance.all_logs(run.run_id)
            orchestrator_pid = next(r.dagster_event.pid for r in records
                                    if r.dagster_event and r.dagster_event.event_type == DagsterEventType.RUN_START)
            on_worker = {}
            for record in records:
                event = record.dagster_event
                if event and event.event_type == DagsterEventType.ENGINE_EVENT and "in celery worker" in (
                        event.message or ""):
                    metadata = event.engine_event_data.metadata
                    on_worker[event.step_key] = str(metadata["Celery worker"].value)
            steps = {r.step_key for r in records
                     if r.dagster_event and r.dagster_event.event_type == DagsterEventType.STEP_START}
            assert set(STEPS) <= steps, f"run {run.run_id} ran {sorted(steps)}"
            # every step (the assets and their data-quality checks) ran in a Celery worker
            assert set(on_worker) == steps, f"run {run.run_id}: steps run by Celery workers: {on_worker}"
            workers_used.update(on_worker.values())
            step_pids = {r.dagster_event.pid for r in records
                         if r.dagster_event and r.dagster_event.event_type == DagsterEventType.STEP_START}
            assert orchestrator_pid not in step_pids, "a step ran in the run's own process, not on a worker"

        assert {w.split("@")[0] for w in workers_used} == {"w1", "w2"}, (
            f"both Celery workers should have run steps; used: {sorted(workers_used)}")

        materialized = {
            record.partition_key
            for key in STEPS
            for record in instance.fetch_materializations(AssetKey(key), limit=1000).records
        }
        expected_days = {(FIRST + timedelta(days=i)).isoformat() for i in range(DAYS)}
        assert materialized == expected_days

    # ...and it is all in PostgreSQL, not in a local SQLite file.
    assert deployment.sql("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")[0][0] == 2
    assert not list(deployment.dagster_home.rglob("*.db")), "a SQLite file appeared in DAGSTER_HOME"
    features = sorted(p.name for p in (deployment.lead_home / "warehouse" / "lead_features").glob("*.parquet"))
    assert features == sorted(f"{d}.parquet" for d in expected_days)
    print(f"\ncelery: 2 ranges x {len(STEPS)} steps on {sorted(workers_used)} in {elapsed:.1f} s")
