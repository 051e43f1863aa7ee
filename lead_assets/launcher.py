"""A run launcher for one machine that does not pay the heavy imports once per run.

Dagster's default launcher has the code server spawn a fresh Python for every run, which then
imports Dagster and the code location (~2-3 s) and, in its steps, Great Expectations (~2.5 s)
and MLflow (~1.3 s): most of the time between an inbox drop and its scores. This launcher keeps
one *pre-warmed* process per code location (executable and working directory) that has
imported all of that once and, for each run, forks a child that executes the run exactly as
``dagster api execute_run`` would (``_execute_run_command_body``): same instance, same events,
same code. The pre-warmed process runs nothing itself and holds no thread, database connection
or file, so a fork is safe; it is restarted when a ``.py`` file of the code location's
packages changes, so a reloaded code location is never run with old code.

Local instances only (``lead-assets init`` writes it into dagster.yaml); the deployments in
``deploy/`` keep their own launchers. ``python -m lead_assets.launcher`` is the pre-warmed
process (it speaks one JSON line per run on stdin/stdout).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from dagster import Array, Field
from dagster._core.launcher.base import LaunchRunContext, RunLauncher
from dagster._serdes import ConfigurableClass, ConfigurableClassData

PRELOAD: tuple[str, ...] = ("lead_assets.definitions", "lead_assets.core.quality", "lead_assets.core.registry",
                            "great_expectations", "mlflow.pyfunc", "catboost")
PID_TAG = "lead_assets/run_worker_pid"


class PrewarmedRunLauncher(RunLauncher, ConfigurableClass):
    """Each run in a child forked from a process that already imported the code and its libraries."""

    def __init__(self, preload: list[str] | None = None, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        self._preload = tuple(preload or PRELOAD)
        self._workers: dict[tuple[str, str], tuple[subprocess.Popen, float]] = {}
        self._lock = threading.Lock()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls):
        return {"preload": Field(Array(str), is_required=False,
                                 description="Modules the pre-warmed process imports (default: PRELOAD).")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    def launch_run(self, context: LaunchRunContext) -> None:
        from dagster._core.errors import DagsterLaunchFailedError
        from dagster._serdes import serialize_value

        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise DagsterLaunchFailedError(f"run {run.run_id} has no code origin to execute")
        executable = origin.repository_origin.executable_path or sys.executable
        directory = getattr(origin.repository_origin.code_pointer, "working_directory", None) or os.getcwd()
        request = json.dumps({"run_id": run.run_id, "instance_ref": serialize_value(self._instance.get_ref())})
        with self._lock:
            answer = self._ask(executable, directory, request)
        if "pid" not in answer:
            raise DagsterLaunchFailedError(f"pre-warmed run worker failed to start run {run.run_id}: {answer}")
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(answer["pid"])})
        self._instance.report_engine_event(f"Forked a pre-warmed run worker (pid {answer['pid']}).", run,
                                           cls=self.__class__)

    def _ask(self, executable: str, directory: str, request: str) -> dict:
        """Send the run to the code location's pre-warmed process (started or restarted as needed)."""
        for attempt in range(2):
            worker = self._worker(executable, directory, fresh=attempt > 0)
            try:
                worker.stdin.write(request + "\n")
                worker.stdin.flush()
                line = worker.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if line:
                return json.loads(line)
        return {"error": "the pre-warmed process exited"}

    def _worker(self, executable: str, directory: str, fresh: bool) -> subprocess.Popen:
        key = (executable, directory)
        current = self._workers.get(key)
        stale = current is None or fresh or current[0].poll() is not None or (
            code_changed_since(directory, self._preload, current[1]))
        if stale:
            if current is not None:
                stop(current[0])
            started = time.time()
            process = subprocess.Popen([executable, "-m", "lead_assets.launcher", *self._preload], cwd=directory,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       start_new_session=True)
            self._workers[key] = current = (process, started)
        return current[0]

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or PID_TAG not in run.tags:
            return False
        self._instance.report_run_canceling(run)
        try:
            os.killpg(int(run.tags[PID_TAG]), signal.SIGINT)  # the run worker turns it into a cancelled run
        except ProcessLookupError:
            return False
        return True

    def dispose(self) -> None:
        for process, _ in self._workers.values():
            stop(process)
        self._workers.clear()


def code_changed_since(directory: str, preload: tuple[str, ...], since: float) -> bool:
    """A ``.py`` file of a preloaded package under the working directory changed after ``since``."""
    for top in {name.split(".")[0] for name in preload}:
        package = Path(directory, top)
        if package.is_dir() and any(p.stat().st_mtime > since for p in package.rglob("*.py")):
            return True
    return False


def stop(process: subprocess.Popen) -> None:
    """End a pre-warmed process; runs it forked go on (they are in their own sessions)."""
    if process.poll() is None:
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def execute(request: dict) -> int:
    """In the forked child: the run, as ``dagster api execute_run`` executes it."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import DagsterInstance
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts

    with capture_interrupts(), DagsterInstance.from_ref(deserialize_value(request["instance_ref"])) as instance:
        return _execute_run_command_body(request["run_id"], instance, lambda event: None,
                                         set_exit_code_on_failure=False)


def serve(preload: list[str]) -> None:
    """The pre-warmed process: import once, then fork one child per request line."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nothing imported may write into the protocol
    for name in preload:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished children are reaped by the kernel
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.dup2(os.open(os.devnull, os.O_RDONLY), sys.stdin.fileno())
                protocol.close()
                code = execute(request)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        protocol.write(json.dumps({"pid": pid}) + "\n")
        protocol.flush()


if __name__ == "__main__":
    serve(sys.argv[1:])
