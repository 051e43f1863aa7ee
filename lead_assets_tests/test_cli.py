"""lead-assets commands: clear one-line errors, SQL over the warehouse views."""

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd

from lead_assets.cli import main
from lead_assets.core import warehouse

CLI = [str(Path(sys.executable).with_name("lead-assets"))]


def test_bad_arguments_fail_with_one_line():
    result = subprocess.run(CLI + ["leads", "--date", "yesterday"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not a date" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_home_is_one_clear_line(tmp_path):
    result = subprocess.run(CLI + ["--home", str(tmp_path / "nowhere"), "query", "SELECT 1"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "no data home" in result.stderr and "Traceback" not in result.stderr


def test_query_reads_asset_views(lead_home, capsys):
    frame = pd.DataFrame({"lead_id": ["a", "b"], "created_date": pd.to_datetime(["2021-07-05", "2021-07-06"]),
                          "x": [1, 2]})
    warehouse.write_partition(lead_home.warehouse, "raw_leads", "2021-07-05", frame.iloc[:1])
    warehouse.write_partition(lead_home.warehouse, "raw_leads", "2021-07-06", frame.iloc[1:])
    assert main(["query", "SELECT count(*) AS n, sum(x) AS s FROM raw_leads", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 2, "s": 3}]
    assert main(["query", "SELECT * FROM scored_leads"]) == 2
    assert "views with data: raw_leads" in capsys.readouterr().err


def test_generate_writes_one_file_per_day(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--start", "2021-07-01", "--days", "3", "--leads-per-day", "10", "--seed", "1",
                 "--out", str(out), "--labelled"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["leads_2021-07-01.csv", "leads_2021-07-02.csv", "leads_2021-07-03.csv"]
    assert len(pd.read_csv(out / files[0])) == 10


def test_withdraw_takes_a_landed_file_back(lead_home, capsys):
    from lead_assets.core import inbox
    from lead_assets_tests.factories import raw_leads

    path = lead_home.inbox / "wrong.csv"
    raw_leads(3, "2021-07-09").to_csv(path.path, index=False)
    entry = inbox.receive(lead_home, path, date(2021, 7, 1), date(2026, 11, 24))
    assert main(["withdraw", entry.sha256[:12], "--reason", "sent twice"]) == 0
    out = capsys.readouterr().out
    assert "wrong.csv" in out and "2021-07-09" in out
    assert inbox.landed_entries(lead_home) == []
    assert main(["withdraw", "wrong.csv"]) == 2
    assert "matches 0 landed files" in capsys.readouterr().err


def test_withdraw_refuses_an_empty_or_too_short_name(lead_home, capsys):
    """``withdraw ""`` matched every landed file (issue #20): with one file landed, it withdrew it."""
    from lead_assets.core import inbox
    from lead_assets_tests.factories import raw_leads

    path = lead_home.inbox / "only.csv"
    raw_leads(3, "2021-07-09").to_csv(path.path, index=False)
    inbox.receive(lead_home, path, date(2021, 7, 1), date(2026, 11, 24))
    for key in ("", "  ", "a"):
        assert main(["withdraw", key]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("sha256" in err or "name" in err), err
    assert [e.file for e in inbox.landed_entries(lead_home)] == ["only.csv"]


def test_withdraw_of_an_outcomes_file_says_what_happens_next(lead_home, capsys):
    from lead_assets.core import inbox

    path = lead_home.inbox / "crm.csv"
    path.write_text("lead_id,app_complete_flag\na1,1\n")
    inbox.receive(lead_home, path, date(2021, 7, 1), date(2026, 11, 24))
    assert main(["withdraw", "crm.csv"]) == 0
    assert "lead_outcomes" in capsys.readouterr().out
