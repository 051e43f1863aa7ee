"""Real servers for the deployment tests: start, wait (bounded), inspect, always tear down.

Every process is started in its own session (process group) and stopped with its whole group,
so a code server's run workers or a Celery worker's pool children never outlive a test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES_SH = DEPLOY / "ci" / "services.sh"
BIN = Path(sys.executable).parent

# What must exist for training and scoring (being written alongside this deployment work).
MODEL_MODULES = ("lead_assets.core.model.recipe", "lead_assets.core.release.registry", "lead_assets.core.scoring.batch",
                 "lead_assets.core.model.judging", "lead_assets.core.leads.synth")


DEPLOY_PACKAGES = ("dagster_postgres", "dagster_celery", "dagster_k8s", "psycopg2", "redis")


def require_deploy_extra() -> None:
    """The deployment tests need the `deploy` extra; without it they fail and say how to fix it."""
    import importlib.util

    missing = [name for name in DEPLOY_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail("the deployment packages are not installed (" + ", ".join(missing) + "): "
                    "pip install -e '.[deploy]' (see deploy/README.md)", pytrace=False)


def missing_model_code() -> list[str]:
    import importlib.util

    missing = []
    for name in MODEL_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ImportError:
            missing.append(name)
    return missing


def require_model_code() -> None:
    missing = missing_model_code()
    if missing:
        pytest.fail("training/scoring code missing (" + ", ".join(missing) + "): "
                    "the end-to-end deployment tests need it to train a champion and score leads")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


class Process:
    """A long-running server process in its own process group, logging to a file."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path,
                 cwd: Path | None = None):
        # not the repository: nothing may depend on the working directory
        self.name, self.args, self.env, self.cwd = name, [str(a) for a in args], dict(env), cwd or log_dir
        self.log = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.log, "ab")
        handle.write(f"\n==== {time.strftime('%H:%M:%S')} {shlex.join(self.args)}\n".encode())
        handle.flush()
        self.popen = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        handle.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        # the group too: children (run workers, pool processes) that outlived their parent
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited with {self.popen.returncode if self.popen else '?'}"
        return f"--- {self.name} ({state}), last lines of {self.log}:\n{tail(self.log)}"


def _done(value) -> bool:
    if value is None:
        return False
    if hasattr(value, "empty"):  # a DataFrame: done when it has rows
        return not value.empty
    return bool(value)


def wait_for(what: str, predicate: Callable[[], object], timeout: float, watch: Sequence[Process] = (),
             interval: float = 1.0):
    """Poll until ``predicate()`` is truthy; fail with the reason and the servers' logs otherwise."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if _done(value):
                return value
        except Exception as exc:  # a server still starting
            last_error = exc
        dead = [p for p in watch if not p.alive()]
        if dead:
            pytest.fail(f"waiting for {what}: {', '.join(p.name for p in dead)} exited\n"
                        + "\n".join(p.describe() for p in watch), pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"waiting for {what}: not within {timeout:.0f} s"
                        + (f" (last error: {last_error!r})" if last_error else "") + "\n"
                        + "\n".join(p.describe() for p in watch), pytrace=False)
        time.sleep(interval)


def run_cli(args: Sequence[str], env: Mapping[str, str], log: Path, timeout: float, what: str,
            cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """A command that must succeed; its output goes to ``log`` and into the failure message."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        done = subprocess.run([str(a) for a in args], cwd=cwd, env=dict(env), capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what}: `{shlex.join(map(str, args))}` did not finish within {timeout:.0f} s\n"
                    f"{(exc.stdout or '')[-3000:]}{(exc.stderr or '')[-3000:]}", pytrace=False)
    with open(log, "a") as handle:
        handle.write(f"\n==== {shlex.join(map(str, args))} -> {done.returncode} in "
                     f"{time.monotonic() - started:.1f} s\n{done.stdout}\n{done.stderr}\n")
    if done.returncode != 0:
        pytest.fail(f"{what}: `{shlex.join(map(str, args))}` exited {done.returncode}\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}", pytrace=False)
    return done


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


@dataclass
class Services:
    """PostgreSQL, the MLflow server and Redis started by deploy/ci/services.sh."""

    state: Path
    env: dict[str, str]          # the exports `services.sh start` printed
    script_env: dict[str, str]   # what the script was called with (to stop it)

    @property
    def pg(self) -> dict:
        return {"host": self.env["DAGSTER_PG_HOST"], "port": int(self.env["DAGSTER_PG_PORT"]),
                "user": self.env["DAGSTER_PG_USER"], "password": self.env["DAGSTER_PG_PASSWORD"]}

    @property
    def mlflow_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    @property
    def mlflow_artifacts(self) -> Path:
        return self.state / "mlartifacts"

    def connect_mlflow_db(self):
        """MLflow's own database, as the role the tracking server uses."""
        import psycopg2

        return psycopg2.connect(host=self.pg["host"], port=self.pg["port"], user="mlflow",
                                password=self.script_env["MLFLOW_PG_PASSWORD"], dbname="mlflow", connect_timeout=10)

    def mlflow_sql(self, statement: str, params: Sequence | None = None) -> list[tuple]:
        connection = self.connect_mlflow_db()
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                return cursor.fetchall()
        finally:
            connection.close()

    def connect(self, dbname: str, **overrides):
        import psycopg2

        params = dict(self.pg, dbname=dbname, connect_timeout=10)
        params.update(overrides)
        return psycopg2.connect(**params)

    def create_database(self, name: str) -> str:
        connection = self.connect("dagster")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return name

    def query(self, dbname: str, sql: str, params: Sequence | None = None, **overrides) -> list[tuple]:
        connection = self.connect(dbname, **overrides)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            connection.close()


def parse_exports(text: str) -> dict[str, str]:
    exports = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            exports[key.strip()] = value.strip()
    return exports


def start_services(state: Path, timeout: float = 900) -> Services:
    import secrets

    script_env = dict(
        os.environ,
        # fresh secrets every session: nothing may rely on a built-in default
        DAGSTER_PG_PASSWORD=secrets.token_hex(12),
        MLFLOW_PG_PASSWORD=secrets.token_hex(12),
        REDIS_PASSWORD=secrets.token_hex(12),
        LEAD_SERVICES_DIR=str(state),
        LEAD_PG_PORT=str(free_port()),
        LEAD_MLFLOW_PORT=str(free_port()),
        LEAD_REDIS_PORT=str(free_port()),
        LEAD_PYTHON=sys.executable,
        MLFLOW_BIN=str(BIN / "mlflow"),
    )
    try:
        done = subprocess.run(["bash", str(SERVICES_SH), "start"], env=script_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stop_services(script_env)
        pytest.fail(f"deploy/ci/services.sh start did not finish within {timeout:.0f} s:\n{exc.stderr}",
                    pytrace=False)
    if done.returncode != 0:
        stop_services(script_env)
        pytest.fail(f"deploy/ci/services.sh start failed (exit {done.returncode}): PostgreSQL, MLflow or Redis "
                    f"could not start on this machine\n{done.stderr[-6000:]}", pytrace=False)
    return Services(state=state, env=parse_exports(done.stdout), script_env=script_env)


def stop_services(script_env: Mapping[str, str]) -> None:
    subprocess.run(["bash", str(SERVICES_SH), "purge"], env=dict(script_env), capture_output=True, timeout=300)


@dataclass
class Deployment:
    """One deployment's configuration: a DAGSTER_HOME with deploy/dagster.yaml, a data home, a database."""

    root: Path
    services: Services
    database: str
    dagster_home: Path
    lead_home: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LEAD_ASSETS_", "DAGSTER_", "MLFLOW_"))}
        env.update(self.services.env)
        env.update(
            DAGSTER_HOME=str(self.dagster_home),
            DAGSTER_PG_DB=self.database,
            LEAD_ASSETS_HOME=str(self.lead_home),
            LEAD_ASSETS_FIRST_TRAINING_MIN_LABELLED="0",  # the tests train the first model themselves
            GX_ANALYTICS_ENABLED="False",
            MLFLOW_ENABLE_ASYNC_LOGGING="false",
            PYTHONUNBUFFERED="1",
            PYTHONWARNINGS="ignore",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        env.update(self.extra_env)
        return env

    def with_env(self, **extra: str) -> "Deployment":
        return Deployment(self.root, self.services, self.database, self.dagster_home, self.lead_home,
                          {**self.extra_env, **extra})

    def cli(self, args: Sequence[str], what: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_cli(args, self.env, self.root / "logs" / "cli.log", timeout, what, cwd=self.root)

    def materialize(self, selection: Sequence[str], what: str, partition_range: tuple[str, str] | None = None,
                    timeout: float = 300) -> subprocess.CompletedProcess:
        """`dagster asset materialize` against the production code location and instance."""
        args = [BIN / "dagster", "asset", "materialize", "-f", DEPLOY / "definitions.py", "--select",
                ",".join(selection)]
        if partition_range:
            args += ["--partition-range", f"{partition_range[0]}...{partition_range[1]}"]
        return self.cli(args, what, timeout)

    @contextlib.contextmanager
    def instance(self) -> Iterator:
        """The production instance (PostgreSQL) as every Dagster process of this deployment sees it."""
        from dagster import DagsterInstance

        keys = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
        env = self.env
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update({k: env[k] for k in keys})
        try:
            with DagsterInstance.from_config(str(self.dagster_home)) as instance:
                yield instance
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def sql(self, statement: str, params: Sequence | None = None) -> list[tuple]:
        return self.services.query(self.database, statement, params)


def make_deployment(root: Path, services: Services, database: str) -> Deployment:
    dagster_home = root / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    lead_home = root / "lead_home"
    lead_home.mkdir(parents=True, exist_ok=True)
    services.create_database(database)
    deployment = Deployment(root=root, services=services, database=database, dagster_home=dagster_home,
                            lead_home=lead_home)
    # what an operator does once (deploy/README.md): tables, and pool limits set up front, so
    # no two runs race to create a pool's default limit
    run_cli(["bash", DEPLOY / "bin" / "init-instance.sh"], dict(deployment.env, DAGSTER_BIN=str(BIN / "dagster")),
            root / "logs" / "cli.log", 120, "initialising the instance (deploy/bin/init-instance.sh)", cwd=root)
    return deployment
