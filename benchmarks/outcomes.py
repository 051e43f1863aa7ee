"""Outcome handling in bounded memory (issue #20): parsing a big outcomes file, and a range run's chunks.

    python -m benchmarks.outcomes                 # full size (40 MB of rejected rows), this checkout
    python -m benchmarks.outcomes --code DIR      # the same measure on another checkout (e.g. main)
    python -m benchmarks.run --only outcomes      # as a section of `make bench`

Each measure runs in a fresh interpreter and data home; peak RSS is that process's own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import ROOT, Result, progress, run_python

PARSE = """
import sys
sys.path.insert(0, {code!r})  # the checkout measured (python -c puts the working folder first)
import os, time
from datetime import date
from lead_assets.core.inbox import ledger
from lead_assets.core.leads import landed
from lead_assets.core.store.home import LeadHome

home = LeadHome.resolve().ensure()
path = home.inbox / "crm_outcomes.csv"
with open(path.path, "w") as handle:
    handle.write("lead_id,app_complete_flag,outcome_at\\n")
    row, written = 0, 0
    while written < {bytes}:
        line = f"crm-{{row:09d}},7,2021-08-{{1 + row % 28:02d}} 10:00:00\\n"  # 7: not a label, every row rejected
        handle.write(line)
        written += len(line)
        row += 1
size = os.path.getsize(path.path)
first, today = date(2021, 7, 1), date(2026, 12, 1)
entry = ledger.receive(home, path, first, today)
assert entry.status == "accepted", entry.detail
(record,) = ledger.landed_entries(home, kind="outcomes")
started = time.perf_counter()
if {parse}:
    parsed = landed.load_parsed(home, record, first, today, parse=landed._parse_outcomes)
seconds = time.perf_counter() - started
RESULT = {{"rows": row, "bytes": size, "seconds": seconds}}
"""

CHUNKS = """
import time
from datetime import date
import pandas as pd
from lead_assets.core.inbox import ledger
from lead_assets.core.leads import landed, synth
from lead_assets.core.store.home import LeadHome

home = LeadHome.resolve().ensure()
first, today = date(2021, 7, 1), date(2026, 12, 1)
days = [f"2021-08-{{d:02d}}" for d in range(1, {days} + 1)]
leads = synth.generate_leads(days[0], len(days), 100, seed=3, labelled=False)
leads.insert(0, "lead_id", [f"lead-{{i}}" for i in range(len(leads))])
(home.inbox / "leads.csv").write_text(leads.to_csv(index=False))
ledger.receive(home, home.inbox / "leads.csv", first, today)
events = pd.DataFrame({{"lead_id": [f"other-{{i}}" for i in range({events})] + list(leads["lead_id"]),
                       "app_complete_flag": 1}})
(home.inbox / "crm.csv").write_text(events.to_csv(index=False))
ledger.receive(home, home.inbox / "crm.csv", first, today)
landed.OutcomeIndex(home, first, today)  # parse and cache once, as lead_outcomes would have
timings = {{}}
for shared in (True, False):
    started = time.perf_counter()
    index = landed.OutcomeIndex(home, first, today) if shared else None
    for day in days:  # one chunk per day, as a range run streams them
        found = landed.leads_for_days(home, [day], first, today, index=index)
        assert found.leads["app_complete_flag"].notna().all()
    timings[shared] = (time.perf_counter() - started) / len(days)
RESULT = {{"shared": timings[True], "per_chunk": timings[False], "events": len(events), "days": len(days)}}
"""


def _env(home: Path, code: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAD_ASSETS_", "DAGSTER_", "MLFLOW_"))}
    env.update({"LEAD_ASSETS_HOME": str(home), "GX_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(code)})
    return env


def bench_outcomes(quick: bool, work: Path, code: Path = ROOT) -> list[Result]:
    """Peak RSS of parsing an outcomes file of rejected rows, and a range run's per-chunk outcome cost."""
    size = 400_000 if quick else 40_000_000
    section = "Outcomes in bounded memory"
    progress(f"parsing a {size / 1e6:.1f} MB outcomes file of rejected rows ({code})")
    base = run_python(PARSE.format(bytes=size, parse=False, code=str(code)), env=_env(work / "outcomes_base", code))
    parsed = run_python(PARSE.format(bytes=size, parse=True, code=str(code)), env=_env(work / "outcomes_parse", code))
    mb = parsed["bytes"] / 1e6
    results = [
        Result(section, f"parse + cache a {mb:.1f} MB outcomes file of {parsed['rows']:,} rejected rows: peak RSS",
               parsed["peak_rss_mb"], "MB", [], "", None, note=f"{parsed['seconds']:.1f} s"),
        Result(section, "the same process without the parse (interpreter, imports, landing): peak RSS",
               base["peak_rss_mb"], "MB"),
        Result(section, "parse's own peak (difference) / file size", (parsed["peak_rss_mb"] - base["peak_rss_mb"]) / mb,
               "x"),
    ]
    if code == ROOT:
        events, days = (5_000, 3) if quick else (500_000, 10)
        progress(f"a range run's chunks against {events:,} outcome events")
        chunks = run_python(CHUNKS.format(days=days, events=events), env=_env(work / "outcomes_chunks", code))
        results += [
            Result(section, f"one-day chunk of 100 leads, {events:,} outcome events: index read once per run",
                   chunks["shared"] * 1000, "ms"),
            Result(section, "the same chunk when every chunk reads every outcome event again (before)",
                   chunks["per_chunk"] * 1000, "ms"),
        ]
    return results


def main(argv: list[str] | None = None) -> int:
    from benchmarks.harness import markdown

    parser = argparse.ArgumentParser(prog="python -m benchmarks.outcomes", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--code", default=str(ROOT), help="the checkout whose lead_assets is measured")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lead_assets_bench_") as work:
        results = bench_outcomes(args.quick, Path(work), Path(args.code).resolve())
    print(markdown(results, "python -m benchmarks.outcomes" + (" --quick" if args.quick else "")
                   + ("" if Path(args.code).resolve() == ROOT else f" --code {args.code}")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
