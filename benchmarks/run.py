"""``make bench``: the platform measured against its limits, next to bare libraries doing the same work.

    python -m benchmarks.run            # full sizes, writes BENCHMARKS.md (takes a while)
    python -m benchmarks.run --quick    # small sizes, for the test suite (the harness cannot rot)

Each section runs in a fresh data home under a temporary folder; timings are medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from benchmarks.harness import (BIN, ROOT, Result, markdown, median_of, progress, run_python, save_json,
                                stop_server, timed)
from benchmarks.gate_cuts import bench_gate
from benchmarks.model_real import bench_model_real
from benchmarks.outcomes import bench_outcomes
from benchmarks.replay_real import bench_replay
from benchmarks.serving import bench_serving

SIZES = {
    "full": {"score_rows": 1_000_000, "train_rows": 240_000, "backfill_days": 240, "backfill_per_day": 1000,
             "drop_rows": 10_000, "drops": 5, "repeats": 3, "real_repeats": 5, "history_days": 120,
             "history_per_day": 500,
             "tick_history": 20_000, "tick_repeats": 5, "tick_big_rows": 1_000_000,
             "scale_per_day": 20_000, "scale_days": 250, "scale_small_days": 50, "scale_history_days": 90,
             "scale_history_per_day": 300},
    "quick": {"score_rows": 5_000, "train_rows": 6_000, "backfill_days": 40, "backfill_per_day": 150,
              "drop_rows": 500, "drops": 1, "repeats": 1, "real_repeats": 1, "history_days": 40,
              "history_per_day": 150,
              "tick_history": 200, "tick_repeats": 2, "tick_big_rows": 10_000,
              "scale_per_day": 300, "scale_days": 16, "scale_small_days": 8, "scale_history_days": 40,
              "scale_history_per_day": 150},
}


def env_for(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAD_ASSETS_", "DAGSTER_", "MLFLOW_"))}
    env.update({"LEAD_ASSETS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
                "GX_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)})
    return env


# ------------------------------------------------------------------------------ training (4)
TRAIN = """
import time, pickle, pandas as pd
from lead_assets.core.leads import synth
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.leads.features import build_features
from lead_assets.core.model.recipe import TrainConfig
from lead_assets.core.model.training import train_model
days = {days}
raw = synth.generate_leads("2021-07-01", days, {per_day}, seed=11, labelled=True)
raw = raw.assign(lead_id=[f"t{{i}}" for i in range(len(raw))], created_date=pd.to_datetime(raw.created_date))
features = build_features(clean_leads(raw))
started = time.perf_counter()
result = train_model(features, TrainConfig())
seconds = time.perf_counter() - started
pickle.dump(result.model, open({model_path!r}, "wb"))
RESULT = {{"seconds": seconds, "rows": len(features), "auc": float(result.metrics["auc"])}}
"""


def bench_training(size: dict, work: Path) -> tuple[list[Result], Path]:
    days = 120  # four months: the monthly backtests that judge a model need at least two
    per_day = max(1, size["train_rows"] // days)
    model_path = work / "model.pkl"
    progress(f"training on {days * per_day:,} synthetic labelled leads")
    runs = [run_python(TRAIN.format(days=days, per_day=per_day, model_path=str(model_path)))
            for _ in range(size["repeats"])]
    seconds = sorted(r["seconds"] for r in runs)
    median = seconds[len(seconds) // 2]
    results = [
        Result("Training", f"train_model on {runs[0]['rows']:,} leads", median, "s", seconds, "< 60 s", median < 60),
        Result("Training", "pooled backtest AUC (synthetic)", runs[0]["auc"], "", [], "", None),
        Result("Training", "peak RSS", max(r["peak_rss_mb"] for r in runs), "MB", [], "", None),
    ]
    return results, model_path


# --------------------------------------------------------------------- scoring throughput (1, 5)
PREPARE_RAW = """
import pandas as pd
from lead_assets.core.leads import synth
n = {rows}; days = max(1, n // 20000)
raw = synth.generate_leads("2022-01-01", days, n // days, seed=5, labelled=False)
raw = raw.assign(lead_id=[f"s{{i}}" for i in range(len(raw))], created_date=pd.to_datetime(raw.created_date))
if {distinct!r}:  # like for like: a unique offset (under 0.001) makes every feature vector distinct
    raw["total_leads_droppped"] = raw["total_leads_droppped"].fillna(0.0) + (pd.RangeIndex(len(raw)) + 1) * 1e-9
raw.to_parquet({path!r})
RESULT = {{"rows": len(raw)}}
"""

PREPARE_REAL = """
import pandas as pd
from lead_assets.core.model.file_evaluation import read_labelled_csv
raw = read_labelled_csv({csv!r}).drop(columns=["app_complete_flag"])
raw.to_parquet({path!r})
RESULT = {{"rows": len(raw)}}
"""

PIPELINE = """
import pickle, time, pandas as pd
from upath import UPath
from lead_assets.core.store import warehouse
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.leads.features import build_features
from lead_assets.core.scoring.batch import BucketConfig, score_leads
model = pickle.load(open({model_path!r}, "rb"))
raw = pd.read_parquet({raw_path!r})
out = UPath({out!r})
started = time.perf_counter()
cleaned = clean_leads(raw)
del raw  # as in Dagster, where each step holds only its own input and output
features = build_features(cleaned)
del cleaned
distinct = int(features.drop(columns=["lead_id", "created_date", "app_complete_flag"]).drop_duplicates().shape[0])
scored = score_leads(features, model, model_name="lead_scoring", model_version="1", buckets=BucketConfig())
days = sorted(features.created_date.dt.strftime("%Y-%m-%d").unique())
warehouse.write_stream(out, "scored_leads", days, [scored], "created_date")  # what the IO manager runs
seconds = time.perf_counter() - started
RESULT = {{"seconds": seconds, "rows": len(scored), "distinct": distinct}}
"""

BARE = """
import pickle, time, pandas as pd
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.leads.features import build_features
model = pickle.load(open({model_path!r}, "rb"))
features = build_features(clean_leads(pd.read_parquet({raw_path!r})))
booster = model.raw_model
pool = model.pool(features)
started = time.perf_counter()
booster.predict_proba(pool)
predict = time.perf_counter() - started
started = time.perf_counter()
booster.predict_proba(pool)
booster.get_feature_importance(pool, type="ShapValues")
both = time.perf_counter() - started
RESULT = {{"predict_seconds": predict, "bare_seconds": both, "rows": len(features)}}
"""


def _pipeline_vs_bare(label: str, raw_path: Path, rows: int, work: Path, model_path: Path, repeats: int):
    """Pipeline and bare CatBoost on the same rows, alternated run by run on this noisy machine."""
    pipeline, bare = [], []
    for _ in range(repeats):
        progress(f"scoring ({label}): pipeline path (clean + features + predict + reasons + write)")
        pipeline.append(run_python(PIPELINE.format(model_path=str(model_path), raw_path=str(raw_path),
                                                   out=str(work / "wh"))))
        progress(f"scoring ({label}): bare CatBoost predict_proba + SHAP on the encoded pool")
        bare.append(run_python(BARE.format(model_path=str(model_path), raw_path=str(raw_path))))
    pipe_rate = sorted(rows / r["seconds"] for r in pipeline)
    bare_rate = sorted(rows / r["bare_seconds"] for r in bare)
    ratios = sorted(rows / p["seconds"] / (rows / b["bare_seconds"]) for p, b in zip(pipeline, bare))
    mid = len(pipe_rate) // 2
    return pipeline, bare, pipe_rate, bare_rate, ratios, mid


def bench_scoring(size: dict, work: Path, model_path: Path) -> list[Result]:
    raw_path = work / "raw_score.parquet"
    progress(f"generating {size['score_rows']:,} leads to score")
    rows = run_python(PREPARE_RAW.format(rows=size["score_rows"], path=str(raw_path), distinct=False))["rows"]
    pipeline, bare, pipe_rate, bare_rate, ratios, mid = _pipeline_vs_bare(
        "synthetic", raw_path, rows, work, model_path, size["repeats"])
    predict_rate = sorted(rows / r["predict_seconds"] for r in bare)
    peak = max(r["peak_rss_mb"] for r in pipeline)
    share = pipeline[0]["distinct"] / rows
    results = [
        Result("Scoring throughput", f"pipeline, {rows:,} synthetic leads ({share:.0%} distinct)", pipe_rate[mid],
               "leads/s", pipe_rate),
        Result("Scoring throughput", "bare predict_proba + SHAP", bare_rate[mid], "leads/s", bare_rate),
        Result("Scoring throughput", "pipeline / bare", ratios[mid] * 100, "%", [r * 100 for r in ratios], ">= 75%",
               ratios[mid] >= 0.75),
        Result("Scoring throughput", "bare predict_proba only", predict_rate[mid], "leads/s", predict_rate),
        Result("Peak memory", f"scoring {rows:,} leads (pipeline process)", peak, "MB RSS", [], "< 2,048 MB",
               peak < 2048),
    ]
    distinct_path = work / "raw_distinct.parquet"
    run_python(PREPARE_RAW.format(rows=size["score_rows"], path=str(distinct_path), distinct=True))
    pipeline, _, pipe_rate, bare_rate, ratios, mid = _pipeline_vs_bare(
        "every row distinct", distinct_path, rows, work, model_path, size["repeats"])
    results += [
        Result("Scoring throughput", f"pipeline, {rows:,} leads, every row distinct "
               f"({pipeline[0]['distinct'] / rows:.0%})", pipe_rate[mid], "leads/s", pipe_rate),
        Result("Scoring throughput", "bare predict_proba + SHAP, same rows", bare_rate[mid], "leads/s", bare_rate),
        Result("Scoring throughput", "pipeline / bare, every row distinct", ratios[mid] * 100, "%",
               [r * 100 for r in ratios]),
    ]
    from benchmarks.model_real import REAL

    if REAL.exists():
        real_path = work / "raw_real.parquet"
        real_rows = run_python(PREPARE_REAL.format(csv=str(REAL), path=str(real_path)))["rows"]
        pipeline, _, pipe_rate, bare_rate, ratios, mid = _pipeline_vs_bare(
            "real CodePro rows", real_path, real_rows, work, model_path, size["real_repeats"])
        results += [
            Result("Scoring throughput", f"pipeline, the real file's {real_rows:,} rows "
                   f"({pipeline[0]['distinct'] / real_rows:.0%} distinct)", pipe_rate[mid], "leads/s", pipe_rate),
            Result("Scoring throughput", "bare predict_proba + SHAP, same rows", bare_rate[mid], "leads/s",
                   bare_rate),
            Result("Scoring throughput", "pipeline / bare, real rows", ratios[mid] * 100, "%",
                   [r * 100 for r in ratios]),
        ]
    return results


# --------------------------------------------------------------------- a home with a champion
def prepare_home(home: Path, size: dict, first: date, days: int, per_day: int) -> None:
    """Labelled history landed and featurised, a champion trained and promoted (not timed)."""
    code = f"""
import os
from datetime import date
from lead_assets.core.inbox import ledger
from lead_assets.core.leads import synth
from lead_assets.core.store.home import LeadHome
from lead_assets.demo import ensure_dagster_home, materialize_selection
home = LeadHome.resolve().ensure(); ensure_dagster_home(home)
leads = synth.generate_leads(date.fromisoformat({first.isoformat()!r}), {days}, {per_day}, seed=3, labelled=True)
synth.write_daily_files(leads, home.inbox.path, prefix="history")
for c in ledger.list_candidates(home.inbox)[0]:
    ledger.receive(home, c.path, date(2021, 7, 1), date.today())
last = (date.fromisoformat({first.isoformat()!r}).toordinal() + {days} - 1)
materialize_selection(["raw_leads", "cleaned_leads", "lead_features"], {first.isoformat()!r},
                      date.fromordinal(last).isoformat())
materialize_selection(["lead_scoring_model", "champion_model"])
RESULT = {{}}
"""
    run_python(code, env=env_for(home))


# ------------------------------------------------------------------------------- backfill (3)
PLAIN = """
import glob, os, pickle, time, pandas as pd
model = pickle.load(open({model_path!r}, "rb"))
files = sorted(glob.glob({features!r} + "/*.parquet"))
os.makedirs({out!r}, exist_ok=True)
started = time.perf_counter()
for path in files:
    frame = pd.read_parquet(path)
    if not len(frame):
        continue
    pool = model.pool(frame)
    p = model.raw_model.predict_proba(pool)[:, 1]
    model.raw_model.get_feature_importance(pool, type="ShapValues")
    frame.assign(probability=p)[["lead_id", "created_date", "probability"]].to_parquet(
        os.path.join({out!r}, os.path.basename(path)))
RESULT = {{"seconds": time.perf_counter() - started, "files": len(files)}}
"""


def dagster_cli(home: Path, *args: str, timeout: float = 3600) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dagster"), *args], cwd=ROOT, env=env_for(home),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def bench_backfill(size: dict, work: Path) -> list[Result]:
    home = work / "backfill_home"
    days, per_day = size["backfill_days"], size["backfill_per_day"]
    first = date(2022, 1, 1)
    last = first + timedelta(days=days - 1)
    progress(f"backfill: preparing {days} partitions x {per_day} leads and a champion")
    prepare_home(home, size, first, days, per_day)
    select = ["asset", "materialize", "-m", "lead_assets.definitions", "--select", "scored_leads"]

    def one_backfill() -> float:
        seconds, proc = timed(lambda: dagster_cli(home, *select, "--partition-range",
                                                  f"{first}...{last}").communicate())
        return seconds

    progress("backfill: rescoring the range as one run (dagster asset materialize --partition-range)")
    median, runs = median_of(one_backfill, size["repeats"])
    import pickle  # noqa: F401  (the plain script unpickles the champion)

    model_path = work / "champion.pkl"
    run_python(f"""
import pickle, mlflow
from lead_assets.core.store.home import LeadHome
from lead_assets.core.release import registry
mlflow.set_tracking_uri(LeadHome.resolve().mlflow_tracking_uri)
model, version = registry.load_champion("lead_scoring")
pickle.dump(model, open({str(model_path)!r}, "wb"))
RESULT = {{"version": str(version)}}
""", env=env_for(home))
    progress("backfill: plain pandas + CatBoost script over the same partitions")
    plain = [run_python(PLAIN.format(model_path=str(model_path), features=str(home / "warehouse" / "lead_features"),
                                     out=str(work / "plain_out"))) for _ in range(size["repeats"])]
    plain_seconds = sorted(r["seconds"] for r in plain)[len(plain) // 2]

    progress("backfill: the same range as 4 concurrent runs")
    quarters = [(first + timedelta(days=i * days // 4), first + timedelta(days=(i + 1) * days // 4 - 1))
                for i in range(4)]
    started = time.perf_counter()
    procs = [dagster_cli(home, *select, "--partition-range", f"{a}...{b}") for a, b in quarters if a <= b]
    outputs = [p.communicate()[0] for p in procs]
    concurrent_seconds = time.perf_counter() - started
    failed = sum(p.returncode != 0 for p in procs)
    if failed:
        progress("concurrent runs failed:\n" + "\n".join(o[-2000:] for o, p in zip(outputs, procs) if p.returncode))
    return [
        Result("Backfill", f"rescore {days} partitions / {days * per_day:,} leads, one run (CLI, incl. start-up)",
               median, "s", runs, "< 60 s", median < 60),
        Result("Backfill", "plain pandas + CatBoost (predict + SHAP + write), same partitions", plain_seconds, "s",
               sorted(r["seconds"] for r in plain)),
        Result("Backfill", "platform / plain", median / plain_seconds, "x", []),
        Result("Backfill", f"4 concurrent runs over the range ({len(procs)} runs)", concurrent_seconds, "s", [],
               "no run fails", failed == 0, note=f"{failed} failed" if failed else "all succeeded"),
    ]


# ------------------------------------------------------------- range runs in bounded memory (8)
SCALE_FEATURES = """
import numpy as np, pandas as pd
from lead_assets.core.leads import synth
from lead_assets.core.store import warehouse
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.leads.features import build_features
from lead_assets.core.store.home import LeadHome
from lead_assets.core.schema import CREATED_DATE, LEAD_ID
home = LeadHome.resolve().ensure()
per_day, days = {per_day}, {days}
raw = synth.generate_leads("2022-01-01", 10, max(per_day, 10_000) // 2, seed=8, labelled=False)
raw = raw.assign(lead_id=[f"p{{i}}" for i in range(len(raw))], created_date=pd.to_datetime(raw.created_date))
pool = build_features(clean_leads(raw))
columns = list(pool.columns)
pool = pool.drop(columns=[LEAD_ID, CREATED_DATE]).reset_index(drop=True)
rng = np.random.default_rng(1)
for i, day in enumerate(pd.date_range({first!r}, periods=days)):
    rows = pool.iloc[rng.integers(0, len(pool), per_day)].reset_index(drop=True)
    rows[LEAD_ID] = [f"x{{i}}-{{j}}" for j in range(per_day)]
    rows[CREATED_DATE] = day + pd.to_timedelta(np.sort(rng.integers(0, 86_400, per_day)), unit="s")
    warehouse.write_partition(home.warehouse, "lead_features", day.strftime("%Y-%m-%d"), rows[columns])
RESULT = {{"rows": per_day * days, "pool": len(pool)}}
"""

RESCORE = """
import resource, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.run({command!r}, capture_output=True, text=True, env={env!r}, cwd={cwd!r})
seconds = time.perf_counter() - started
if proc.returncode:
    sys.exit("rescore failed: " + proc.stderr[-3000:] + proc.stdout[-3000:])
RESULT = {{"seconds": seconds, "run_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}
"""


def bench_scale(size: dict, work: Path) -> list[Result]:
    """One-run rescores through Dagster (``dagster asset materialize --partition-range``, as a
    promotion's rescore runs), streamed in chunks vs the range at once, and 5x the leads streamed."""
    home = work / "scale_home"
    per_day, days, small = size["scale_per_day"], size["scale_days"], size["scale_small_days"]
    first = date(2022, 6, 1)
    progress(f"scale: a champion on {size['scale_history_days']} days of labelled history")
    started = time.perf_counter()
    prepare_home(home, size, date(2022, 1, 1), size["scale_history_days"], size["scale_history_per_day"])
    progress(f"scale: writing {per_day * days:,} synthetic feature rows straight to the warehouse ({days} days)")
    setup = time.perf_counter() - started
    seconds, _ = timed(lambda: run_python(SCALE_FEATURES.format(per_day=per_day, days=days, first=first.isoformat()),
                                          env=env_for(home)))
    select = [str(BIN / "dagster"), "asset", "materialize", "-m", "lead_assets.definitions", "--select",
              "scored_leads"]

    def rescore(last_day: date, chunk_rows: int | None) -> dict:
        env = env_for(home)
        if chunk_rows:
            env["LEAD_ASSETS_CHUNK_ROWS"] = str(chunk_rows)
        command = [*select, "--partition-range", f"{first}...{last_day}"]
        return run_python(RESCORE.format(command=command, env=env, cwd=str(ROOT)))

    small_last, big_last = first + timedelta(days=small - 1), first + timedelta(days=days - 1)
    small_rows, big_rows = per_day * small, per_day * days
    progress(f"scale: {small_rows:,} leads rescored in one run, streamed (default chunk) then at once")
    streamed = rescore(small_last, None)
    at_once = rescore(small_last, 10**12)
    progress(f"scale: {big_rows:,} leads rescored in one run, streamed")
    big = rescore(big_last, None)
    notes = ("peak RSS of the `dagster asset materialize --select scored_leads --partition-range` process "
             "(scored_leads and its two checks, CLI start-up included); 'at once' sets LEAD_ASSETS_CHUNK_ROWS "
             "above the range, which is what every range run did before streaming")
    return [
        Result("Scale: range runs", f"rescore {small_rows:,} leads ({small} days), one run, streamed: peak RSS",
               streamed["run_peak_rss_mb"], "MB", [], "< 1,024 MB", streamed["run_peak_rss_mb"] < 1024, note=notes),
        Result("Scale: range runs", f"same {small_rows:,} leads, the range at once: peak RSS",
               at_once["run_peak_rss_mb"], "MB", []),
        Result("Scale: range runs", "peak RSS, streamed / at once",
               100 * streamed["run_peak_rss_mb"] / at_once["run_peak_rss_mb"], "%", []),
        Result("Scale: range runs", f"rescore {small_rows:,} leads, streamed: duration", streamed["seconds"], "s", []),
        Result("Scale: range runs", f"rescore {small_rows:,} leads, at once: duration", at_once["seconds"], "s", []),
        Result("Scale: range runs", "duration, streamed / at once", 100 * streamed["seconds"] / at_once["seconds"],
               "%", []),
        Result("Scale: range runs", f"rescore {big_rows:,} leads ({days} days), one run, streamed: peak RSS",
               big["run_peak_rss_mb"], "MB", [], "< 4,096 MB (the run pods' limit)", big["run_peak_rss_mb"] < 4096),
        Result("Scale: range runs", f"rescore {big_rows:,} leads, streamed: duration", big["seconds"], "s", [],
               note=f"{big_rows / big['seconds']:,.0f} leads/s"),
        Result("Scale: range runs", f"{big_rows // small_rows}x the leads: peak RSS ratio",
               big["run_peak_rss_mb"] / streamed["run_peak_rss_mb"], "x", []),
        Result("Scale: range runs", f"{big_rows // small_rows}x the leads: duration ratio",
               big["seconds"] / streamed["seconds"], "x", []),
        Result("Scale: range runs", "set-up: champion trained on labelled history", setup, "s", []),
        Result("Scale: range runs", f"set-up: {big_rows:,} feature rows written to the warehouse", seconds, "s", []),
    ]


# -------------------------------------------------------------------------- drop to scored (2)
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DAGSTER_DEFAULTS = """telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    default_limit: 1
"""


def bench_drop(size: dict, work: Path) -> list[Result]:
    """Drops into a served home (`dagster dev`), with Dagster's default run launcher and 5 s run
    queue, then with the instance `lead-assets init` writes (pre-warmed launcher, 1 s queue) and
    an inbox tick that watches for 4 s, in one benchmark run so that the ratio is measured under
    the same load."""
    home = work / "drop_home"
    today = datetime.now(timezone.utc).date()
    drops = size["drops"]
    variants = [("Dagster's default launcher and queue", None, {}),
                ("lead-assets init instance, tick watch 4 s", "shipped", {"LEAD_ASSETS_TICK_WATCH_SECONDS": "4"}),
                ("make dev's settings: also a closed file settles at once", "shipped",
                 {"LEAD_ASSETS_TICK_WATCH_SECONDS": "4", "LEAD_ASSETS_SETTLE_CLOSED_FILES": "1"})]
    history_first = today - timedelta(days=size["history_days"] + len(variants) * drops + 1)
    progress(f"drop: preparing a champion on {size['history_days']} days of history")
    prepare_home(home, size, history_first, size["history_days"], size["history_per_day"])
    shipped = (home / "dagster" / "dagster.yaml").read_text()
    results, medians = [], {}
    for v, (label, config, extra) in enumerate(variants):
        (home / "dagster" / "dagster.yaml").write_text(shipped if config == "shipped" else DAGSTER_DEFAULTS)
        totals, breakdowns = served_drops(home, [today - timedelta(days=len(variants) * drops - v * drops - i)
                                                 for i in range(drops)], size["drop_rows"], label, extra)
        median = medians[label] = sorted(totals)[len(totals) // 2]
        results.append(Result("File drop to scored", f"{label}: {size['drop_rows']:,}-lead file, inbox to "
                              "queryable scored_leads", median, "s", sorted(totals),
                              *(("< 5 s (issue #21)", median < 5) if v == len(variants) - 1 else ("< 8 s", median < 8))))
        for part in dict.fromkeys(k for b in breakdowns for k in b):
            values = sorted(b.get(part, 0.0) for b in breakdowns)
            mid = values[len(values) // 2]
            results.append(Result("File drop to scored", f"  {part}", mid, "s", values,
                                  note="" if part.startswith("  of which") else
                                  f"{label}: {100 * mid / median:.0f}% of the median total"))
    first, second, third = medians.values()
    results.append(Result("File drop to scored", "lead-assets init instance / Dagster's defaults (medians)",
                          100 * second / first, "%", []))
    results.append(Result("File drop to scored", "make dev's settings / Dagster's defaults (medians)",
                          100 * third / first, "%", []))
    return results


def served_drops(home: Path, days: list[date], rows: int, label: str,
                 extra_env: dict) -> tuple[list[float], list[dict]]:
    port = free_port()
    server = subprocess.Popen([str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w",
                               str(ROOT / "workspace.yaml")], cwd=ROOT, env={**env_for(home), **extra_env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    totals, breakdowns = [], []
    try:
        time.sleep(20)  # let the daemon start its sensor loop
        for i, day in enumerate(days):
            totals.append(one_drop(home, day, rows, seed=100 + day.toordinal() % 1000, breakdowns=breakdowns))
            progress(f"drop {i + 1}/{len(days)} ({label}): {totals[-1]:.1f} s")
    finally:
        stop_server(server)
    return totals, breakdowns


def one_drop(home: Path, day: date, rows: int, seed: int, breakdowns: list) -> float:
    from dagster import DagsterInstance, RunsFilter

    from lead_assets.core.leads import synth
    from lead_assets.core.store.home import LeadHome
    from lead_assets.core.store.warehouse import partition_path, read_parquet

    leads = synth.generate_leads(day, 1, rows, seed=seed, labelled=False)
    staging = home / "staging"
    (path,) = synth.write_daily_files(leads, staging, prefix=f"drop{seed}")
    dropped = time.time()
    shutil.move(str(path), str(home / "inbox" / path.name))
    lead_home = LeadHome.resolve(home)
    target = partition_path(lead_home.warehouse, "scored_leads", day.isoformat())
    deadline = dropped + 300
    while time.time() < deadline:
        if target.exists():
            try:
                if len(read_parquet(target)) >= rows:
                    break
            except Exception:
                pass
        time.sleep(0.2)
    else:
        raise RuntimeError(f"{rows} leads for {day} not scored within 300 s")
    total = time.time() - dropped
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        records = instance.get_run_records(RunsFilter(tags={"dagster/asset_partition_range_start": day.isoformat()}))
        if records:
            breakdowns.append(drop_breakdown(instance, records[0], dropped, dropped + total))
    return total


def drop_breakdown(instance, record, dropped: float, queryable: float) -> dict[str, float]:
    """Where the seconds from the drop to a queryable scored_leads file went, from the run's event
    log: consecutive marks (run created, launched, worker started, each step start and end), each
    segment clipped at the moment the file was seen, so the segments add up to the total."""
    from dagster import DagsterEventType

    events = sorted((e for e in instance.all_logs(record.dagster_run.run_id) if e.dagster_event),
                    key=lambda e: e.timestamp)

    def first(kind, step=None):
        return next((e.timestamp for e in events if e.dagster_event.event_type == kind
                     and (step is None or e.step_key == step)), None)

    marks = [("sensor: interval, settle and tick", record.create_timestamp.timestamp()),
             ("run queued -> launched", first(DagsterEventType.RUN_STARTING)),
             ("run worker start-up (process, imports, code location)", first(DagsterEventType.RUN_START))]
    for start in (e for e in events if e.dagster_event.event_type == DagsterEventType.STEP_START):
        marks.append(("between steps", start.timestamp))
        end = first(DagsterEventType.STEP_SUCCESS, start.step_key) or first(DagsterEventType.STEP_FAILURE,
                                                                             start.step_key)
        marks.append((f"step {start.step_key}", end))
    breakdown: dict[str, float] = {}
    at = dropped
    for label, when in marks:
        if when is None or at >= queryable:
            continue
        until = min(when, queryable)
        breakdown[label] = breakdown.get(label, 0.0) + max(0.0, until - at)
        at = max(at, until)
    breakdown["scored file written -> seen by the poll"] = max(0.0, queryable - at)
    for event in events:
        if (event.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
                and event.step_key == "scored_leads"):
            metadata = event.dagster_event.event_specific_data.materialization.metadata
            if "champion_load_seconds" in metadata:
                breakdown["  of which: loading the champion (MLflow)"] = metadata["champion_load_seconds"].value
    return breakdown


# ------------------------------------------------------------------- inbox sensor tick (7)
TICK = """
import json, os, time, hashlib
from dataclasses import asdict
from pathlib import Path
from dagster import build_sensor_context, instance_for_test
from lead_assets.core.inbox import ledger
from lead_assets.core.leads import synth
from lead_assets.core.store.home import LeadHome
from lead_assets.defs.inbox.ingest import inbox_sensor
from lead_assets.defs.resources import LeadHomeResource

home = LeadHome.resolve().ensure()
history = {history}
template = synth.generate_leads("2021-07-01", 1, 20, seed=1, labelled=False)

def landed_history(count):
    # what `count` earlier landings leave behind: a landed file, a ledger JSON and an index line each
    if not count:
        return
    (home.inbox / "seed.csv").write_bytes(template.to_csv(index=False).encode())
    seed = ledger.receive(home, home.inbox / "seed.csv", synth_first, today)
    data = (home.landing / seed.landed_as).read_bytes()
    lines = []
    for i in range(1, count):
        sha = hashlib.sha256(f"history{{i}}".encode()).hexdigest()
        entry = ledger.LedgerEntry(**{{**asdict(seed), "sha256": sha, "file": f"h{{i}}.csv", "landed_as": f"{{sha}}.csv",
                                     "seq": seed.seq + i}})
        (home.landing / entry.landed_as).write_bytes(data)
        (home.ledger / f"{{sha}}.json").write_text(json.dumps(asdict(entry)))
        lines.append(json.dumps({{k: getattr(entry, k) for k in ledger.INDEX_FIELDS}}) + "\\n")
    with open((home.ledger / ledger.INDEX).path, "a") as handle:
        handle.writelines(lines)

from datetime import date
synth_first, today = date(2021, 7, 1), date.today()
landed_history(history)
resources = {{"lead_home": LeadHomeResource(settle_seconds=0)}}
with instance_for_test(overrides={{"telemetry": {{"enabled": False}}}}) as instance:
    result = inbox_sensor(build_sensor_context(instance=instance, resources=resources))  # catch up once
    cursor = result.cursor
    idle, new = [], []
    for i in range({repeats}):
        started = time.perf_counter()
        result = inbox_sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        idle.append(time.perf_counter() - started)
        assert not result.run_requests
        path = home.inbox / f"new{{i}}.csv"
        path.write_bytes(template.assign(city_mapped=f"c{{i}}").to_csv(index=False).encode())
        os.utime(path.path, (time.time() - 10, time.time() - 10))
        started = time.perf_counter()
        result = inbox_sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        new.append(time.perf_counter() - started)
        assert len(result.run_requests) == 1
        cursor = result.cursor
RESULT = {{"idle": sorted(idle), "new": sorted(new), "landed": len(ledger.landed_entries(home))}}
"""


TICK_BIG = """
import os, time
from dagster import build_sensor_context, instance_for_test
from lead_assets.core.leads import synth
from lead_assets.core.store.home import LeadHome
from lead_assets.defs.inbox.ingest import inbox_sensor
from lead_assets.defs.resources import LeadHomeResource

home = LeadHome.resolve().ensure()
rows = {rows}
template = synth.generate_leads("2021-07-01", 1, 1, seed=1, labelled=False)
header = ",".join(template.columns)
row = template.iloc[0].astype(str).replace("nan", "").tolist()
at = list(template.columns).index("created_date")
path = home.inbox / "export.csv"
with open(path.path, "w") as handle:
    handle.write(header + "\\n")
    for i in range(rows):
        row[at] = f"2021-{{7 + i % 5:02d}}-{{1 + i % 28:02d}} {{i % 24:02d}}:{{i % 60:02d}}:{{(i // 60) % 60:02d}}"
        handle.write(",".join(row) + "\\n")
os.utime(path.path, (time.time() - 10, time.time() - 10))
with instance_for_test(overrides={{"telemetry": {{"enabled": False}}}}) as instance:
    started = time.perf_counter()
    result = inbox_sensor(build_sensor_context(instance=instance, resources={{"lead_home": LeadHomeResource()}}))
    seconds = time.perf_counter() - started
assert len(result.run_requests) == 1
RESULT = {{"seconds": seconds, "bytes": os.path.getsize((home.landing / os.listdir(home.landing.path)[0]).path)}}
"""


def bench_tick(size: dict, work: Path) -> list[Result]:
    """One sensor tick with no history and with many files already landed: the cost follows new data."""
    results = []
    for history in (0, size["tick_history"]):
        progress(f"inbox tick with {history:,} files already landed")
        home = work / f"tick_{history}"
        found = run_python(TICK.format(history=history, repeats=size["tick_repeats"]), env=env_for(home))
        mid = len(found["idle"]) // 2
        results += [
            Result("Inbox sensor tick", f"idle tick, {history:,} files landed", found["idle"][mid] * 1000, "ms",
                   [v * 1000 for v in found["idle"]]),
            Result("Inbox sensor tick", f"tick landing one new 20-lead file, {history:,} files landed",
                   found["new"][mid] * 1000, "ms", [v * 1000 for v in found["new"]], "< 1,000 ms",
                   found["new"][mid] < 1.0),
        ]
    progress(f"inbox tick landing one {size['tick_big_rows']:,}-row file")
    big = [run_python(TICK_BIG.format(rows=size["tick_big_rows"]), env=env_for(work / f"tick_big_{i}"))
           for i in range(size["repeats"])]
    seconds = sorted(b["seconds"] for b in big)
    results.append(Result("Inbox sensor tick", f"tick landing one {size['tick_big_rows']:,}-row file "
                          f"({big[0]['bytes'] / 1e6:.0f} MB)", seconds[len(seconds) // 2], "s", seconds,
                          "< 60 s (sensor timeout)", seconds[len(seconds) // 2] < 60))
    return results


# ----------------------------------------------------------------------- suite and demo (6)
def bench_wall_times(work: Path) -> list[Result]:
    progress("wall time: pytest (make test without the install step)")
    seconds, proc = timed(lambda: subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                                                 cwd=ROOT, capture_output=True, text=True,
                                                 env={**os.environ, "LEAD_ASSETS_SKIP_BENCH_TEST": "1"}))
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    progress("wall time: lead-assets demo (make demo without the install step)")
    demo_home = work / "demo_home"
    demo_seconds, demo = timed(lambda: subprocess.run([str(BIN / "lead-assets"), "demo"], cwd=ROOT,
                                                      env=env_for(demo_home), capture_output=True, text=True))
    return [
        Result("Wall time", "test suite (pytest -q)", seconds, "s", [], "", proc.returncode == 0, note=tail),
        Result("Wall time", "lead-assets demo", demo_seconds, "s", [], "", demo.returncode == 0),
    ]


SECTIONS = ("training", "scoring", "model", "gate", "replay", "backfill", "scale", "drop", "tick", "serving", "outcomes", "wall")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (used by the test suite)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--out", default=None, help="markdown report (default BENCHMARKS.md; none with --quick)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="lead_assets_bench_"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # every section's models go to its own temporary home
    results: list[Result] = []
    notes = ""
    try:
        model_path = None
        if only & {"training", "scoring"}:
            found, model_path = bench_training(size, work)
            results += found if "training" in only else []
        if "scoring" in only:
            results += bench_scoring(size, work, model_path)
        if "model" in only:
            found, appendix = bench_model_real(args.quick)
            results += found
            notes += appendix
        if "gate" in only:
            found, appendix = bench_gate(args.quick)
            results += found
            notes += appendix
        if "replay" in only:
            found, appendix = bench_replay(work, args.quick)
            results += found
            notes += appendix
        if "backfill" in only:
            results += bench_backfill(size, work)
        if "scale" in only:
            results += bench_scale(size, work)
        if "drop" in only:
            results += bench_drop(size, work)
        if "tick" in only:
            results += bench_tick(size, work)
        if "serving" in only:
            results += bench_serving(args.quick, work, env_for, free_port)
        if "outcomes" in only:
            results += bench_outcomes(args.quick, work)
        if "wall" in only and not args.quick:
            results += bench_wall_times(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "make bench" if not args.quick else "python -m benchmarks.run --quick"
    if args.only != ",".join(SECTIONS):
        command = f"python -m benchmarks.run {'--quick ' if args.quick else ''}--only {args.only}"
    report = markdown(results, command, notes)
    print(report)
    out = args.out or (None if args.quick else str(ROOT / "BENCHMARKS.md"))
    if out:
        Path(out).write_text(report)
    if args.json:
        save_json(results, Path(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
