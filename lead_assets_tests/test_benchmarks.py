"""The benchmark harness at --quick size, so `make bench` cannot rot between releases."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow(seconds=170)  # started first by make test (conftest.py)

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The harness as `make bench` runs it: its own data homes, no tracking store from this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") or k == "MLFLOW_ENABLE_ASYNC_LOGGING"}
    return subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(os.environ.get("LEAD_ASSETS_SKIP_BENCH_TEST") == "1", reason="running inside make bench")
def test_quick_benchmark_produces_every_measure(tmp_path):
    out, report = tmp_path / "results.json", tmp_path / "BENCH.md"
    result = bench("--only", "training,scoring", "--json", str(out), "--out", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    names = {(r["section"], r["name"].split(",")[0]) for r in json.loads(out.read_text())["results"]}
    assert {("Training", "pooled backtest AUC (synthetic)"), ("Scoring throughput", "pipeline / bare"),
            ("Scoring throughput", "bare predict_proba only"), ("Peak memory", "scoring 5")} <= names
    text = report.read_text()
    assert "Machine:" in text and "| pipeline / bare |" in text


@pytest.mark.skipif(os.environ.get("LEAD_ASSETS_SKIP_BENCH_TEST") == "1", reason="running inside make bench")
def test_quick_tick_benchmark_measures_a_tick_with_and_without_history(tmp_path):
    out = tmp_path / "results.json"
    result = bench("--only", "tick", "--json", str(out), "--out", str(tmp_path / "BENCH.md"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    names = [r["name"] for r in json.loads(out.read_text())["results"] if r["section"] == "Inbox sensor tick"]
    assert "idle tick, 0 files landed" in names and "idle tick, 200 files landed" in names
    assert any(n.startswith("tick landing one 10,000-row file") for n in names)


@pytest.mark.skipif(os.environ.get("LEAD_ASSETS_SKIP_BENCH_TEST") == "1", reason="running inside make bench")
def test_quick_scale_benchmark_rescores_streamed_and_at_once(tmp_path):
    out = tmp_path / "results.json"
    result = bench("--only", "scale", "--json", str(out), "--out", str(tmp_path / "BENCH.md"))
    assert result.returncode == 0, result.stderr[-3000:]
    found = {r["name"]: r for r in json.loads(out.read_text())["results"] if r["section"] == "Scale: range runs"}
    assert {"peak RSS, streamed / at once", "duration, streamed / at once", "2x the leads: peak RSS ratio"} <= set(found)
    from benchmarks.run import SIZES

    quick = SIZES["quick"]
    small = quick["scale_per_day"] * quick["scale_small_days"]
    streamed = found[f"rescore {small:,} leads ({quick['scale_small_days']} days), one run, streamed: peak RSS"]
    assert 0 < streamed["value"] < 1024 and streamed["met"]
