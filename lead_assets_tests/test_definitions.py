"""The code location loads, validates, and keeps heavy libraries out of its import."""

import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_have_the_public_asset_keys():
    from lead_assets.definitions import defs

    keys = set(defs.resolve_all_asset_keys())
    assert {AssetKey(k) for k in ("raw_leads", "cleaned_leads", "lead_features", "lead_scoring_model",
                                  "scored_leads")} <= keys
    graph = defs.resolve_asset_graph()
    for key in ("raw_leads", "cleaned_leads", "lead_features", "scored_leads"):
        node = graph.get(AssetKey(key))
        assert node.partitions_def is not None and node.backfill_policy is not None
        assert node.backfill_policy.max_partitions_per_run is None  # single run per range
    assert defs.resolve_sensor_def("inbox_sensor")


def test_dagster_definitions_validate(lead_home):
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_location_import_is_light():
    code = ("import sys, lead_assets.definitions; "
            "print(','.join(m for m in ('mlflow','great_expectations','catboost','matplotlib','sklearn') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == ""
