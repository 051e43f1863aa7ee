"""The pre-warmed launcher: a forked child per run, restarts on code changes only, reports a broken
import in the run, fails a run whose worker was killed (run monitoring) and frees its pool slot,
and stops its run workers when it is disposed (the daemon stopping)."""

import json
import logging
import os
import signal
import sys
import time
import uuid

import pytest
from dagster import DagsterInstance, DagsterRunStatus, job, op, reconstructable
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher.base import LaunchRunContext, WorkerStatus
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import RunsFilter
from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from lead_assets.launcher import PID_TAG, STARTED_TAG, PrewarmedRunLauncher, code_files, worker_alive

pytestmark = pytest.mark.slow(seconds=50)  # started first by make test (conftest.py)


@op
def where_am_i(context) -> int:
    context.log.info(f"pid {os.getpid()}")
    return os.getpid()


@job
def tiny():
    where_am_i()


@op(pool="lead_ingest")
def slow_ingest(context):
    context.log.info(f"holding the slot in pid {os.getpid()}")
    for _ in range(1200):
        time.sleep(0.1)


@job
def slow():
    slow_ingest()


def wait_for(what, check, timeout=60, every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def wait_finished(instance, run_id, timeout=120):
    wait_for(f"run {run_id} to finish", lambda: instance.get_run_by_id(run_id).is_finished, timeout, 0.2)
    return instance.get_run_by_id(run_id)


def messages(instance, run_id) -> str:
    return "\n".join(e.message or "" for e in instance.all_logs(run_id)) + "\n".join(
        str(e.dagster_event.event_specific_data) for e in instance.all_logs(run_id) if e.dagster_event)


def make_instance(root, preload, extra=""):
    home = root / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_launcher:\n  module: lead_assets.launcher\n  class: PrewarmedRunLauncher\n"
        f"  config:\n    preload: {json.dumps(preload)}\n" + extra)
    return DagsterInstance.from_config(str(home))


def launch(instance, job_def, origin=None):
    run = instance.create_run_for_job(job_def=job_def, job_code_origin=origin or reconstructable(job_def).get_python_origin())
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    return run


def prewarmed_pid(launcher) -> int:
    (prewarmed,) = launcher._workers.values()
    return prewarmed.process.pid


def test_runs_execute_in_children_of_one_prewarmed_process(tmp_path):
    with make_instance(tmp_path, ["dagster"]) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, PrewarmedRunLauncher)
        pids = []
        try:
            for _ in range(2):
                run = launch(instance, tiny)
                finished = wait_finished(instance, run.run_id)
                assert finished.status == DagsterRunStatus.SUCCESS
                pids.append(int(finished.tags[PID_TAG]))
                assert finished.tags[STARTED_TAG].isdigit()  # the pid's start time: a reused pid is not it
            assert pids[0] != pids[1] and prewarmed_pid(launcher) not in pids  # a child per run
            assert f"pid {pids[1]}" in messages(instance, run.run_id)
            wait_for("the worker to exit", lambda: not worker_alive(pids[1], None), timeout=10)
            assert launcher.check_run_worker_health(finished).status == WorkerStatus.SUCCESS  # gone, run done
        finally:
            launcher.dispose()


def test_a_killed_run_worker_fails_its_run_and_frees_its_pool_slot(tmp_path):
    """kill -9 of the forked child (what the OOM killer does): run monitoring's health check fails
    the run instead of leaving it STARTED for ever, naming the signal, and the slot is freed."""
    extra = ("concurrency:\n  pools:\n    default_limit: 1\n"
             "run_monitoring:\n  enabled: true\n  free_slots_after_run_end_seconds: 1\n"
             "run_retries:\n  enabled: true\n  max_retries: 1\n  retry_on_asset_or_op_failure: false\n")
    with make_instance(tmp_path, ["dagster"], extra) as instance:
        launcher = instance.run_launcher
        try:
            assert launcher.supports_check_run_worker_health
            run = launch(instance, slow)
            wait_for("the step to hold its slot", lambda: "holding the slot" in messages(instance, run.run_id))
            pid = int(instance.get_run_by_id(run.run_id).tags[PID_TAG])
            assert launcher.check_run_worker_health(instance.get_run_by_id(run.run_id)).status == WorkerStatus.RUNNING
            assert instance.event_log_storage.get_concurrency_info("lead_ingest").claimed_slots

            os.kill(pid, signal.SIGKILL)
            wait_for("the worker to be reaped", lambda: not worker_alive(pid, None), timeout=10)
            health = wait_for("the exit to be recorded", lambda: (
                lambda h: h if "SIGKILL" in (h.msg or "") else None)(
                    launcher.check_run_worker_health(instance.get_run_by_id(run.run_id))), timeout=10)
            assert health.status == WorkerStatus.FAILED and f"pid {pid}" in health.msg

            (record,) = instance.get_run_records(RunsFilter(run_ids=[run.run_id]))
            assert record.dagster_run.status == DagsterRunStatus.STARTED  # what main left for ever
            # the retry is decided before the run is failed: the retry daemon may read it in between
            assert should_retry(record.dagster_run, instance)
            monitor_started_run(instance, None, record, logging.getLogger("test"))
            failed = instance.get_run_by_id(run.run_id)
            assert failed.status == DagsterRunStatus.FAILURE
            assert "SIGKILL" in messages(instance, run.run_id)

            time.sleep(1.5)
            list(execute_concurrency_slots_iteration(_Workspace(instance), logging.getLogger("test")))
            assert not instance.event_log_storage.get_concurrency_info("lead_ingest").claimed_slots
        finally:
            launcher.dispose()


class _Workspace:
    """What the daemon's concurrency iteration reads of a workspace process context."""

    def __init__(self, instance):
        self.instance = instance


def test_a_run_of_a_dead_pid_or_a_reused_one_is_not_alive():
    assert worker_alive(os.getpid(), None)
    with open(f"/proc/{os.getpid()}/stat") as handle:
        started = handle.read().rsplit(")", 1)[1].split()[19]
    assert worker_alive(os.getpid(), started)
    assert not worker_alive(os.getpid(), str(int(started) + 1))  # same pid, another process
    assert not worker_alive(2 ** 22 + 1, None)  # above pid_max


JOBS = '''
import os
from dagster import job, op

@op
def say_pid(context):
    context.log.info(f"pid {os.getpid()}")

@job
def probe():
    say_pid()
'''


@pytest.fixture
def probe_package(tmp_path, monkeypatch):
    """A code location of its own under tmp_path (the launcher watches the preloaded packages' files)."""
    name = f"launcher_probe_{uuid.uuid4().hex[:8]}"
    package = tmp_path / "code" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(JOBS)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    module = __import__(f"{name}.jobs", fromlist=["probe"])
    origin = JobPythonOrigin("probe", RepositoryPythonOrigin(
        sys.executable, ModuleCodePointer(f"{name}.jobs", "probe", str(tmp_path / "code"))))
    yield package, module.probe, origin
    for key in [k for k in sys.modules if k.startswith(name)]:
        del sys.modules[key]


def test_a_syntax_error_in_the_code_reaches_the_run_logs(tmp_path, probe_package):
    package, probe, origin = probe_package
    (package / "jobs.py").write_text(JOBS + "\ndef broken(:\n    pass\n")
    with make_instance(tmp_path, [f"{package.name}.jobs"]) as instance:
        launcher = instance.run_launcher
        try:
            run = launch(instance, probe, origin)  # main: DagsterLaunchFailedError "the pre-warmed process exited"
            failed = wait_finished(instance, run.run_id)
            assert failed.status == DagsterRunStatus.FAILURE
            logs = messages(instance, run.run_id)
            assert "SyntaxError" in logs and "def broken(:" in logs

            (package / "jobs.py").write_text(JOBS)  # fixed: the next run runs the fixed code
            run = launch(instance, probe, origin)
            assert wait_finished(instance, run.run_id).status == DagsterRunStatus.SUCCESS
        finally:
            launcher.dispose()


def test_only_a_real_change_restarts_the_prewarmed_process(tmp_path, probe_package):
    package, probe, origin = probe_package
    future = time.time() + 86400
    os.utime(package / "jobs.py", (future, future))  # a file copied from a machine whose clock is ahead
    with make_instance(tmp_path, [f"{package.name}.jobs"]) as instance:
        launcher = instance.run_launcher
        try:
            prewarmed = []
            for _ in range(2):
                run = launch(instance, probe, origin)
                assert wait_finished(instance, run.run_id).status == DagsterRunStatus.SUCCESS
                prewarmed.append(prewarmed_pid(launcher))
            assert prewarmed[0] == prewarmed[1]  # main restarted it for every run

            (package / "jobs.py").write_text(JOBS.replace("pid {os", "changed pid {os"))
            run = launch(instance, probe, origin)
            assert wait_finished(instance, run.run_id).status == DagsterRunStatus.SUCCESS
            assert prewarmed_pid(launcher) != prewarmed[0]
            assert "changed pid" in messages(instance, run.run_id)
            wait_for("the retired process to exit", lambda: not worker_alive(prewarmed[0], None), timeout=10)
        finally:
            launcher.dispose()


def test_code_files_see_added_removed_and_edited_files(tmp_path):
    package = tmp_path / "lead_assets"
    package.mkdir()
    (package / "x.py").write_text("X = 1\n")
    before = code_files(str(tmp_path), ("lead_assets.definitions",))
    assert before == code_files(str(tmp_path), ("lead_assets.definitions",))
    (package / "y.py").write_text("Y = 1\n")
    assert code_files(str(tmp_path), ("lead_assets.definitions",)) != before
    (package / "y.py").unlink()
    (package / "x.py").write_text("X = 22\n")
    assert code_files(str(tmp_path), ("lead_assets.definitions",)) != before


@pytest.mark.parametrize("how", ["the launcher disposed", "the pre-warmed process interrupted"])
def test_stopping_the_launcher_stops_its_run_workers(tmp_path, how):
    """The daemon stopping (it disposes the launcher, or dies: the same closed stdin) or make dev's
    supervisor interrupting the pre-warmed process must not leave a run worker running on its own."""
    with make_instance(tmp_path, ["dagster"]) as instance:
        launcher = instance.run_launcher
        run = launch(instance, slow)
        wait_for("the step to start", lambda: "holding the slot" in messages(instance, run.run_id))
        worker = int(instance.get_run_by_id(run.run_id).tags[PID_TAG])
        prewarmed = prewarmed_pid(launcher)
        started = time.monotonic()
        if how == "the launcher disposed":
            launcher.dispose()
            assert time.monotonic() - started < 1  # the daemon does not wait for it
        else:
            os.kill(prewarmed, signal.SIGINT)
        wait_for("the run worker to stop", lambda: not worker_alive(worker, None), timeout=15)
        wait_for("the pre-warmed process to exit", lambda: not worker_alive(prewarmed, None), timeout=5)
        assert time.monotonic() - started < 15
        ended = instance.get_run_by_id(run.run_id)
        assert ended.status == DagsterRunStatus.FAILURE or (  # interrupted, so run retries re-run it
            launcher.check_run_worker_health(ended).status == WorkerStatus.FAILED)
        launcher.dispose()
