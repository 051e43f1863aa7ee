"""crm_export through Dagster: a scored range published to the outbox and the table, then a rescore."""

import re

import pandas as pd
from dagster import AssetKey, AssetSpec, materialize

from lead_assets.core.store import warehouse
from lead_assets.defs.scoring.crm import crm_export
from lead_assets.defs.partitions import lead_days
from lead_assets.defs.resources import LeadHomeResource, resources_for
from lead_assets_tests.core.scoring.test_crm import scored

DAYS = ["2021-08-01", "2021-08-02"]
RANGE = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}


def write_scored(home, version: str, probabilities: dict[str, list[float]]):
    for day, p in probabilities.items():
        warehouse.write_partition(home.warehouse, "scored_leads", day,
                                  scored(day, p, version=version, ids=[f"{day}-{i}" for i in range(len(p))]))


def publish(instance, config=None):
    written = AssetSpec("scored_leads", partitions_def=lead_days)  # written straight to the warehouse
    result = materialize([written, crm_export], selection=[AssetKey("crm_export")], instance=instance,
                         resources=resources_for(LeadHomeResource()), tags=RANGE,
                         run_config={"ops": {"crm_export": {"config": config or {}}}})
    assert result.success
    materializations = result.asset_materializations_for_node("crm_export")
    assert [m.partition for m in materializations] == DAYS  # one run, a materialization per day
    (check,) = result.get_asset_check_evaluations()
    return materializations[0].metadata, check


def test_a_range_is_published_per_day_and_a_rescore_replaces_it_in_place(lead_home, instance, monkeypatch):
    import sqlalchemy as sa

    monkeypatch.setenv("LEAD_ASSETS_DAILY_CAPACITY", "2")
    write_scored(lead_home, "1", {DAYS[0]: [0.9, 0.7, 0.5, 0.2], DAYS[1]: [0.85, 0.1]})
    meta, check = publish(instance)
    assert meta["capacity"].value == 2 and meta["in_capacity_recent_days"].value == 3
    assert "no lead was published before" in meta["bucket_transitions"].value and check.passed
    outbox = lead_home.root / "outbox"
    first_day = pd.read_csv(outbox / f"{DAYS[0]}.csv")
    assert first_day["score"].tolist() == [90, 70, 50, 20] and first_day["in_capacity"].tolist() == [1, 1, 0, 0]
    engine = sa.create_engine(f"sqlite:///{lead_home.root / 'crm' / 'lead_scores.db'}")
    assert len(pd.read_sql("SELECT * FROM lead_scores", engine)) == 6

    write_scored(lead_home, "2", {DAYS[0]: [0.2, 0.7, 0.9, 0.65], DAYS[1]: [0.85, 0.1]})  # a new champion
    meta, check = publish(instance, {"daily_capacity": 1, "max_bucket_changed_share": 0.25})
    assert meta["capacity"].value == 1 and meta["bucket_changed"].value == 3
    assert re.search(r"\| hot +\| junk +\| +1 \|", meta["bucket_transitions"].value)
    assert not check.passed and check.severity.value == "WARN"  # half the leads moved: the lists reshuffled
    assert meta["changed_leads"].value == ["2021-08-01-0", "2021-08-01-2", "2021-08-01-3"]
    stored = pd.read_sql("SELECT * FROM lead_scores ORDER BY lead_day, day_rank", engine)
    assert len(stored) == 6 and set(stored["model_version"]) == {"2"}
    assert stored[stored["lead_day"] == DAYS[0]]["in_capacity"].tolist() == [1, 0, 0, 0]
    assert pd.read_csv(outbox / f"{DAYS[0]}.csv")["model_version"].tolist() == [2, 2, 2, 2]
