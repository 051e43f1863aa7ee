"""Fixtures for the production-deployment tests: real PostgreSQL, MLflow server and Redis.

The servers are started once per test session by ``deploy/ci/services.sh`` (which installs
PostgreSQL and Redis from Debian's packages when missing), on free 127.0.0.1 ports, in a fresh
state folder, and purged at the end, whatever happened. A server that cannot start fails the
tests that need it, with the script's own explanation; nothing is skipped silently.

Select or leave out these tests with the ``deploy`` marker: ``pytest -m deploy`` /
``pytest -m "not deploy"``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from lead_assets_tests.deploy.harness import (
    BIN,
    Deployment,
    Services,
    make_deployment,
    require_deploy_extra,
    require_model_code,
    start_services,
    stop_services,
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "deploy: production deployment tests against real PostgreSQL, MLflow and Redis servers "
        "(deploy/ci/services.sh); deselect with -m 'not deploy'",
    )


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.deploy)


@pytest.fixture(autouse=True)
def _deploy_extra():
    require_deploy_extra()


@pytest.fixture(scope="session")
def services():
    require_deploy_extra()
    # Not under pytest's tmp folder: that one is private to this user (0700), and PostgreSQL runs
    # as the `postgres` user when the tests run as root.
    state = Path(tempfile.mkdtemp(prefix="lead_assets_services_", dir="/tmp"))
    os.chmod(state, 0o755)
    started = None
    try:
        started = start_services(state)
        yield started
    finally:
        if started is not None:
            stop_services(started.script_env)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def deployment(services: Services, tmp_path_factory) -> Deployment:
    """The shared production deployment: its own database in the PostgreSQL server."""
    return make_deployment(tmp_path_factory.mktemp("deployment"), services, f"dagster_e2e_{os.getpid()}")


@dataclass
class Trained:
    """A champion trained through the production deployment (its own data home, same instance/MLflow)."""

    deployment: Deployment       # with LEAD_ASSETS_HOME pointing at the training data home
    first_day: str
    last_day: str
    version: str
    seconds: float


@pytest.fixture(scope="session")
def trained(deployment: Deployment) -> Trained:
    """Labelled history landed, features built, a model trained, gated and promoted to champion.

    Runs through the same code location, instance (PostgreSQL) and MLflow server as the served
    tests, with the in-process executor to keep it short. Its data home is separate from the
    served deployment's, so the inbox sensor there sees only the files the served test drops.
    """
    require_model_code()
    started = time.monotonic()
    home = deployment.root / "training_home"
    training = deployment.with_env(LEAD_ASSETS_HOME=str(home), LEAD_ASSETS_EXECUTOR="in_process")
    # Fixed dates and seed: the same history every time, so the promotion gate (AUC, precision
    # and recall targets) sees the same data on every day the tests run.
    first = date.fromisoformat(os.environ.get("LEAD_ASSETS_DEPLOY_TEST_HISTORY_START", "2024-09-01"))
    days = int(os.environ.get("LEAD_ASSETS_DEPLOY_TEST_HISTORY_DAYS", "45"))  # two months: a backtest
    per_day = os.environ.get("LEAD_ASSETS_DEPLOY_TEST_LEADS_PER_DAY", "400")
    last = first + timedelta(days=days - 1)
    training.cli([BIN / "lead-assets", "generate", "--start", first.isoformat(), "--days", str(days),
                  "--leads-per-day", per_day, "--seed", "7", "--labelled", "--out", str(home / "inbox"),
                  "--prefix", "history"], "generating labelled history")
    training.cli([BIN / "lead-assets", "land"], "landing the history files")
    training.materialize(["raw_leads", "cleaned_leads", "lead_features"], "building features for the history",
                         (first.isoformat(), last.isoformat()))
    training.materialize(["lead_scoring_model", "champion_model"], "training and promoting a champion")

    from mlflow import MlflowClient

    champion = MlflowClient(tracking_uri=deployment.services.mlflow_uri).get_model_version_by_alias(
        "lead_scoring", "champion")
    return Trained(deployment=training, first_day=first.isoformat(), last_day=last.isoformat(),
                   version=str(champion.version), seconds=time.monotonic() - started)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()
