"""The pre-warmed launcher runs a run in a forked child, and restarts when the code changes."""

import os
import time

from dagster import DagsterRunStatus, job, op, reconstructable
from dagster._core.launcher.base import LaunchRunContext

from lead_assets.launcher import PID_TAG, PrewarmedRunLauncher, code_changed_since


@op
def where_am_i(context) -> int:
    context.log.info(f"pid {os.getpid()}")
    return os.getpid()


@job
def tiny():
    where_am_i()


def wait_finished(instance, run_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.is_finished:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish: {instance.get_run_by_id(run_id).status}")


def test_runs_execute_in_children_of_one_prewarmed_process(tmp_path):
    from dagster import DagsterInstance

    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nrun_launcher:\n  module: lead_assets.launcher\n"
                                       "  class: PrewarmedRunLauncher\n  config:\n    preload: [dagster]\n")
    with DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, PrewarmedRunLauncher)
        origin = reconstructable(tiny).get_python_origin()
        pids = []
        try:
            for _ in range(2):
                run = instance.create_run_for_job(job_def=tiny, job_code_origin=origin)
                launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
                finished = wait_finished(instance, run.run_id)
                assert finished.status == DagsterRunStatus.SUCCESS
                pids.append(int(finished.tags[PID_TAG]))
            (worker, _), = launcher._workers.values()
            assert pids[0] != pids[1] and worker.pid not in pids  # a child per run, not the warm process
            logs = [e.message for e in instance.all_logs(run.run_id) if e.message]
            assert any(f"pid {pids[1]}" in m for m in logs)
        finally:
            launcher.dispose()


def test_a_changed_source_file_means_a_fresh_prewarmed_process(tmp_path):
    package = tmp_path / "lead_assets"
    package.mkdir()
    (package / "x.py").write_text("X = 1\n")
    before = time.time() + 10
    assert not code_changed_since(str(tmp_path), ("lead_assets.definitions",), before)
    os.utime(package / "x.py", (before + 1, before + 1))
    assert code_changed_since(str(tmp_path), ("lead_assets.definitions",), before)
