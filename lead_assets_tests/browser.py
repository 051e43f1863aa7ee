"""Headless Chromium for the page tests: the system's browser (Debian's), driven by Playwright.

Playwright's own browser downloads are not needed (nor reachable from CI): ``executable_path``
points it at ``chromium`` on PATH, which ``scripts/install-browser.sh`` installs. Without one the
test skips, saying how to get it, unless ``LEAD_ASSETS_REQUIRE_BROWSER`` is set (``.ci/run`` sets
it), when it fails: CI never skips the browser silently.
"""

import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# A closed network: without the background-networking flags Chromium keeps dialling Google's hosts.
ARGUMENTS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@contextmanager
def chromium() -> Iterator[object]:
    """A Playwright ``Browser`` on the system Chromium, closed afterwards."""
    path = executable()
    missing = ("no Chromium on PATH (bash scripts/install-browser.sh)" if path is None else
               "playwright is not installed (pip install -e '.[dev]')" if importlib.util.find_spec("playwright")
               is None else None)
    if missing:
        if os.environ.get("LEAD_ASSETS_REQUIRE_BROWSER"):
            pytest.fail(f"LEAD_ASSETS_REQUIRE_BROWSER is set but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=ARGUMENTS)
        try:
            yield browser
        finally:
            browser.close()
