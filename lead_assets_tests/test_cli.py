"""lead-assets commands: clear one-line errors, SQL over the warehouse views (stopped by Ctrl-C and a
time limit), serve's port checks, init's instance settings."""

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from lead_assets.cli import main
from lead_assets.core.store import warehouse

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
    from lead_assets.core.inbox import ledger
    from lead_assets_tests.factories import raw_leads

    path = lead_home.inbox / "wrong.csv"
    raw_leads(3, "2021-07-09").to_csv(path.path, index=False)
    entry = ledger.receive(lead_home, path, date(2021, 7, 1), date(2026, 11, 24))
    assert main(["withdraw", entry.sha256[:12], "--reason", "sent twice"]) == 0
    out = capsys.readouterr().out
    assert "wrong.csv" in out and "2021-07-09" in out
    assert ledger.landed_entries(lead_home) == []
    assert main(["withdraw", "wrong.csv"]) == 2
    assert "matches 0 landed files" in capsys.readouterr().err


def test_withdraw_refuses_an_empty_or_too_short_name(lead_home, capsys):
    """``withdraw ""`` matched every landed file (issue #20): with one file landed, it withdrew it."""
    from lead_assets.core.inbox import ledger
    from lead_assets_tests.factories import raw_leads

    path = lead_home.inbox / "only.csv"
    raw_leads(3, "2021-07-09").to_csv(path.path, index=False)
    ledger.receive(lead_home, path, date(2021, 7, 1), date(2026, 11, 24))
    for key in ("", "  ", "a"):
        assert main(["withdraw", key]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("sha256" in err or "name" in err), err
    assert [e.file for e in ledger.landed_entries(lead_home)] == ["only.csv"]


def test_withdraw_of_an_outcomes_file_says_what_happens_next(lead_home, capsys):
    from lead_assets.core.inbox import ledger

    path = lead_home.inbox / "crm.csv"
    path.write_text("lead_id,app_complete_flag\na1,1\n")
    ledger.receive(lead_home, path, date(2021, 7, 1), date(2026, 11, 24))
    assert main(["withdraw", "crm.csv"]) == 0
    assert "lead_outcomes" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- serve
@pytest.mark.parametrize("port", ["70000", "0", "-1", "5050x"])
def test_serve_refuses_a_port_that_is_not_one(port, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--port", port])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--port" in err and "not a port number" in err


def test_serve_fails_at_once_when_the_port_is_taken_before_loading_anything(lead_home, monkeypatch, capsys):
    import lead_assets.serving

    started = []
    monkeypatch.setattr(lead_assets.serving, "serve", lambda *a, **k: started.append(a))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err and err.count("\n") == 1
    assert started == []  # neither MLflow nor the model was touched


def test_serve_as_a_user_runs_it_with_the_port_taken(lead_home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        began = time.monotonic()
        result = subprocess.run(CLI + ["serve", "--port", str(port)], capture_output=True, text=True, timeout=60)
        took = time.monotonic() - began
    assert result.returncode == 2 and "already in use" in result.stderr and "Traceback" not in result.stderr
    assert "serving" not in result.stdout and took < 20, took  # the model was never loaded


# ------------------------------------------------------------------------------------- query
ENDLESS = "SELECT count(*) AS n FROM range(100000000) a, range(100000000) b WHERE a.range + b.range = 7"


def test_query_stops_at_its_time_limit(lead_home, capsys):
    began = time.monotonic()
    assert main(["query", ENDLESS, "--timeout", "0.5"]) == 2
    assert time.monotonic() - began < 10
    err = capsys.readouterr().err
    assert "query stopped after 0.5 s" in err and "--timeout" in err and err.count("\n") == 1


def test_query_stops_on_ctrl_c(lead_home):
    process = subprocess.Popen(CLI + ["query", ENDLESS, "--timeout", "600"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # imported and inside DuckDB by now
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130 and "query interrupted (Ctrl-C)" in err and "Traceback" not in err


# -------------------------------------------------------------------------------------- init
def test_init_writes_an_instance_with_run_monitoring_and_retries(lead_home, capsys):
    from dagster import DagsterInstance

    assert main(["init"]) == 0
    instance = DagsterInstance.get()
    try:
        assert instance.run_monitoring_enabled and instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert not instance.run_retries_retry_on_asset_or_op_failure
    finally:
        instance.dispose()


def test_init_completes_an_older_lead_assets_instance_and_says_so(lead_home, capsys):
    from lead_assets.demo import BASE_YAML

    config = Path(str(lead_home.dagster_home)) / "dagster.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(BASE_YAML)  # what init wrote before run monitoring
    assert main(["init"]) == 0
    assert "added run_monitoring and run_retries" in capsys.readouterr().err
    text = config.read_text()
    assert text.startswith(BASE_YAML) and "run_monitoring:" in text and "run_retries:" in text
    assert main(["init"]) == 0 and capsys.readouterr().err == ""  # once
    assert config.read_text() == text


def test_init_tells_what_to_add_to_a_users_own_instance(lead_home, capsys):
    config = Path(str(lead_home.dagster_home)) / "dagster.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("telemetry:\n  enabled: false\nrun_retries:\n  enabled: false\n")
    assert main(["init"]) == 0
    err = capsys.readouterr().err
    assert "has no run_monitoring" in err and "run_monitoring:\n  enabled: true" in err
    assert "run_retries is off" in err
    assert config.read_text() == "telemetry:\n  enabled: false\nrun_retries:\n  enabled: false\n"  # never rewritten
