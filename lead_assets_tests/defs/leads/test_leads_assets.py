"""raw_leads -> cleaned_leads -> lead_features through Dagster: one day, a range, re-runs."""

from datetime import date

import pandas as pd
from dagster import materialize

from lead_assets.core.inbox import ledger

from lead_assets.core.store import warehouse
from lead_assets.core.schema import LEAD_ID
from lead_assets.defs.leads.cleaning import cleaned_leads
from lead_assets.defs.leads.features import lead_features
from lead_assets.defs.inbox.ingest import raw_leads
from lead_assets.defs.resources import LeadHomeResource, WarehouseIOManager
from lead_assets_tests.factories import raw_leads as make_raw

FIRST, TODAY = date(2021, 7, 1), date(2026, 11, 24)
ASSETS = [raw_leads, cleaned_leads, lead_features]


def resources():
    return {"lead_home": (home := LeadHomeResource()), "io_manager": WarehouseIOManager(lead_home=home)}


def land(home, name, frame):
    path = home.inbox / name
    frame.to_csv(path.path, index=False)
    return ledger.receive(home, path, FIRST, TODAY)


def range_tags(first, last):
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def test_one_day_partition(lead_home, instance):
    land(lead_home, "a.csv", pd.concat([make_raw(6, "2021-07-05"), make_raw(4, "2021-07-06", seed=1)]))
    result = materialize(ASSETS, partition_key="2021-07-05", resources=resources(), instance=instance)
    assert result.success
    features = warehouse.read_partitions(lead_home.warehouse, "lead_features")
    assert len(features) == 6
    assert warehouse.existing_partitions(lead_home.warehouse, "raw_leads") == ["2021-07-05"]


def test_a_range_is_one_run_and_writes_every_day(lead_home, instance):
    land(lead_home, "a.csv", pd.concat([make_raw(6, "2021-07-05"), make_raw(4, "2021-07-07", seed=1)]))
    result = materialize(ASSETS, resources=resources(), instance=instance, tags=range_tags("2021-07-05", "2021-07-08"))
    assert result.success
    assert warehouse.existing_partitions(lead_home.warehouse, "lead_features") == [
        "2021-07-05", "2021-07-06", "2021-07-07", "2021-07-08"]
    per_day = {d: len(warehouse.read_partitions(lead_home.warehouse, "raw_leads", [d]))
               for d in warehouse.existing_partitions(lead_home.warehouse, "raw_leads")}
    assert per_day == {"2021-07-05": 6, "2021-07-06": 0, "2021-07-07": 4, "2021-07-08": 0}
    assert len(instance.get_runs()) == 1


def test_same_leads_in_two_files_are_one_lead_and_reruns_replace(lead_home, instance):
    leads = make_raw(8, "2021-07-05")
    land(lead_home, "a.csv", leads.iloc[:5])
    land(lead_home, "b.csv", leads.iloc[3:])
    for _ in range(2):
        assert materialize(ASSETS, partition_key="2021-07-05", resources=resources(), instance=instance).success
    raw = warehouse.read_partitions(lead_home.warehouse, "raw_leads")
    assert len(raw) == 8 and raw[LEAD_ID].is_unique
    assert raw.set_index(LEAD_ID).loc[raw[LEAD_ID], "source_file"].isin(["a.csv", "b.csv"]).all()


def test_rejected_rows_are_kept_with_their_reason(lead_home, instance):
    frame = make_raw(5, "2021-07-05")
    frame.loc[0, "referred_lead"] = 7
    frame.loc[1, "created_date"] = "garbage"
    entry = land(lead_home, "mixed.csv", frame)
    assert materialize(ASSETS, partition_key="2021-07-05", resources=resources(), instance=instance).success
    day = warehouse.read_partitions(lead_home.warehouse, "rejected_leads", ["2021-07-05"])
    undated = warehouse.read_partitions(lead_home.warehouse, "rejected_leads/undated", [entry.sha256])
    assert day[["source_row", "rule"]].values.tolist() == [[2, "not_binary"]]
    assert undated[["source_row", "rule"]].values.tolist() == [[3, "unparseable_date"]]
    raw = warehouse.read_partitions(lead_home.warehouse, "raw_leads")
    assert len(raw) + len(day) + len(undated) == entry.rows_read
