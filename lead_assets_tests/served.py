"""One way to serve the project for a test: a Dagster dev server on a free loopback port.

The served tests (`test_served*.py`) all start it, wait until GraphQL answers, and stop the
whole process group afterwards (SIGTERM, then SIGKILL: `dg dev` does not always pass SIGTERM on).
:func:`make_dev` starts ``make dev`` itself (``lead-assets init``'s instance, the pre-warmed
launcher); :func:`started_under` finds every process it started, however deep and in whatever
session (the launcher's processes have their own), by the data home in their environment.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def train_champion(home) -> None:
    """40 labelled synthetic days landed and a promoted champion, in the instance the server will use."""
    from datetime import date, datetime, timezone

    from lead_assets.core.inbox import ledger

    from lead_assets.core.leads import synth
    from lead_assets.demo import materialize_selection

    history = synth.generate_leads("2021-07-01", 40, 150, seed=21, labelled=True)
    synth.write_daily_files(history, home.inbox.path, prefix="history")
    today = datetime.now(timezone.utc).date()
    for candidate in ledger.list_candidates(home.inbox)[0]:
        ledger.receive(home, candidate.path, date(2021, 7, 1), today)
    materialize_selection(["raw_leads", "cleaned_leads", "lead_features"], "2021-07-01", "2021-08-09")
    materialize_selection(["lead_scoring_model", "champion_model"])


def register_model(home, seed: int, **settings) -> str:
    """A model trained on 60 labelled synthetic days, registered (not promoted): a challenger."""
    from datetime import date

    from upath import UPath

    from lead_assets.core.inbox.parsing import parse_lead_file
    from lead_assets.core.leads.cleaning import clean_leads
    from lead_assets.core.leads.features import build_features
    from lead_assets.core.leads.synth import generate_leads
    from lead_assets.core.model.recipe import TrainConfig
    from lead_assets.core.model.training import train_model
    from lead_assets.core.release import registry
    from lead_assets_tests.factories import FAST

    raw = generate_leads("2021-07-01", 60, 40, seed=seed)
    path = Path(str(home.root)) / f"history-{seed}.csv"
    raw.to_csv(path, index=False)
    parsed = parse_lead_file(UPath(path), name=path.name, sha256="0", first_day=date(2021, 7, 1), today=date(2021, 9, 1))
    result = train_model(build_features(clean_leads(parsed.accepted)), TrainConfig(**{**FAST, **settings}))
    return registry.log_training(result, model_name="lead_scoring", plots={})


def drop(home, name: str, text: str) -> None:
    """Written beside the inbox, then moved in whole: what an export job does."""
    staging = Path(str(home.root)) / "staging"
    staging.mkdir(exist_ok=True)
    (staging / name).write_text(text)
    os.replace(staging / name, Path(str(home.inbox)) / name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def wait_for(what: str, ready: Callable[[], object], process: subprocess.Popen, timeout: float,
             every: float = 1.0):
    """``ready()``'s first truthy value; fails the test if the server dies or time runs out."""
    deadline = time.time() + timeout
    while True:
        value = ready()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"the dev server exited with {process.returncode} while waiting for {what}")
        if time.time() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _graphql_ready(port: int, query: str):
    try:
        data = graphql(port, query)
    except (OSError, ValueError, KeyError, TypeError):  # not listening, or not loaded yet
        return None
    return data if data and data.get("assetNodes") else None


@contextmanager
def dev_server(env: dict, command: str = "dagster", query: str = "{ assetNodes { assetKey { path } } }",
               timeout: float = 240) -> Iterator[tuple[subprocess.Popen, int, dict]]:
    """``dagster dev`` (or ``dg dev``) on 127.0.0.1: yields the process, the port and the first answer.

    The first model is trained by the test's own click unless ``env`` says otherwise: a first
    training by the sensor would race the one the test launches (the rule has tests of its own);
    a variable given as None is left unset (the shipped default)."""
    env = {k: v for k, v in {"LEAD_ASSETS_FIRST_TRAINING_MIN_LABELLED": "0", **env}.items() if v is not None}
    port = free_port()
    binary = str(Path(sys.executable).with_name(command))
    argv = ([binary, "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")]
            if command == "dagster" else [binary, "dev", "--host", "127.0.0.1", "--port", str(port)])
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        yield process, port, wait_for("GraphQL to answer", lambda: _graphql_ready(port, query), process, timeout)
    finally:
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


@contextmanager
def lead_assets_serve(root, log: Path, *arguments: str, env: dict | None = None
                      ) -> Iterator[tuple[subprocess.Popen, int]]:
    """``lead-assets serve`` as a user starts it, for the data home ``root``, on a free loopback port;
    its output goes to ``log`` (the tail is printed afterwards) and its process group is stopped."""
    port = free_port()
    environment = dict(os.environ, LEAD_ASSETS_HOME=str(root), **(env or {}))
    environment.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("lead-assets")), "serve", "--port", str(port), *arguments],
            cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, port
    finally:
        print(log.read_text()[-3000:])
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def started_under(root) -> dict[int, str]:
    """Every live process whose environment says ``LEAD_ASSETS_HOME=root``: pid -> command line."""
    marker = f"LEAD_ASSETS_HOME={root}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environment = handle.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or not ours
            continue
        if marker in environment and state != "Z":
            found[int(entry)] = command
    return found


@contextmanager
def make_dev(root: Path, log: Path, timeout: float = 240) -> Iterator[tuple[subprocess.Popen, int]]:
    """``make dev`` as a user runs it, with ``LEAD_ASSETS_HOME=root`` on a free loopback port (its own
    process group, as a terminal gives it); afterwards every process it started is killed."""
    port = free_port()
    venv = Path(sys.executable).parent.parent
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["LEAD_ASSETS_HOME"] = str(root)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "-o", f"{venv}/.installed", "dev", f"PORT={port}", f"VENV={venv}"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("make dev's GraphQL to answer", lambda: _graphql_ready(port, "{ assetNodes { assetKey { path } } }"),
                 process, timeout)
        yield process, port
    finally:
        for pid in [process.pid, *started_under(root)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=10)
