"""Shared fixtures: a temporary data home per test, and the real CodePro files when present."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

CODEPRO = Path(os.environ.get("LEAD_ASSETS_CODEPRO_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "codepro")).resolve()


@pytest.fixture(autouse=True)
def _no_tracking_uri_leaks():
    """``mlflow.set_tracking_uri`` writes ``MLFLOW_TRACKING_URI`` into this process's environment;
    put it back after every test, so no later test (nor a subprocess it starts) inherits a data
    home's tracking store."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture
def codepro() -> Path:
    """The real case-study files, read in place (never copied); skip cleanly when absent."""
    if not (CODEPRO / "leads_sample_100.csv").exists():
        pytest.skip(f"real CodePro data not found at {CODEPRO}")
    return CODEPRO


@pytest.fixture
def lead_home(tmp_path, monkeypatch):
    """A fresh LEAD_ASSETS_HOME (and Dagster/MLflow under it) for one test."""
    from lead_assets.core.home import LeadHome

    root = tmp_path / "home"
    monkeypatch.setenv("LEAD_ASSETS_HOME", str(root))
    for name in ("LEAD_ASSETS_INBOX", "LEAD_ASSETS_LANDING", "LEAD_ASSETS_QUARANTINE", "LEAD_ASSETS_LEDGER",
                 "LEAD_ASSETS_WAREHOUSE", "MLFLOW_TRACKING_URI", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    return LeadHome.resolve().ensure()
