"""The README's CLI backfill command, run for real: a partition range is one run."""

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
from dagster import DagsterInstance
import pytest

from lead_assets.core.inbox import ledger

from lead_assets.core.store import warehouse
from lead_assets.demo import ensure_dagster_home
from lead_assets_tests.factories import raw_leads

pytestmark = pytest.mark.slow(seconds=15)  # started first by make test (conftest.py)

ROOT = Path(__file__).resolve().parents[1]


def test_partition_range_backfill_from_the_cli(lead_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    dagster_home = ensure_dagster_home(lead_home)
    path = lead_home.inbox / "history.csv"
    pd.concat([raw_leads(5, "2021-07-02"), raw_leads(3, "2021-07-04", seed=1)]).to_csv(path.path, index=False)
    ledger.receive(lead_home, path, date(2021, 7, 1), date(2026, 11, 24))

    command = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "lead_assets.definitions",
               "--select", "raw_leads,cleaned_leads,lead_features", "--partition-range", "2021-07-01...2021-07-05"]
    result = subprocess.run(command, cwd=ROOT, env=dict(os.environ, DAGSTER_HOME=dagster_home),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    assert warehouse.existing_partitions(lead_home.warehouse, "lead_features") == [
        f"2021-07-0{d}" for d in range(1, 6)]
    assert len(warehouse.read_partitions(lead_home.warehouse, "lead_features")) == 8
    with DagsterInstance.from_config(dagster_home) as instance:
        runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].is_success
