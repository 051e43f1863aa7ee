"""Shared fixtures: a temporary data home per test, and the real CodePro files when present."""

import os
import sys
from pathlib import Path

import pytest

from lead_assets_tests import repo_hygiene

_BEFORE = pytest.StashKey[set]()

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

REPOSITORY = Path(__file__).resolve().parents[1]
CODEPRO = Path(os.environ.get("LEAD_ASSETS_CODEPRO_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "codepro")).resolve()


def pytest_sessionstart(session):
    """Note what git does not track before the run (on the controller, not on each xdist worker)."""
    if not hasattr(session.config, "workerinput"):
        session.config.stash[_BEFORE] = repo_hygiene.untracked(REPOSITORY)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when it left files in the repository (see ``repo_hygiene``)."""
    if hasattr(session.config, "workerinput") or _BEFORE not in session.config.stash:
        return
    stray = repo_hygiene.left_behind(session.config.stash[_BEFORE], repo_hygiene.untracked(REPOSITORY))
    if stray:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "the test run left files in the repository (write them under tmp_path): " + ", ".join(stray)
        if reporter:
            reporter.write_line(message, red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """For a parallel run (pytest-xdist, ``--dist loadgroup``): a module's tests stay on one worker,
    in order (several share a module-scoped home and build on each other), and the deployment
    tests share one worker, so their PostgreSQL, MLflow and Redis servers start once. It must run
    first: the xdist worker, registered after this conftest and so called before it, turns the
    marks into node ids in this same hook."""
    deploy = Path(__file__).parent / "deploy"
    groups, seconds = {}, {}
    for item in items:
        path = Path(str(item.fspath))
        group = "deploy" if deploy in path.parents else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
        groups[item.nodeid] = group
        slow = item.get_closest_marker("slow")
        module = item.nodeid.split("::")[0]
        if slow:
            seconds.setdefault(group, {})[module] = slow.kwargs.get("seconds", slow.args[0] if slow.args else 0)
    # The slowest groups first (`make test` passes --no-loadscope-reorder, so xdist hands groups out
    # in this order): a long served test started last would run alone at the end.
    weight = {group: sum(modules.values()) for group, modules in seconds.items()}
    order = {item.nodeid: i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-weight.get(groups[item.nodeid], 0), order[item.nodeid]))


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` that gives a worker its next group only when the worker would
    otherwise stop: xdist's own hands one out while more than one test is left (its "2 pending"
    heuristic), so a worker busy with a long served test already held the next slow group while
    another worker ran out of work; with the groups sorted slowest first, this one keeps the
    three workers within a few seconds of each other at the end."""
    if config.getoption("dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class OneGroupAhead(LoadGroupScheduling):
        def _reschedule(self, node):
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            # a worker runs a test only once it knows the next one (pytest's teardown needs it),
            # so its last pending test waits for this group: one pending test is the moment
            if self._pending_of(self.assigned_work[node]) > 1:
                return
            self._assign_work_unit(node)

    return OneGroupAhead(config, log)


@pytest.fixture(autouse=True)
def _mlflow_state_restored():
    """``mlflow.set_tracking_uri`` / ``set_experiment`` export ``MLFLOW_*`` into this process's
    environment: put it back after every test, so no later test (nor a subprocess it starts)
    inherits a data home's tracking store."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    if "mlflow" in sys.modules:  # only a test that used mlflow can have moved its tracking URI
        sys.modules["mlflow"].set_tracking_uri(saved.get("MLFLOW_TRACKING_URI"))
    for name in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[name]
    os.environ.update(saved)


@pytest.fixture
def codepro() -> Path:
    """The real case-study files, read in place (never copied); skip cleanly when absent."""
    if not (CODEPRO / "leads_sample_100.csv").exists():
        pytest.skip(f"real CodePro data not found at {CODEPRO}")
    return CODEPRO


@pytest.fixture
def lead_home(tmp_path, monkeypatch):
    """A fresh LEAD_ASSETS_HOME (and Dagster/MLflow under it) for one test."""
    from lead_assets.core.store.home import LeadHome

    root = tmp_path / "home"
    monkeypatch.setenv("LEAD_ASSETS_HOME", str(root))
    for name in ("LEAD_ASSETS_INBOX", "LEAD_ASSETS_LANDING", "LEAD_ASSETS_QUARANTINE", "LEAD_ASSETS_LEDGER",
                 "LEAD_ASSETS_WAREHOUSE", "MLFLOW_TRACKING_URI", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    return LeadHome.resolve().ensure()
