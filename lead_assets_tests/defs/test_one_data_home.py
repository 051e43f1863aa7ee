"""One data home moves everything: the IO managers, the model registry and MLflow tracking.

A warehouse and a tracking URI that differ from the environment's are set in one place only
(the ``lead_home`` resource of ``Definitions``, or a run's config for ``lead_home``); every
Parquet file, model profile, MLflow run and registry alias must appear there, and nothing
under the environment's home.
"""

from datetime import date

import pandas as pd
from dagster import AssetKey, Definitions
import pytest

from lead_assets.core.inbox import ledger

from lead_assets.core.leads import synth

from lead_assets.core.store import warehouse
from lead_assets.core.store.home import LeadHome, profile_path
from lead_assets.definitions import build_definitions, defs
from lead_assets.defs.resources import LeadHomeResource, resources_for
from lead_assets_tests.factories import raw_leads as make_raw

pytestmark = pytest.mark.slow(seconds=25)  # started first by make test (conftest.py)

FIRST, TODAY = date(2021, 7, 1), date(2026, 11, 24)
RANGE = {"dagster/asset_partition_range_start": "2021-07-01", "dagster/asset_partition_range_end": "2021-08-09"}
SCORE = {"dagster/asset_partition_range_start": "2021-08-01", "dagster/asset_partition_range_end": "2021-08-03"}


def land_history(home) -> None:
    """40 labelled days the default promotion gate accepts (as in test_end_to_end)."""
    history = synth.generate_leads("2021-07-01", 40, 150, seed=21, labelled=True)
    for path in synth.write_daily_files(history, home.inbox.path, prefix="history"):
        ledger.receive(home, home.inbox / path.name, FIRST, TODAY)


def run(definitions: Definitions, instance, keys, tags=None, run_config=None):
    job = definitions.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[AssetKey(k) for k in keys], tags=tags,
                                    run_config=run_config)
    assert result.success
    return result


def test_a_home_set_only_in_definitions_holds_every_file_and_run(lead_home, instance, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    elsewhere = tmp_path / "elsewhere"
    tracking = f"sqlite:///{elsewhere / 'mlflow.db'}"
    project = build_definitions()
    moved = Definitions(
        assets=project.assets, asset_checks=project.asset_checks, executor=project.executor,
        resources=resources_for(LeadHomeResource(warehouse=str(elsewhere / "warehouse"), mlflow_tracking_uri=tracking)),
    )
    land_history(lead_home)  # the landing zone stays where the environment says

    run(moved, instance, ["raw_leads", "cleaned_leads", "lead_features"], RANGE)
    training = run(moved, instance, ["lead_scoring_model", "champion_model"])
    run(moved, instance, ["scored_leads"], SCORE)

    moved_warehouse = elsewhere / "warehouse"
    for asset in ("raw_leads", "cleaned_leads", "lead_features"):
        assert len(warehouse.existing_partitions(moved_warehouse, asset)) == 40, asset
    assert warehouse.existing_partitions(moved_warehouse, "scored_leads") == ["2021-08-01", "2021-08-02", "2021-08-03"]
    info = training.output_for_node("lead_scoring_model")
    assert (moved_warehouse / "lead_scoring_model.json").exists() and (moved_warehouse / "champion_model.json").exists()
    assert profile_path(LeadHome.resolve(warehouse=str(moved_warehouse)), info["version"]).exists()
    assert not any(lead_home.warehouse.iterdir()), "the environment's warehouse got files"

    client = MlflowClient(tracking_uri=tracking)
    run_info = client.get_run(info["mlflow_run_id"]).info
    assert run_info.status == "FINISHED"
    assert client.get_experiment(run_info.experiment_id).name == "lead_scoring"
    assert str(client.get_model_version_by_alias("lead_scoring", "champion").version) == info["version"]
    assert not (lead_home.root / "mlflow" / "mlflow.db").exists(), "the environment's MLflow store was used"
    mlflow.set_tracking_uri(None)


def test_run_config_for_lead_home_moves_the_io_managers_too(lead_home, instance, tmp_path):
    path = lead_home.inbox / "a.csv"
    pd.concat([make_raw(6, "2021-07-05"), make_raw(4, "2021-07-06", seed=1)]).to_csv(path.path, index=False)
    ledger.receive(lead_home, path, FIRST, TODAY)
    moved = tmp_path / "deployment" / "warehouse"
    run(defs, instance, ["raw_leads", "cleaned_leads"], {
        "dagster/asset_partition_range_start": "2021-07-05", "dagster/asset_partition_range_end": "2021-07-06"},
        run_config={"resources": {"lead_home": {"config": {"warehouse": str(moved)}}}})
    assert warehouse.existing_partitions(moved, "cleaned_leads") == ["2021-07-05", "2021-07-06"]
    assert len(warehouse.read_partitions(moved, "raw_leads")) == 10
    assert not any(lead_home.warehouse.iterdir()), "the IO manager ignored the configured home"
