"""The benchmark harness at --quick size, so `make bench` cannot rot between releases."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("LEAD_ASSETS_SKIP_BENCH_TEST") == "1", reason="running inside make bench")
def test_quick_benchmark_produces_every_measure(tmp_path):
    out, report = tmp_path / "results.json", tmp_path / "BENCH.md"
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--only", "training,scoring",
                             "--json", str(out), "--out", str(report)], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    names = {(r["section"], r["name"].split(",")[0]) for r in json.loads(out.read_text())["results"]}
    assert {("Training", "holdout AUC (synthetic)"), ("Scoring throughput", "pipeline / bare"),
            ("Scoring throughput", "bare predict_proba only"), ("Peak memory", "scoring 5")} <= names
    text = report.read_text()
    assert "Machine:" in text and "| pipeline / bare |" in text
