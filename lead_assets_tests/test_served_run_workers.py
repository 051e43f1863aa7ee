"""Served with `make dev`'s own settings (`lead-assets init`'s instance, the pre-warmed launcher):
a run worker killed with `kill -9` while its `raw_leads` step holds the `lead_ingest` slot is
failed by run monitoring, its slot is freed, the run is retried, the next file runs, and every row
of both files is in `raw_leads` once and scored; Ctrl-C stops everything within 15 s, a run worker
in the middle of its run included (it waits for a pool slot the test holds); the next `make dev`
re-runs that interrupted run, and a SIGTERM to `make` stops everything within 15 s too.
"""

import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.storage.dagster_run import RunsFilter

from lead_assets.core.leads import synth

from lead_assets.core.store import warehouse
from lead_assets.launcher import PID_TAG
from lead_assets_tests.served import make_dev, started_under, train_champion, wait_for

pytestmark = pytest.mark.slow(seconds=130)  # started first by make test (conftest.py)

STOP_SECONDS = 15


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _run_workers(root) -> list[int]:
    """Children of the pre-warmed launcher process: one per run in progress."""
    launcher = {pid for pid, command in started_under(root).items() if " -m lead_assets.launcher " in command}
    return [pid for pid in launcher if _parent(pid) in launcher]


def _drop(home, name: str, frame: pd.DataFrame) -> None:
    staging = Path(str(home.root)) / "staging"
    staging.mkdir(exist_ok=True)
    frame.to_csv(staging / name, index=False)
    os.replace(staging / name, Path(str(home.inbox)) / name)


def _stopped_within(root, process, seconds: float, running=None) -> float:
    """Seconds until no process started under ``root`` is left (fails after ``seconds``)."""
    began = time.monotonic()
    gone = {}
    while time.monotonic() - began < seconds:
        left = started_under(root)
        for pid in set(running or ()) - set(left) - set(gone):
            gone[pid] = time.monotonic() - began
        if process.poll() is not None and not left:
            for pid, after in sorted(gone.items(), key=lambda item: item[1]):
                print(f"  {after:5.1f} s  {running[pid][:110]}")
            return time.monotonic() - began
        time.sleep(0.2)
    left = started_under(root)
    pytest.fail(f"{len(left)} process(es) still running {seconds} s after the signal: "
                + "; ".join(f"{pid} {command[:90]}" for pid, command in left.items()))


def _instance(root) -> DagsterInstance:
    return DagsterInstance.from_config(str(Path(root) / "dagster"))


def test_a_killed_run_worker_is_failed_its_slot_freed_and_its_files_retried(lead_home, tmp_path):
    from lead_assets.demo import ensure_dagster_home

    root = Path(str(lead_home.root))
    os.environ["DAGSTER_HOME"] = str(root / "dagster")  # train in the instance make dev will use
    ensure_dagster_home(lead_home)
    train_champion(lead_home)
    del os.environ["DAGSTER_HOME"]
    first = synth.generate_leads("2021-08-20", 2, 3000, seed=41, labelled=False)
    second = synth.generate_leads("2021-08-27", 2, 300, seed=42, labelled=False)
    timings = {}
    with make_dev(root, tmp_path / "make-dev.log") as (process, port), _instance(root) as instance:
        storage = instance.event_log_storage

        def holder():
            return {slot.run_id for slot in storage.get_concurrency_info("lead_ingest").claimed_slots}

        def history_requested():  # the inbox sensor's first tick requests the files train_champion landed
            return [r for r in instance.get_runs() if r.tags.get("lead_assets/files", "").startswith("history_")]

        wait_for("the first inbox run", history_requested, process, 300)  # first.csv gets a run of its own
        _drop(lead_home, "first.csv", first)

        def first_holding():
            held = [instance.get_run_by_id(run_id) for run_id in holder()]
            return [r.run_id for r in held if r and r.tags.get("lead_assets/files") == "first.csv"]

        (run_id,) = wait_for("first.csv's raw_leads to hold the lead_ingest slot", first_holding, process, 240,
                             every=0.02)
        worker = int(instance.get_run_by_id(run_id).tags[PID_TAG])
        os.kill(worker, signal.SIGKILL)  # what the OOM killer does
        killed = time.monotonic()
        assert run_id in holder() and instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED

        wait_for("run monitoring to fail the run", lambda: instance.get_run_by_id(run_id).status
                 == DagsterRunStatus.FAILURE, process, 120, every=0.5)
        timings["failed"] = time.monotonic() - killed
        print(f"run {run_id} failed {timings['failed']:.1f} s after the kill")
        wait_for("its lead_ingest slot to be freed", lambda: run_id not in holder(), process, 120, every=0.5)
        timings["slot freed"] = time.monotonic() - killed
        failure = "\n".join(e.message or "" for e in instance.all_logs(run_id))
        assert f"the run worker (pid {worker}) was killed by signal 9 SIGKILL" in failure

        def retry():
            runs = instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run_id}))
            return runs[0] if runs and runs[0].is_finished else None

        retried = wait_for("the retry to finish", retry, process, 240)
        timings["retry finished"] = time.monotonic() - killed
        assert retried.status == DagsterRunStatus.SUCCESS, retried.status

        _drop(lead_home, "second.csv", second)
        days = [d.strftime("%Y-%m-%d") for d in pd.date_range("2021-08-20", "2021-08-28")]

        def scored():
            frame = warehouse.read_partitions(lead_home.warehouse, "scored_leads", days)
            return len(frame) == len(first) + len(second)

        wait_for("both files to be scored", scored, process, 240)
        timings["next file scored"] = time.monotonic() - killed

        raw = warehouse.read_partitions(lead_home.warehouse, "raw_leads", days)
        scores = warehouse.read_partitions(lead_home.warehouse, "scored_leads", days)
        for name, frame in (("first.csv", first), ("second.csv", second)):
            mine = raw[raw["source_file"] == name]
            assert len(mine) == len(frame) and mine["lead_id"].is_unique, name
            assert set(mine["lead_id"]) <= set(scores["lead_id"]), name
        assert raw["lead_id"].is_unique and scores["lead_id"].is_unique
        assert not warehouse.read_partitions(lead_home.warehouse, "rejected_leads", days).shape[0]
        runs = wait_for("every run to finish", lambda: (lambda runs: all(r.is_finished for r in runs) and runs)(
            instance.get_runs()), process, 120)
        assert {r.status for r in runs if r.run_id != run_id} == {DagsterRunStatus.SUCCESS}, [
            (r.run_id, r.status, r.tags.get("lead_assets/files")) for r in runs]

        # Ctrl-C stops everything, a run worker included: it waits in its run for the lead_scoring slot
        # the test holds (the queue does not hold back a run whose first step can start).
        storage.initialize_concurrency_limit_to_default("lead_scoring")
        assert storage.claim_concurrency_slot("lead_scoring", "held-by-the-test", "hold").is_claimed
        _drop(lead_home, "third.csv", synth.generate_leads("2021-08-30", 2, 100, seed=43, labelled=False))

        def waiting_to_score():
            pending = storage.get_concurrency_info("lead_scoring").pending_steps
            return _run_workers(root) if any(p.run_id != "held-by-the-test" for p in pending) else None

        wait_for("the third file's run to wait for the lead_scoring slot", waiting_to_score, process, 180, 0.2)
        running = started_under(root)
        roles = {role: [pid for pid, command in running.items() if marker in command] for role, marker in (
            ("webserver", "dagster_webserver"), ("daemon", "dagster._daemon"), ("code server", "dagster api grpc"),
            ("pre-warmed launcher and run worker", " -m lead_assets.launcher "))}
        assert all(roles.values()) and len(roles["pre-warmed launcher and run worker"]) >= 2, roles
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        stopped = time.monotonic()
        timings["stopped after Ctrl-C"] = _stopped_within(root, process, STOP_SECONDS, running)
        storage.free_concurrency_slots_for_run("held-by-the-test")

    # The next `make dev` re-runs the interrupted run (nothing dropped is lost), and a SIGTERM to
    # make (a supervisor, `kill`) stops everything too: make passes it to the devserver, which stops
    # `dg dev` as Ctrl-C does (on main the shell between them died alone and everything ran on).
    third_days = ["2021-08-30", "2021-08-31"]
    with make_dev(root, tmp_path / "make-dev-again.log") as (process, port), _instance(root) as instance:
        wait_for("the interrupted third.csv to be scored after the restart", lambda: len(
            warehouse.read_partitions(lead_home.warehouse, "scored_leads", third_days)) == 200, process, 240)
        timings["third file scored after the restart"] = time.monotonic() - stopped
        third = [r for r in instance.get_runs() if r.tags.get("lead_assets/files") == "third.csv"]
        assert any(r.tags.get("dagster/parent_run_id") for r in third), [(r.run_id, r.status) for r in third]
        running = started_under(root)
        assert any(" -m lead_assets.launcher " in command for command in running.values())  # the pre-warmed one
        os.kill(process.pid, signal.SIGTERM)
        timings["stopped after SIGTERM"] = _stopped_within(root, process, STOP_SECONDS, running)
    print("after kill -9 of the run worker: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
