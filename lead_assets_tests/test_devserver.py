"""make dev's supervisor: SIGTERM reaches the command as SIGINT, and nothing it started outlives the
stop by more than the grace period, not even a process in a session of its own that ignores signals."""

import os
import signal
import subprocess
import sys
import time
import uuid

from lead_assets.devserver import descendants


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

# The command: a child in a session of its own that ignores SIGINT and SIGTERM (what a run worker
# stuck in C code looks like), then wait for SIGINT and exit as Dagster does.
COMMAND = """
import os, signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                  "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"], start_new_session=True)
print("ready", flush=True)
try:
    time.sleep(600)
except KeyboardInterrupt:
    open(sys.argv[1], "w").write("interrupted")
"""


def _supervised(tmp_path, stop_seconds):
    marker = tmp_path / "interrupted"
    code = f"import sys; from lead_assets.devserver import supervise; sys.exit(supervise(sys.argv[1:], {stop_seconds}))"
    tag = uuid.uuid4().hex
    process = subprocess.Popen([sys.executable, "-c", code, sys.executable, "-c", COMMAND, str(marker), tag],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    return process, marker


def test_sigterm_is_passed_on_as_sigint_and_the_stubborn_rest_is_killed_in_time(tmp_path):
    process, marker = _supervised(tmp_path, stop_seconds=2)
    tree = descendants(process.pid)
    assert len(tree) == 2  # the command and its child in a session of its own
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)
    took = time.monotonic() - began
    assert marker.read_text() == "interrupted"  # the command got SIGINT: Dagster's graceful stop
    assert 2 <= took < 5, took  # the stubborn child had its 2 s, then was killed
    assert not [pid for pid in tree if _alive(pid)]


def test_a_second_ctrl_c_kills_at_once(tmp_path):
    process, marker = _supervised(tmp_path, stop_seconds=60)
    tree = descendants(process.pid)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    time.sleep(1)
    assert marker.read_text() == "interrupted" and process.poll() is None  # the stubborn child holds it
    began = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=15)
    assert time.monotonic() - began < 5
    assert not [pid for pid in tree if _alive(pid)]
