"""One way to serve the project for a test: a Dagster dev server on a free loopback port.

The served tests (`test_served*.py`) all start it, wait until GraphQL answers, and stop the
whole process group afterwards (SIGTERM, then SIGKILL: `dg dev` does not always pass SIGTERM on).
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

    from lead_assets.core import inbox, synth
    from lead_assets.demo import materialize_selection

    history = synth.generate_leads("2021-07-01", 40, 150, seed=21, labelled=True)
    synth.write_daily_files(history, home.inbox.path, prefix="history")
    today = datetime.now(timezone.utc).date()
    for candidate in inbox.list_candidates(home.inbox)[0]:
        inbox.receive(home, candidate.path, date(2021, 7, 1), today)
    materialize_selection(["raw_leads", "cleaned_leads", "lead_features"], "2021-07-01", "2021-08-09")
    materialize_selection(["lead_scoring_model", "champion_model"])


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


@contextmanager
def dev_server(env: dict, command: str = "dagster", query: str = "{ assetNodes { assetKey { path } } }",
               timeout: float = 240) -> Iterator[tuple[subprocess.Popen, int, dict]]:
    """``dagster dev`` (or ``dg dev``) on 127.0.0.1: yields the process, the port and the first answer."""
    port = free_port()
    binary = str(Path(sys.executable).with_name(command))
    argv = ([binary, "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")]
            if command == "dagster" else [binary, "dev", "--host", "127.0.0.1", "--port", str(port)])
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        def answer():
            try:
                data = graphql(port, query)
            except (OSError, ValueError, KeyError, TypeError):  # not listening, or not loaded yet
                return None
            return data if data and data.get("assetNodes") else None

        yield process, port, wait_for("GraphQL to answer", answer, process, timeout)
    finally:
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
