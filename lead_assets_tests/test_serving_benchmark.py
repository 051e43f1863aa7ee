"""The online-scoring benchmark at --quick size, so its part of `make bench` cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow(seconds=45)  # started first by make test (conftest.py)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("LEAD_ASSETS_SKIP_BENCH_TEST") == "1", reason="running inside make bench")
def test_quick_serving_benchmark_measures_latency_throughput_and_the_batch(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--only", "serving", "--json", str(out),
                             "--out", str(tmp_path / "BENCH.md")], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = {r["name"]: r for r in json.loads(out.read_text())["results"] if r["section"] == "Online scoring"}
    names = list(measured)
    assert any(n.startswith("one lead with reasons, lead_id derived: p50") for n in names)
    assert any(n.startswith("one lead with reasons, lead_id given: p99") for n in names)
    assert any(n.startswith("one request of 200 leads") for n in names)
    assert any(n.startswith("batch path per lead") for n in names)
    assert "one lead, in process: lead_ids (deriving one id)" in names
    errors = next(r for n, r in measured.items() if n.endswith("concurrent clients: errors"))
    assert errors["value"] == 0
