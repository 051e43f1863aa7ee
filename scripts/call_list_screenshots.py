"""The README's pictures of the call list: a laptop and a phone, from a real `lead-assets serve`.

    python scripts/call_list_screenshots.py                 # a fresh `lead-assets demo` home (synthetic leads)
    python scripts/call_list_screenshots.py --home DIR      # an existing data home with a published day

Without ``--home`` it runs ``lead-assets demo`` into a temporary home with a daily capacity of 10
(so the capacity line shows), serves it on a free loopback port and photographs ``/calls`` in the
system Chromium (``bash scripts/install-browser.sh``).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lead_assets_tests.browser import ARGUMENTS, executable  # noqa: E402  (the test's own browser set-up)

BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"lead-assets serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def photograph(home: Path, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    port = _port()
    env = dict(os.environ, LEAD_ASSETS_HOME=str(home))
    server = subprocess.Popen([str(BIN / "lead-assets"), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    written = []
    try:
        url = f"http://127.0.0.1:{port}/calls"
        _wait(url, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable(), args=ARGUMENTS)
            for name, viewport, mobile in (("call_list.png", {"width": 1280, "height": 900}, False),
                                           ("call_list_phone.png", {"width": 390, "height": 844}, True)):
                page = browser.new_page(viewport=viewport, is_mobile=mobile, device_scale_factor=1)
                page.goto(url)
                page.screenshot(path=str(out / name))
                written.append(out / name)
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a data home with a published day (default: a fresh demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--capacity", type=int, default=10, help="the demo's daily capacity")
    args = parser.parse_args()
    if executable() is None:
        raise SystemExit("no Chromium on PATH: bash scripts/install-browser.sh")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.home:
        written = photograph(args.home, args.out)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            home = Path(scratch) / "home"
            env = dict(os.environ, LEAD_ASSETS_HOME=str(home), LEAD_ASSETS_DAILY_CAPACITY=str(args.capacity),
                       DAGSTER_HOME=str(home / "dagster"))
            env.pop("MLFLOW_TRACKING_URI", None)
            print(f"running lead-assets demo into {home} (capacity {args.capacity}) ...", flush=True)
            subprocess.run([str(BIN / "lead-assets"), "demo"], env=env, check=True, stdout=subprocess.DEVNULL)
            written = photograph(home, args.out)
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
