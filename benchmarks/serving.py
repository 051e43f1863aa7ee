"""Online scoring: `lead-assets serve` measured over HTTP, next to the batch path's cost per lead.

A champion is trained on synthetic history and registered in a fresh home (not timed); the
service runs as a user starts it, on a free loopback port. Measured, in this order, in one run:

* one lead per request (lead_id derived, as a web form sends it; and lead_id given, as a CRM
  sends it): latency p50/p99 over sequential requests on one keep-alive connection, each a
  different new lead;
* one request of 1,000 leads;
* 20 concurrent clients (threads, one connection each) sending one lead per request for 30 s:
  requests per second and errors (any answer but 200, or a broken connection);
* where one lead's time goes: each stage of a one-lead request timed in one process;
* the batch path on the same model: a lead file parsed by the ingest, cleaned, featurised and
  scored with reasons (`parse_lead_file` -> `clean_leads` -> `build_features` -> `score_leads`),
  per lead, in a fresh process.

The clients run on the same 2 cores as the server, so the concurrent figure is a floor.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.harness import BIN, Result, progress, run_python, stop_server

SIZES = {
    "full": {"history_days": 90, "history_per_day": 400, "sequential": 1000, "batch_leads": 1000,
             "batch_repeats": 5, "clients": 20, "seconds": 30, "batch_path_leads": 20_000},
    "quick": {"history_days": 40, "history_per_day": 100, "sequential": 30, "batch_leads": 200,
              "batch_repeats": 1, "clients": 4, "seconds": 3, "batch_path_leads": 1_000},
}
SECTION = "Online scoring"

PREPARE = """
import os
for _name in [k for k in os.environ if k.startswith("MLFLOW_")]:  # run_python passes the caller's environment on
    del os.environ[_name]
import pandas as pd
from lead_assets.core.leads import synth
from lead_assets.core.release import registry
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.store.experiments import use_experiment
from lead_assets.core.leads.features import build_features
from lead_assets.core.store.home import LeadHome
from lead_assets.core.model.training import train_model
home = LeadHome.resolve()
use_experiment("lead_scoring_bench", home)
raw = synth.generate_leads("2021-07-01", {days}, {per_day}, seed=11, labelled=True)
raw = raw.assign(lead_id=[f"t{{i}}" for i in range(len(raw))], created_date=pd.to_datetime(raw.created_date))
version = registry.log_training(train_model(build_features(clean_leads(raw))), model_name="lead_scoring", plots={{}})
registry.set_champion("lead_scoring", version)
RESULT = {{"version": version, "rows": len(raw)}}
"""

BATCH_PATH = """
import os
for _name in [k for k in os.environ if k.startswith("MLFLOW_")]:  # run_python passes the caller's environment on
    del os.environ[_name]
import time, pandas as pd
from datetime import date
from upath import UPath
from lead_assets.core.leads import synth
from lead_assets.core.release import registry
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.store.experiments import use_experiment
from lead_assets.core.leads.features import build_features
from lead_assets.core.store.home import LeadHome
from lead_assets.core.inbox.parsing import parse_lead_file
from lead_assets.core.scoring.batch import score_leads
use_experiment("lead_scoring_bench", LeadHome.resolve())
model, version = registry.load_champion("lead_scoring")
raw = synth.generate_leads("2021-10-01", 10, {per_day}, seed=23, labelled=False)
raw.to_csv({path!r}, index=False)
started = time.perf_counter()
parsed = parse_lead_file(UPath({path!r}), name="bench.csv", sha256="0", first_day=date(2021, 7, 1), today=date.today())
scored = score_leads(build_features(clean_leads(parsed.accepted)), model, model_name="lead_scoring", model_version=version)
seconds = time.perf_counter() - started
RESULT = {{"seconds": seconds, "rows": len(scored)}}
"""


STAGES = """
import os
for _name in [k for k in os.environ if k.startswith("MLFLOW_")]:  # run_python passes the caller's environment on
    del os.environ[_name]
import json, statistics, time
import mlflow.pyfunc
from mlflow.pyfunc import scoring_server
from lead_assets.core.release import registry
from lead_assets.core.scoring import online
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.store.experiments import use_experiment
from lead_assets.core.leads.features import build_features
from lead_assets.core.store.home import LeadHome
from lead_assets.core.inbox.parsing import lead_ids
from lead_assets.core.scoring.batch import score_leads
from lead_assets.core.leads.synth import generate_leads
use_experiment("lead_scoring_bench", LeadHome.resolve())
version = registry.champion_version("lead_scoring")
model = mlflow.pyfunc.load_model(f"models:/lead_scoring/{{version}}", model_config={{"model_version": version}})
lead = model.unwrap_python_model().lead_model
schema = model.metadata.get_input_schema()
raw = generate_leads("2021-10-01", 1, {calls}, seed=61, labelled=False)
bodies = [json.dumps({{"dataframe_records": json.loads(raw.iloc[[i]].assign(lead_id=f"c{{i}}").to_json(orient="records"))}})
          for i in range(len(raw))]
cut = online.Cutoff(0.5, "bench")
from catboost import Pool
python_model = model.unwrap_python_model()
stages = {{k: [] for k in ("MLflow: JSON to a frame (cast to the schema)", "type_leads (lead_id given)",
                          "lead_ids (deriving one id)", "clean_leads", "build_features", "score_leads",
                          "floor: CatBoost predict, one row", "floor: CatBoost SHAP, one row",
                          "answer records", "direct answer (what serve runs: JSON records, no MLflow)",
                          "whole invocation (MLflow + pyfunc)")}}
def timed(name, fn):
    started = time.perf_counter(); out = fn(); stages[name].append((time.perf_counter() - started) * 1000); return out
for body in bodies:
    frame = timed("MLflow: JSON to a frame (cast to the schema)",
                  lambda: scoring_server.infer_and_parse_data(json.loads(body), schema))
    typed = timed("type_leads (lead_id given)", lambda: online.type_leads(frame))
    timed("lead_ids (deriving one id)", lambda: lead_ids(typed))
    cleaned = timed("clean_leads", lambda: clean_leads(typed))
    features = timed("build_features", lambda: build_features(cleaned))
    scored = timed("score_leads", lambda: score_leads(features, lead, "lead_scoring", version, cutoffs=(0.5, "bench")))
    pool = Pool(lead.model_input(features), cat_features=list(lead.categorical))
    timed("floor: CatBoost predict, one row",
          lambda: lead.raw_model.predict(pool, prediction_type="RawFormulaVal", thread_count=1))
    timed("floor: CatBoost SHAP, one row",
          lambda: lead.raw_model.get_feature_importance(pool, type="ShapValues", thread_count=1))
    records = json.loads(body)["dataframe_records"]
    timed("direct answer (what serve runs: JSON records, no MLflow)",
          lambda: json.dumps({{"predictions": python_model.answer(records, {{}})}}))
    timed("answer records", lambda: online.score_records(frame, lead, "lead_scoring", version, cut))
    timed("whole invocation (MLflow + pyfunc)", lambda: scoring_server.invocations(body, "application/json", model, schema))
RESULT = {{k: statistics.median(v[5:]) for k, v in stages.items()}}
"""


def _leads(count: int, seed: int, with_id: bool) -> list[dict]:
    from lead_assets.core.leads.synth import generate_leads

    days = max(1, count // 500 + 1)
    raw = generate_leads("2021-10-01", days, -(-count // days), seed=seed, labelled=False).head(count)
    if with_id:
        raw.insert(0, "lead_id", [f"crm-{seed}-{i}" for i in range(len(raw))])
    return json.loads(raw.to_json(orient="records"))


class _Client:
    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.last_body = b""

    def post(self, records: list[dict]) -> int:
        body = json.dumps({"dataframe_records": records}).encode()
        self.connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        self.last_body = response.read()
        return response.status


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _sequential(port: int, leads: list[dict]) -> list[float]:
    client, latencies = _Client(port), []
    for lead in leads:
        started = time.perf_counter()
        status = client.post([lead])
        latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"one-lead request answered {status}: {client.last_body[:500]!r}")
    return latencies


def _concurrent(port: int, leads: list[dict], clients: int, seconds: float) -> tuple[int, int, float]:
    done, errors, lock = [0], [0], threading.Lock()
    deadline = time.perf_counter() + seconds

    def work(offset: int):
        client, i = _Client(port), offset
        while time.perf_counter() < deadline:
            try:
                ok = client.post([leads[i % len(leads)]]) == 200
            except (OSError, http.client.HTTPException):
                ok = False
                client = _Client(port)
            with lock:
                done[0] += 1
                errors[0] += 0 if ok else 1
            i += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0], errors[0], time.perf_counter() - started


def bench_serving(quick: bool, work: Path, env_for, free_port) -> list[Result]:
    size = SIZES["quick" if quick else "full"]
    home = work / "serving_home"
    env = env_for(home)
    progress(f"serving: training and registering a champion on {size['history_days'] * size['history_per_day']:,} "
             "synthetic leads (not timed)")
    run_python(PREPARE.format(days=size["history_days"], per_day=size["history_per_day"]), env=env)

    progress("serving: batch path per lead (parse + clean + features + score with reasons), same model")
    per_day = size["batch_path_leads"] // 10
    batch_runs = [run_python(BATCH_PATH.format(per_day=per_day, path=str(work / "batch.csv")), env=env)
                  for _ in range(3 if not quick else 1)]
    batch_ms = sorted(r["seconds"] / r["rows"] * 1000 for r in batch_runs)
    batch_per_lead = batch_ms[len(batch_ms) // 2]

    progress("serving: where one lead's time goes, stage by stage, in one process")
    stages = run_python(STAGES.format(calls=200 if not quick else 20), env=env)

    port = free_port()
    log = open(work / "serve.log", "wb")
    workers = os.cpu_count() or 1
    server = subprocess.Popen([str(BIN / "lead-assets"), "serve", "--port", str(port), "--max-request-bytes",
                               str(16 << 20), "--workers", str(workers)], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.time() + 300
        while True:
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                probe.request("GET", "/ping")
                if probe.getresponse().status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError("lead-assets serve did not become ready: "
                                   + (work / "serve.log").read_text()[-2000:])
            time.sleep(0.5)

        results = []
        for with_id, label in ((False, "lead_id derived"), (True, "lead_id given")):
            leads = _leads(size["sequential"], seed=31 + with_id, with_id=with_id)
            _sequential(port, leads[:20])  # warm the connection and the code paths
            progress(f"serving: {len(leads):,} sequential one-lead requests ({label})")
            latencies = _sequential(port, leads)
            p50, p99 = statistics.median(latencies), _quantile(latencies, 0.99)
            results += [
                Result(SECTION, f"one lead with reasons, {label}: p50 of {len(leads):,} sequential requests", p50,
                       "ms", [], "< 15 ms", p50 < 15),
                Result(SECTION, f"one lead with reasons, {label}: p99", p99, "ms", [], "< 50 ms", p99 < 50),
            ]
            if not with_id:
                single_p50 = p50

        progress(f"serving: one request of {size['batch_leads']:,} leads x {size['batch_repeats']}")
        big = _leads(size["batch_leads"], seed=41, with_id=False)
        client, big_seconds = _Client(port), []
        for _ in range(size["batch_repeats"]):
            started = time.perf_counter()
            if client.post(big) != 200:
                raise RuntimeError("the many-lead request failed")
            big_seconds.append(time.perf_counter() - started)
        big_median = statistics.median(big_seconds)
        big_per_lead = big_median / len(big) * 1000
        body_bytes = len(json.dumps({"dataframe_records": big}).encode())

        progress(f"serving: {size['clients']} concurrent clients for {size['seconds']} s")
        requests, errors, elapsed = _concurrent(port, _leads(2000 if not quick else 100, seed=51, with_id=False),
                                                size["clients"], size["seconds"])
    except RuntimeError as error:
        raise RuntimeError(f"{error}; serve.log ends:\n{(work / 'serve.log').read_text()[-3000:]}") from error
    finally:
        stop_server(server)
        log.close()

    results += [
        Result(SECTION, f"one request of {len(big):,} leads ({body_bytes / len(big):,.0f} bytes of JSON a lead)",
               big_median, "s", big_seconds),
        Result(SECTION, f"  per lead, in the {len(big):,}-lead request", big_per_lead, "ms"),
        Result(SECTION, f"{size['clients']} concurrent clients, {size['seconds']} s: requests per second "
               f"(`lead-assets serve --workers {workers}`)",
               requests / elapsed, "req/s", [], ">= 100", requests / elapsed >= 100,
               note=f"{requests:,} requests in {elapsed:.1f} s"),
        Result(SECTION, f"{size['clients']} concurrent clients: errors", errors, "", [], "0", errors == 0),
        Result(SECTION, f"batch path per lead ({batch_runs[0]['rows']:,}-lead file: parse, clean, features, "
               "score with reasons)", batch_per_lead, "ms", batch_ms),
        Result(SECTION, "one-lead request p50 / batch per lead", single_p50 / batch_per_lead, "x"),
        Result(SECTION, f"{len(big):,}-lead request per lead / batch per lead", big_per_lead / batch_per_lead, "x"),
    ]
    whole = stages.pop("whole invocation (MLflow + pyfunc)")
    answer = stages.pop("answer records")
    direct = stages.pop("direct answer (what serve runs: JSON records, no MLflow)")
    results += [Result(SECTION, f"one lead, in process: {name}", value, "ms") for name, value in stages.items()
                if name != "peak_rss_mb"]
    results += [
        Result(SECTION, "one lead, in process: score_records (type + clean + features + score + answer)", answer,
               "ms"),
        Result(SECTION, "one lead, in process: whole MLflow invocation (no HTTP; serve answers a small JSON "
               "request without it)", whole, "ms"),
        Result(SECTION, "one lead, in process: what serve runs (JSON records to the answer's JSON, no HTTP)", direct,
               "ms"),
        Result(SECTION, "  of which the floor (CatBoost predict + SHAP, one row)",
               stages["floor: CatBoost predict, one row"] + stages["floor: CatBoost SHAP, one row"], "ms"),
    ]
    return results
