"""``make dev``'s supervisor: ``python -m lead_assets.devserver dg dev ...`` stops everything in time.

``dagster dev`` (and ``dg dev``) shut down one piece after the other: the webserver, then the
daemon, then the code server; under load that alone takes 10 s or more, and a piece that does
not stop keeps it waiting up to a minute. Some of what it started is in sessions of its own
(the pre-warmed run launcher and its run workers), out of reach of the terminal's Ctrl-C, and
is handed to PID 1 when its parent exits.

This supervisor runs the command as its child and is the *subreaper* of everything below it
(Linux ``PR_SET_CHILD_SUBREAPER``), so such orphans stay its descendants. On Ctrl-C (which the
terminal also sends to the command) or SIGTERM (passed on to the command as SIGINT, which
Dagster stops on gracefully) it sends SIGINT to the processes in sessions of their own too (a
run worker then records its run as interrupted, so run retries re-run it), gives the tree
``STOP_SECONDS`` to stop by itself, then SIGKILLs whatever is left of it, and exits: every
process ``make dev`` started is gone within ``STOP_SECONDS`` plus a moment. A second Ctrl-C or
SIGTERM kills at once. (``dagster dev`` itself waits up to 60 s for each of the webserver and
the daemon before killing it; on a busy 2-core machine its shutdown took 6 to 16 s.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

STOP_SECONDS = 10.0
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphans below this process are re-parented to it instead of PID 1 (Linux only)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (by parent pid, read from ``/proc``), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, index = list(children.get(root, [])), 0
    while index < len(found):
        found.extend(children.get(found[index], []))
        index += 1
    return found


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def reap(child: subprocess.Popen) -> None:
    """Collect exited children, orphans handed to this subreaper included (``child``'s code kept)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == child.pid and child.returncode is None:
            child.returncode = os.waitstatus_to_exitcode(status)


def supervise(argv: list[str], stop_seconds: float = STOP_SECONDS) -> int:
    become_subreaper()
    child = subprocess.Popen(argv)
    asked: list[float] = []  # when stopping was asked for

    def on_signal(number, _frame):
        if asked:  # the second time: no more waiting
            asked[0] = time.monotonic() - stop_seconds
            return
        asked.append(time.monotonic())
        group = os.getpgid(0)
        # Ctrl-C reached our process group from the terminal, SIGTERM reached only us: the command
        # gets SIGINT (what Dagster stops on), and so does every process in a session of its own
        # (the pre-warmed launcher, run workers), which no terminal signal reaches.
        targets = [child.pid] if number != signal.SIGINT else []
        targets += [pid for pid in descendants(os.getpid()) if _group(pid) not in (group, None)]
        for pid in targets:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = None
    while True:
        time.sleep(0.2)
        if code is None:
            code = child.poll()
            if code is not None and not asked:  # it ended by itself: what it left gets the same time
                asked.append(time.monotonic())
        reap(child)
        left = descendants(os.getpid())
        if code is not None and not left:
            reap(child)
            return code
        if asked and time.monotonic() - asked[0] >= stop_seconds:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            print(f"lead_assets.devserver: {len(left)} process(es) still running {stop_seconds:g} s after the stop "
                  "was asked for: killed", file=sys.stderr, flush=True)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (child.poll() is None or descendants(os.getpid())):
                reap(child)
                time.sleep(0.05)
            time.sleep(0.05)
            reap(child)  # the last ones killed
            code = child.poll()
            return code if code is not None and code >= 0 else 1


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m lead_assets.devserver COMMAND [ARG...]")
    sys.exit(supervise(sys.argv[1:]))
