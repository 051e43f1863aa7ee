"""Served (issue #23): `make dev` with a champion, a file dropped, and the scores where sales work.

With only a file dropped in the inbox and the daemon doing the rest, the day's rows appear in
the outbox file and the CRM table (the embedded SQLite; the deploy test checks PostgreSQL);
`lead-assets serve`'s call list shows them best first in headless Chromium with the capacity
line, a filter changes the list, the CSV download is `scored_leads` for those leads, and the
page is read on a phone's width as cards. Then a new champion is promoted: the rescore run
replaces the table's rows in place (same leads, the new version) and its `crm_export`
materialization carries the bucket transition table. About three minutes.
"""

import os
import urllib.request
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
import pytest

from lead_assets.core.leads import synth
from lead_assets.core.release import registry
from lead_assets.core.store import warehouse
from lead_assets_tests.browser import chromium
from lead_assets_tests.served import drop, lead_assets_serve, make_dev, register_model, train_champion, wait_for

pytestmark = pytest.mark.slow(seconds=115)  # started first by make test (conftest.py)

DAYS = ["2021-08-20", "2021-08-21"]
CAPACITY = 25


def _scored(home) -> pd.DataFrame:
    return warehouse.read_partitions(home.warehouse, "scored_leads", DAYS)


def _table(root: Path) -> pd.DataFrame:
    engine = sa.create_engine(f"sqlite:///{root / 'crm' / 'lead_scores.db'}")
    try:
        return pd.read_sql(sa.text("SELECT * FROM lead_scores WHERE lead_day IN (:a, :b) ORDER BY lead_day, day_rank"),
                           engine, params={"a": DAYS[0], "b": DAYS[1]}, dtype={"lead_id": str, "model_version": str})
    except sa.exc.OperationalError:  # no table yet
        return pd.DataFrame()
    finally:
        engine.dispose()


def test_a_dropped_file_reaches_the_outbox_the_table_and_the_call_list_and_a_promotion_replaces_it(
        lead_home, tmp_path, monkeypatch):
    import mlflow

    from lead_assets.demo import ensure_dagster_home

    root = Path(str(lead_home.root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster"))  # train in the instance make dev will use
    ensure_dagster_home(lead_home)
    train_champion(lead_home)
    mlflow.set_tracking_uri(lead_home.mlflow_tracking_uri)
    first = registry.champion_version("lead_scoring")
    challenger = register_model(lead_home, seed=7, depth=3)  # registered before the servers open the store
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("LEAD_ASSETS_DAILY_CAPACITY", str(CAPACITY))
    new = synth.generate_leads(DAYS[0], len(DAYS), 120, seed=77, labelled=False)

    with make_dev(root, tmp_path / "make-dev.log") as (process, port):
        drop(lead_home, "web_leads.csv", new.to_csv(index=False))
        wait_for("the dropped leads in the CRM table", lambda: len(_table(root)) == len(new), process, 300, every=2)
        scored = _scored(lead_home)
        table = _table(root)
        assert len(scored) == len(new) and set(scored["model_version"]) == {first}
        assert set(table["lead_id"]) == set(scored["lead_id"]) and set(table["model_version"]) == {first}
        for day, rows in table.groupby("lead_day"):
            outbox = pd.read_csv(root / "outbox" / f"{day}.csv", dtype={"lead_id": str, "model_version": str})
            assert outbox["lead_id"].tolist() == rows["lead_id"].tolist()  # best first, as the table ranks
            assert outbox["score"].is_monotonic_decreasing and outbox["day_rank"].tolist() == list(
                range(1, len(outbox) + 1))
            assert outbox["in_capacity"].sum() == min(CAPACITY, len(outbox))
        by_lead = scored.set_index("lead_id")
        assert (table.set_index("lead_id").loc[by_lead.index, "score"] == by_lead["score"]).all()

        with lead_assets_serve(root, tmp_path / "serve.log", "--poll-seconds", "1") as (server, serve_port):
            wait_for("the call list to answer", lambda: _answers(serve_port), server, 120, every=0.5)
            with chromium() as browser:
                _read_the_call_list(browser, serve_port, scored, tmp_path)

        with DagsterInstance.from_config(str(root / "dagster")) as instance:
            registry.set_champion("lead_scoring", challenger)  # the promotion: the sensor rescores every day
            wait_for("the table rescored in place by the new champion",
                     lambda: set(_table(root).get("model_version", [])) == {challenger}, process, 300, every=2)
            rescored = _table(root)
            assert sorted(rescored["lead_id"]) == sorted(table["lead_id"])  # the same leads, replaced
            assert set(_scored(lead_home)["model_version"]) == {challenger}
            # the rows are upserted before crm_export's materialization is recorded: wait for it
            event = wait_for("the rescore run's crm_export of the dropped days", lambda: _rescore_export(instance),
                             process, 120, every=1)
            metadata = event.asset_materialization.metadata
            transitions = metadata["bucket_transitions"].value
            assert transitions.splitlines()[0].replace(" ", "").startswith("|old_bucket|new_bucket|leads|"), transitions
            assert metadata["changed"].value > 0 and "in_capacity_changed_share" in metadata


def _rescore_export(instance):
    """The latest crm_export event of the first dropped day, when a rescore_leads run recorded it."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(AssetKey("crm_export"), asset_partitions=[DAYS[0]]), limit=1).records
    if records and instance.get_run_by_id(records[0].run_id).job_name == "rescore_leads":
        return records[0].event_log_entry
    return None


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/calls?day={DAYS[0]}", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _read_the_call_list(browser, port: int, scored: pd.DataFrame, tmp_path: Path) -> None:
    day = DAYS[0]
    expected = scored[scored["created_date"].dt.strftime("%Y-%m-%d") == day].set_index("lead_id")
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.goto(f"http://127.0.0.1:{port}/calls?day={day}")
    ranks = [int(t) for t in page.locator('tbody td[data-label="#"]').all_inner_texts()]
    scores = [int(t) for t in page.locator('tbody td[data-label="score"]').all_inner_texts()]
    assert ranks == list(range(1, len(expected) + 1)) and scores == sorted(scores, reverse=True)
    leads = page.locator('tbody td[data-label="lead"]').all_inner_texts()
    assert sorted(leads) == sorted(expected.index) and scores == expected.loc[leads, "score"].tolist()
    line = page.locator("tr.line")
    assert line.count() == 1 and line.is_visible() and f"the {CAPACITY} leads above it" in line.inner_text()
    above = page.evaluate("[...document.querySelectorAll('tbody tr')].findIndex(r => r.classList.contains('line'))")
    assert above == CAPACITY
    page.screenshot(path=str(tmp_path / "call_list.png"), full_page=False)

    bucket = expected["bucket"].value_counts().idxmax()
    page.select_option('select[name="bucket"]', bucket)
    page.click('button[type="submit"]')
    page.wait_for_url(f"**bucket={bucket}**")
    shown = page.locator('tbody td[data-label="bucket"]').all_inner_texts()
    assert shown == [bucket] * int((expected["bucket"] == bucket).sum())  # the filter changed the list
    with page.expect_download() as download:
        page.click("text=Download CSV")
    downloaded = pd.read_csv(download.value.path(), dtype={"lead_id": str, "model_version": str})
    chosen = expected[expected["bucket"] == bucket]
    assert sorted(downloaded["lead_id"]) == sorted(chosen.index)
    by_lead = downloaded.set_index("lead_id").loc[chosen.index]
    assert by_lead["score"].tolist() == chosen["score"].tolist()
    assert by_lead["bucket"].tolist() == chosen["bucket"].tolist()
    assert by_lead["model_version"].tolist() == chosen["model_version"].tolist()
    page.close()

    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.goto(f"http://127.0.0.1:{port}/calls?day={day}")
    assert phone.locator("thead").is_hidden()  # one card per lead, each cell labelled
    card = phone.locator("tbody tr:not(.line)").first.bounding_box()
    assert card["width"] <= 390 and phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(tmp_path / "call_list_phone.png"))
    phone.close()
    assert min(os.path.getsize(tmp_path / name) for name in ("call_list.png", "call_list_phone.png")) > 10_000
