"""Runs that read a day and then write it hold a pool slot, so two runs cannot leave a day stale."""

from dagster import AssetKey, DagsterInstance

from lead_assets.definitions import defs
from lead_assets.demo import ensure_dagster_home


def test_raw_and_scored_leads_are_each_in_a_pool():
    pools = {key: defs.get_assets_def(AssetKey(key)).op.pool
             for key in ("raw_leads", "scored_leads")}
    assert pools == {"raw_leads": "lead_ingest", "scored_leads": "lead_scoring"}


def test_the_local_instance_gives_every_pool_one_slot(lead_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    ensure_dagster_home(lead_home)
    instance = DagsterInstance.get()
    try:
        assert instance.global_op_concurrency_default_limit == 1
    finally:
        instance.dispose()
