"""The read-only query layer: views over the warehouse, no file writes or reads elsewhere, safe CSV."""

import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from lead_assets import views
from lead_assets.core.store import warehouse


@pytest.fixture
def home_with_leads(lead_home):
    frame = pd.DataFrame({"lead_id": ["=HYPERLINK(\"http://x\",\"y\")", "b"],
                          "city_mapped": ["+cmd|' /C calc'!A0", "pune"],
                          "created_date": pd.to_datetime(["2021-07-05", "2021-07-05"]), "score": [-3, 4]})
    warehouse.write_partition(lead_home.warehouse, "raw_leads", "2021-07-05", frame)
    (lead_home.ledger / "x.json").write_text(json.dumps({"file": "a.csv", "status": "accepted"}))
    return lead_home


def test_views_answer_a_select(home_with_leads):
    frame = views.run_query(home_with_leads, "SELECT count(*) AS n FROM raw_leads")
    assert frame["n"].tolist() == [2]
    assert views.run_query(home_with_leads, "SELECT status FROM ingest_log")["status"].tolist() == ["accepted"]


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1 AS x) TO '{ledger}/x.json'",
    "COPY raw_leads TO '{warehouse}/raw_leads/2021-07-05.parquet'",
    "SELECT 1; COPY (SELECT 1) TO '{ledger}/y.json'",
    "CREATE TABLE t AS SELECT 1",
    "ATTACH '{warehouse}/evil.db'",
    "INSTALL httpfs",
])
def test_no_statement_can_write(home_with_leads, sql):
    home = home_with_leads
    before = sorted(p.name for p in home.ledger.iterdir()) + sorted(p.name for p in (home.warehouse / "raw_leads").iterdir())
    with pytest.raises(views.QueryError, match="only one SELECT"):
        views.run_query(home, sql.format(ledger=home.ledger, warehouse=home.warehouse))
    after = sorted(p.name for p in home.ledger.iterdir()) + sorted(p.name for p in (home.warehouse / "raw_leads").iterdir())
    assert after == before and json.loads((home.ledger / "x.json").read_text())["file"] == "a.csv"


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('{root}/../secret.txt')",
    "SELECT * FROM read_parquet('{root}/elsewhere/*.parquet')",
])
def test_no_select_can_read_outside_the_warehouse(home_with_leads, sql, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    outside = home_with_leads.root / "elsewhere"
    outside.mkdir()
    warehouse.write_partition(home_with_leads.root, "elsewhere", "x", pd.DataFrame({"a": [1]}))
    with pytest.raises(views.QueryError, match="query failed"):
        views.run_query(home_with_leads, sql.format(root=home_with_leads.root))


def test_csv_output_neutralises_formulas(home_with_leads):
    out = io.StringIO()
    views.print_frame(views.run_query(home_with_leads, "SELECT * FROM raw_leads ORDER BY lead_id"), "csv", out)
    rows = pd.read_csv(io.StringIO(out.getvalue()), dtype=str)
    assert rows["lead_id"].tolist() == ["'=HYPERLINK(\"http://x\",\"y\")", "b"]
    assert rows["city_mapped"].tolist() == ["'+cmd|' /C calc'!A0", "pune"]
    assert rows["score"].tolist() == ["-3", "4"]  # numbers stay numbers


def test_cli_and_demo_share_the_query_layer_without_an_import_circle():
    code = ("import sys, lead_assets.demo as d; assert 'lead_assets.cli' not in sys.modules, 'demo imports cli'; "
            "import lead_assets.cli as c; assert c.run_query is d.run_query")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_query_stops_at_its_time_limit_and_the_connection_is_released(home_with_leads):
    import time

    endless = "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + b.range = 7"
    began = time.monotonic()
    with pytest.raises(views.QueryError, match=r"query stopped after 0.3 s, the time limit \(--timeout 0.3\)"):
        views.run_query(home_with_leads, endless, timeout=0.3)
    assert time.monotonic() - began < 10
    assert views.run_query(home_with_leads, "SELECT count(*) AS n FROM raw_leads", timeout=30)["n"].tolist() == [2]
