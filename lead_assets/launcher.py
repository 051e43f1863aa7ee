"""A run launcher for one machine that does not pay the heavy imports once per run.

Dagster's default launcher has the code server spawn a fresh Python for every run, which then
imports Dagster and the code location (~2-3 s) and, in its steps, Great Expectations (~2.5 s)
and MLflow (~1.3 s): most of the time between an inbox drop and its scores. This launcher keeps
one *pre-warmed* process per code location (executable and working directory) that has
imported all of that once and, for each run, forks a child that executes the run exactly as
``dagster api execute_run`` would (``_execute_run_command_body``): same instance, same events,
same code. The pre-warmed process runs nothing itself and holds no thread, database connection
or file, so a fork is safe.

* **Code changes.** The pre-warmed process is replaced when a ``.py`` file of the code
  location's packages is added, removed or changed (its size or mtime differs from when the
  process started; an mtime in the future is not a change by itself). The old one stops taking
  runs and exits once the runs it forked have finished.
* **Broken code.** A module that fails to import (a syntax error) does not stop the pre-warmed
  process: each run then imports the code itself and fails the way ``dagster api
  execute_run`` fails, with the traceback in the run's logs (the import error is logged there
  too).
* **Dead run workers.** Each run is tagged with its worker's pid and start time;
  ``check_run_worker_health`` (Dagster's run monitoring) fails a run whose worker is gone
  (the OOM killer, ``kill -9``) instead of leaving it ``STARTED`` for ever, naming the signal
  when the pre-warmed process saw it die.
* **Shutdown.** When the launcher goes away (the daemon stops on Ctrl-C, or dies), the
  pre-warmed process sees its stdin close, interrupts its run workers (SIGINT: the run fails
  as "interrupted" and run retries re-run it), kills what is left after
  ``STOP_GRACE_SECONDS`` and exits.

Local instances only (``lead-assets init`` writes it into dagster.yaml); the deployments in
``deploy/`` keep their own launchers. Every private Dagster API it uses comes from
``lead_assets.dagster_private`` (pinned to one Dagster version and tested there). ``python -m lead_assets.launcher`` is the pre-warmed
process (it speaks one JSON line per run on stdin/stdout).
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import Array, Field
from lead_assets.dagster_private import (CheckRunHealthResult, ConfigurableClass, ConfigurableClassData,
                                         LaunchRunContext, RunLauncher, WorkerStatus)

PRELOAD: tuple[str, ...] = ("lead_assets.definitions", "lead_assets.core.leads.quality", "lead_assets.core.release.registry",
                            "great_expectations", "mlflow.pyfunc", "catboost")
PID_TAG = "lead_assets/run_worker_pid"
STARTED_TAG = "lead_assets/run_worker_started"  # the kernel's start time of that pid: a reused pid differs
STOP_GRACE_SECONDS = 5.0  # an interrupted run worker gets this long to record its failure, then SIGKILL
REAP_SECONDS = 0.5
EXITS_FOLDER = "run_workers"  # under the instance's root: how a run worker that died ended


@dataclass
class Prewarmed:
    process: subprocess.Popen
    code: dict[str, tuple[int, int]]  # the code location's .py files when it started: path -> (mtime_ns, size)


class PrewarmedRunLauncher(RunLauncher, ConfigurableClass):
    """Each run in a child forked from a process that already imported the code and its libraries."""

    def __init__(self, preload: list[str] | None = None, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        self._preload = tuple(preload or PRELOAD)
        self._workers: dict[tuple[str, str], Prewarmed] = {}
        self._retired: list[subprocess.Popen] = []
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
        from lead_assets.dagster_private import launch_failed, serialize_value

        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise launch_failed(f"run {run.run_id} has no code origin to execute")
        executable = origin.repository_origin.executable_path or sys.executable
        directory = getattr(origin.repository_origin.code_pointer, "working_directory", None) or os.getcwd()
        request = json.dumps({"run_id": run.run_id, "instance_ref": serialize_value(self._instance.get_ref()),
                              "exit_record": str(self._exit_record(run.run_id))})
        with self._lock:
            answer = self._ask(executable, directory, request)
        if "pid" not in answer:
            raise launch_failed(f"pre-warmed run worker failed to start run {run.run_id}: "
                                f"{answer.get('error', answer)}")
        self._instance.add_run_tags(run.run_id, worker_tags(answer["pid"], answer.get("started")))
        if answer.get("import_error"):
            self._instance.report_engine_event(
                "The pre-warmed process could not import the code location; this run imports it itself "
                f"and fails the same way if the error is still there:\n{answer['import_error']}",
                run, cls=self.__class__)
        self._instance.report_engine_event(f"Forked a pre-warmed run worker (pid {answer['pid']}).", run,
                                           cls=self.__class__)

    def _exit_record(self, run_id: str) -> Path:
        return Path(self._instance.root_directory, EXITS_FOLDER, f"{run_id}.json")

    def _ask(self, executable: str, directory: str, request: str) -> dict:
        """Send the run to the code location's pre-warmed process (started or restarted as needed)."""
        code = None
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
            try:
                code = worker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
        return {"error": f"the pre-warmed process ({executable} -m lead_assets.launcher in {directory}) exited "
                         f"with code {code} before forking the run; its output is in the Dagster daemon's log"}

    def _worker(self, executable: str, directory: str, fresh: bool) -> subprocess.Popen:
        key = (executable, directory)
        current = self._workers.get(key)
        code = code_files(directory, self._preload)
        if current is None or fresh or current.process.poll() is not None or current.code != code:
            if current is not None:
                self._retire(current.process)
            process = subprocess.Popen([executable, "-m", "lead_assets.launcher", *self._preload], cwd=directory,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       start_new_session=True)
            self._workers[key] = current = Prewarmed(process, code)
        self._retired = [p for p in self._retired if p.poll() is None]
        return current.process

    def _retire(self, process: subprocess.Popen) -> None:
        """No more runs for it; it exits when the runs it forked have finished (stdin stays open)."""
        if process.poll() is not None:
            return
        try:
            process.stdin.write(json.dumps({"retire": True}) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            return
        self._retired.append(process)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or PID_TAG not in run.tags:
            return False
        pid = int(run.tags[PID_TAG])
        if not worker_alive(pid, run.tags.get(STARTED_TAG)):
            return False
        self._instance.report_run_canceling(run)
        try:
            os.killpg(pid, signal.SIGINT)  # the run worker turns it into a cancelled run
        except ProcessLookupError:
            return False
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        """RUNNING while the tagged pid is the same live process; FAILED once it is gone.

        A run without the tag was not launched here (``execute_in_process`` in a script, a
        test): there is no worker to look at, so it is reported RUNNING and left alone.
        """
        pid = run.tags.get(PID_TAG)
        if not pid:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker pid tagged: not checked")
        if worker_alive(int(pid), run.tags.get(STARTED_TAG)):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=pid)
        current = self._instance.get_run_by_id(run.run_id)
        if current is None or current.is_finished:  # it finished the run, then exited
            return CheckRunHealthResult(WorkerStatus.SUCCESS, run_worker_id=pid)
        self._decide_retry(current)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker (pid {pid}) {self._how_it_ended(run)}",
                                    run_worker_id=pid)

    def _decide_retry(self, run) -> None:
        """Tag whether run retries re-run this run before the monitor fails it (Dagster's own rule).

        Dagster 1.13 stores the failure event, then sets the run's status, then this tag; the retry
        daemon reading the run in between sees it neither failed nor tagged and never retries it
        (seen under load). A worker that is gone cannot finish its run, so deciding now is safe.
        """
        from dagster import DagsterRunStatus
        from lead_assets.dagster_private import should_retry, will_retry_tag

        tag = will_retry_tag()
        if self._instance.run_retries_enabled and tag not in run.tags:
            retry = should_retry(self._instance, run.with_status(DagsterRunStatus.FAILURE))
            self._instance.add_run_tags(run.run_id, {tag: str(retry).lower()})

    def _how_it_ended(self, run, wait: float = 4 * REAP_SECONDS) -> str:
        """The pre-warmed process's record of how the worker ended. A worker that just died may not
        be reaped yet (its parent reaps every ``REAP_SECONDS``, later under load): wait that long."""
        deadline = time.monotonic() + wait
        while True:
            try:
                record = json.loads(self._exit_record(run.run_id).read_text())
            except (OSError, ValueError):
                record = None
            if record and str(record.get("pid")) == run.tags.get(PID_TAG):
                return record["explanation"]
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        return ("is gone without finishing the run: it was killed from outside (the OOM killer, kill -9) "
                "or the machine restarted")

    def get_run_worker_debug_info(self, run, include_container_logs: bool | None = True) -> str | None:
        pid = run.tags.get(PID_TAG)
        return None if pid is None else f"run worker pid {pid}: {self._how_it_ended(run, wait=0)}"

    def dispose(self) -> None:
        """The daemon is stopping: each pre-warmed process sees its stdin close, stops its run workers
        (within ``STOP_GRACE_SECONDS`` and a little) and exits; the daemon does not wait for that."""
        for process in [w.process for w in self._workers.values()] + self._retired:
            if process.poll() is None:
                try:
                    process.stdin.close()
                except OSError:
                    pass
        self._workers.clear()
        self._retired.clear()


def worker_tags(pid: int, started: str | None = None) -> dict[str, str]:
    """The tags ``check_run_worker_health`` reads: a run in process ``pid`` (started then)."""
    started = started if started is not None else process_started(pid)
    return {PID_TAG: str(pid), **({STARTED_TAG: started} if started else {})}


def process_started(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``), None elsewhere or when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_alive(pid: int, started: str | None) -> bool:
    """``pid`` is running (not a zombie) and, when its start time is known, is the same process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return fields[0] not in ("Z", "X") and (started is None or fields[19] == started)


def code_files(directory: str, preload: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Every ``.py`` file of the preloaded packages under the working directory: path -> (mtime_ns, size).

    Compared as a whole, so an added, removed or edited file is a change, and a file whose mtime
    lies in the future is not one until it changes again.
    """
    files = {}
    for top in sorted({name.split(".")[0] for name in preload}):
        package = Path(directory, top)
        if package.is_dir():
            for path in package.rglob("*.py"):
                try:
                    stat = path.stat()
                except OSError:  # removed while listing
                    continue
                files[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return files


def execute(request: dict) -> int:
    """In the forked child: the run, as ``dagster api execute_run`` executes it."""
    from dagster import DagsterInstance

    from lead_assets.dagster_private import capture_interrupts, deserialize_value, execute_run

    with capture_interrupts(), DagsterInstance.from_ref(deserialize_value(request["instance_ref"])) as instance:
        # before the run reports STARTED, so the health check never reads a retried run's parent's pid
        instance.add_run_tags(request["run_id"], worker_tags(os.getpid()))
        return execute_run(request["run_id"], instance)


def import_preload(preload: list[str]) -> str | None:
    """Import what runs need; the tracebacks of modules that fail (a syntax error), or None."""
    errors = []
    for name in preload:
        try:
            importlib.import_module(name)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - whatever the code raises, runs must still start and say it
            errors.append(traceback.format_exc())
    if errors:
        print("lead_assets.launcher: the pre-warmed process could not import:\n" + "\n".join(errors),
              file=sys.stderr, flush=True)
    return "\n".join(errors) or None


def fork_worker(request: dict, protocol) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            os.dup2(os.open(os.devnull, os.O_RDONLY), sys.stdin.fileno())
            protocol.close()
            code = execute(request)
        except BaseException:  # noqa: BLE001 - the child reports and exits, never returns to the loop
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def explain_exit(status: int) -> str | None:
    """How a run worker ended, when that was not a normal exit; None for exit code 0."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "?"
        cause = " (the OOM killer or kill -9)" if number == signal.SIGKILL else ""
        return f"was killed by signal {number} {name}{cause} before finishing the run"
    code = os.waitstatus_to_exitcode(status)
    return None if code == 0 else f"exited with code {code} before finishing the run"


def reap(workers: dict[int, dict], stopping: bool = False) -> None:
    """Collect finished run workers; one that ended abnormally is recorded where the launcher reads it."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        request = workers.pop(pid, None)
        explanation = explain_exit(status)
        if stopping and os.WIFSIGNALED(status):
            explanation = (f"was stopped by signal {os.WTERMSIG(status)} when the Dagster daemon that launched it "
                           "stopped (make dev or dagster dev stopping), before finishing the run")
        if request is None or explanation is None:
            continue
        print(f"lead_assets.launcher: run worker {pid} (run {request['run_id']}) {explanation}",
              file=sys.stderr, flush=True)
        if request.get("exit_record"):
            try:
                path = Path(request["exit_record"])
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"pid": pid, "run_id": request["run_id"], "explanation": explanation}))
            except OSError:
                pass


def stop_workers(workers: dict[int, dict], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGINT every run worker's process group, SIGKILL what is still there after ``grace``."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        for pid in list(workers):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGINT else 2.0)
        while workers and time.monotonic() < deadline:
            time.sleep(0.1)
            reap(workers, stopping=True)
        if not workers:
            return


def serve(preload: list[str]) -> None:
    """The pre-warmed process: import once, then fork one child per request line until stdin closes.

    Its run workers stop with it: when its stdin closes (the daemon stopped or died) and when it
    is interrupted (``make dev`` stopping: lead_assets.devserver sends it SIGINT).
    """
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nothing imported may write into the protocol
    workers: dict[int, dict] = {}
    try:
        _serve_requests(import_preload(preload), workers, protocol)
    except KeyboardInterrupt:
        pass
    finally:
        stop_workers(workers)


def _serve_requests(import_error: str | None, workers: dict[int, dict], protocol) -> None:
    retired = False
    pending = b""
    stdin = sys.stdin.fileno()
    while not (retired and not workers):
        readable, _, _ = select.select([stdin], [], [], REAP_SECONDS)
        reap(workers)
        if not readable:
            continue
        data = os.read(stdin, 1 << 16)
        if not data:  # the launcher is gone (the daemon stopped or died): so are its runs
            return
        *lines, pending = (pending + data).split(b"\n")
        for line in filter(None, (raw.strip() for raw in lines)):
            request = json.loads(line)
            if request.get("retire"):
                retired = True
                continue
            pid = fork_worker(request, protocol)
            workers[pid] = request
            protocol.write(json.dumps({"pid": pid, "started": process_started(pid),
                                       "import_error": import_error}) + "\n")
            protocol.flush()


if __name__ == "__main__":
    serve(sys.argv[1:])
