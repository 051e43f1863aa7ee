"""`lead-assets serve` on a free loopback port: the champion over HTTP, equal to `scored_leads`.

A champion trained on synthetic leads scores three new days through Dagster (`scored_leads`,
with the trailing-window cut-off on the third day); the service, started as a user starts it,
answers the same leads with the same probability, score, bucket and reasons, refuses malformed
and oversized requests with a 4xx naming field and rule, and follows a promotion and a rollback
while a client keeps scoring, without one failed request. Then it refuses too many rows in every
format (a tiny Parquet body of a million rows without its memory growing), a lone surrogate and a
large malformed body without echoing it; it withdraws a removed champion (503 saying so) and
serves it again when the alias is back; and a promoted version whose artifacts are briefly
unreachable is retried until it loads. About a minute and a half.
"""

import http.client
import io
import json
import shutil
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import instance_for_test, materialize
import pytest

from lead_assets.core.inbox import ledger

from lead_assets.core.release import registry

from lead_assets.core.store import warehouse
from lead_assets.core.store.experiments import use_experiment
from lead_assets.core.schema import CREATED_DATE, LEAD_ID
from lead_assets.core.leads.synth import generate_leads
from lead_assets.defs.leads.cleaning import cleaned_leads
from lead_assets.defs.leads.features import lead_features
from lead_assets.defs.inbox.ingest import raw_leads
from lead_assets.defs.resources import LeadHomeResource, resources_for
from lead_assets.defs.scoring.scoring import scored_leads
from lead_assets_tests.served import lead_assets_serve, register_model, wait_for

pytestmark = pytest.mark.slow(seconds=20)  # started first by make test (conftest.py)

NAME = "lead_scoring"
TOKEN = "s3rve-t0ken-for-tests"
MAX_BYTES = 600_000
NEW_DAYS = ("2021-09-01", "2021-09-02", "2021-09-03")


def _batch(home, new: pd.DataFrame) -> pd.DataFrame:
    """The new days through raw_leads -> ... -> scored_leads, one Dagster run (as the inbox sensor starts)."""
    path = home.inbox / "new.csv"
    new.to_csv(path.path, index=False)
    ledger.receive(home, path, date(2021, 7, 1), date(2021, 9, 3))
    lead_home = LeadHomeResource()
    with instance_for_test(overrides={"telemetry": {"enabled": False}}) as instance:
        result = materialize([raw_leads, cleaned_leads, lead_features, scored_leads], instance=instance,
                             resources=resources_for(lead_home),
                             tags={"dagster/asset_partition_range_start": NEW_DAYS[0],
                                   "dagster/asset_partition_range_end": NEW_DAYS[-1]})
    assert result.success
    return warehouse.read_partitions(home.warehouse, "scored_leads", list(NEW_DAYS))


class Client:
    def __init__(self, port: int, token: str | None = TOKEN):
        self.port, self.token = port, token
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, body, params: dict | None = None, raw: bytes | None = None, content_type: str = "application/json"):
        payload = raw if raw is not None else json.dumps(
            body if params is None else {**body, "params": params}).encode()
        headers = {"Content-Type": content_type}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.connection.request("POST", "/invocations", body=payload, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        try:
            answer = json.loads(data)
        except ValueError:
            answer = data.decode(errors="replace")
        return response.status, response.getheader("x-lead-model-version"), answer

    def ping(self) -> int:
        try:
            self.connection.request("GET", "/ping")
            response = self.connection.getresponse()
            response.read()
            return response.status
        except OSError:
            self.connection.close()
            return 0


def _records(frame: pd.DataFrame) -> dict:
    return {"dataframe_records": json.loads(frame.to_json(orient="records"))}


def service(lead_home, tmp_path):
    """`lead-assets serve` as a user starts it (after the registry exists: two first migrations of one
    sqlite file collide)."""
    return lead_assets_serve(lead_home.root, tmp_path / "serve.log", "--poll-seconds", "1", "--max-request-bytes",
                             str(MAX_BYTES), env={"LEAD_ASSETS_SERVE_TOKEN": TOKEN})


def test_served_champion_equals_scored_leads_and_follows_promotions(lead_home, tmp_path):
    use_experiment("lead_scoring_served", lead_home)
    first = register_model(lead_home, seed=1)
    second = register_model(lead_home, seed=2, depth=4)
    registry.set_champion(NAME, first)
    new = generate_leads(NEW_DAYS[0], len(NEW_DAYS), 90, seed=11, labelled=False)
    batch = _batch(lead_home, new)
    assert len(batch) == len(new) and set(batch["model_version"]) == {first}
    assert batch["cutoff_rule"].str.startswith("top ").any() and batch["cutoff_rule"].str.startswith("fixed").any()

    with service(lead_home, tmp_path) as (process, port):
        _check_service(process, port, batch, new, first, second)
        _check_limits(process, port, new, tmp_path / "serve.log")
        _check_healing(process, port, new, first, second, tmp_path / "serve.log")


def _check_service(process, port, batch, new, first, second):
    client = Client(port)
    wait_for("the service to load the champion", lambda: client.ping() == 200, process, 180, every=0.5)

    # the published cut-off: the latest scored day's, for the served version
    latest = batch[batch[CREATED_DATE].dt.strftime("%Y-%m-%d") == NEW_DAYS[-1]]
    status, version, answer = client.post(_records(new.tail(5)))
    assert status == 200 and version == first, answer
    assert {a["cutoff"] for a in answer["predictions"]} == {latest["cutoff"].iloc[-1]}
    assert answer["predictions"][0]["cutoff_rule"].startswith(f"as scored on {NEW_DAYS[-1]}: top ")

    # batch and online agree, given the cut-off each batch row recorded (lead ids derived, not sent)
    created = pd.to_datetime(new[CREATED_DATE])
    served = []
    for cut, rows in batch.groupby("cutoff"):
        chosen = new[created.isin(rows[CREATED_DATE]).to_numpy()]
        status, version, answer = client.post(_records(chosen), params={"cutoff": float(cut)})
        assert status == 200, answer
        served += answer["predictions"]
    served = pd.DataFrame(served).set_index(LEAD_ID)
    expected = batch.set_index(LEAD_ID)
    assert sorted(served.index) == sorted(expected.index)
    served = served.loc[expected.index]
    np.testing.assert_allclose(served["probability"], expected["probability"], rtol=0, atol=1e-9)
    for column in ("score", "bucket", "cutoff", "reasons", "unseen_levels", "unseen_columns", "model_version"):
        assert served[column].tolist() == expected[column].tolist(), column
    for k in (1, 2, 3):
        assert [d[k - 1]["feature"] for d in served["reason_details"]] == expected[f"reason_{k}_feature"].tolist()
        assert [d[k - 1]["value"] for d in served["reason_details"]] == expected[f"reason_{k}_value"].tolist()
        np.testing.assert_allclose([d[k - 1]["size"] for d in served["reason_details"]],
                                   expected[f"reason_{k}_shap"].abs(), atol=1e-12)
    assert (served["bucket"] != "junk").any() and (served["bucket"] == "junk").any()

    # bad requests: a 4xx naming the field and the rule; no token: 401; too large: 413
    one = json.loads(new.head(1).to_json(orient="records"))[0]
    bad = {
        "created_date: missing_field": {"dataframe_records": [{k: v for k, v in one.items() if k != CREATED_DATE}]},
        "created_date: unparseable_date": {"dataframe_records": [dict(one, created_date="2021-02-30")]},
        "total_leads_droppped: negative_count": {"dataframe_records": [dict(one, total_leads_droppped=-3)]},
        "referred_lead: not_binary": {"dataframe_records": [dict(one, referred_lead=2)]},
        "total_leads_droppped": {"dataframe_records": [dict(one, total_leads_droppped="many")]},
        "dataframe_records": {"records": [one]},
        "list of records": {"dataframe_records": one},
        "params.cutoff: out_of_range": {"dataframe_records": [one], "params": {"cutoff": 7}},
    }
    for expected_text, body in bad.items():
        status, _, answer = client.post(body)
        assert 400 <= status < 500 and expected_text in answer["message"], (expected_text, status, answer)
        assert "Failed to predict data" not in answer["message"]
    status, _, answer = client.post(None, raw=b'{"dataframe_records": [')
    assert status == 400 and "valid JSON" in answer["message"]
    assert Client(port, token=None).post(_records(new.head(1)))[0] == 401
    assert Client(port, token="wrong").post(_records(new.head(1)))[0] == 401
    status, _, answer = client.post(None, raw=b" " * (MAX_BYTES + 1))
    assert status == 413 and f"{MAX_BYTES:,} bytes" in answer["message"]

    # a promotion and a rollback while a client keeps scoring: every request answered
    seen: list[tuple[int, str | None, str | None]] = []
    stop = threading.Event()

    def keep_scoring():
        steady = Client(port)
        body = _records(new.head(1))
        while not stop.is_set():
            status, version, answer = steady.post(body)
            seen.append((status, version, answer["predictions"][0]["model_version"] if status == 200 else str(answer)))

    worker = threading.Thread(target=keep_scoring)
    worker.start()
    try:
        def answered_by(version, since):
            return lambda: any(s == 200 and v == version for s, v, _ in seen[since:])

        time.sleep(1)
        registry.set_champion(NAME, second)
        promoted_at = time.monotonic()
        wait_for(f"version {second} to answer", answered_by(second, len(seen)), process, 60, every=0.2)
        assert time.monotonic() - promoted_at < 60
        registry.rollback(NAME)
        wait_for(f"version {first} to answer again", answered_by(first, len(seen)), process, 60, every=0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert seen and all(s == 200 for s, _, _ in seen), [x for x in seen if x[0] != 200][:3]
    assert all(v == body_version for _, v, body_version in seen)
    order = [v for i, (_, v, _) in enumerate(seen) if i == 0 or seen[i - 1][1] != v]
    assert order == [first, second, first], order


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024


def _check_limits(process, port, new, log):
    client = Client(port)
    buffer = io.BytesIO()
    one = new.head(1).reset_index(drop=True)
    one.loc[one.index.repeat(1_000_000)].reset_index(drop=True).to_parquet(buffer, index=False)
    assert len(buffer.getvalue()) < MAX_BYTES  # a small body that pandas would make a million-row frame of
    before = _peak_rss_mb(process.pid)
    status, _, answer = client.post(None, raw=buffer.getvalue(), content_type="application/vnd.apache.parquet")
    assert status == 413 and "1,000,000 leads, more than the 10,000" in answer["message"], answer
    assert _peak_rss_mb(process.pid) - before < 100, (before, _peak_rss_mb(process.pid))

    five = io.BytesIO()
    new.head(5).to_parquet(five, index=False)
    status, _, answer = client.post(None, raw=five.getvalue(), content_type="application/vnd.apache.parquet")
    assert status == 200 and len(answer["predictions"]) == 5, answer
    status, _, answer = client.post(None, raw=("lead_id\n" + "x\n" * 10_001).encode(), content_type="text/csv")
    assert status == 413 and "10,001 leads" in answer["message"], answer

    record = json.loads(new.head(1).to_json(orient="records"))[0]
    body = json.dumps({"dataframe_records": [record, dict(record, city_mapped="Pune\ud800")]}).encode()
    status, _, answer = client.post(None, raw=body)
    assert status == 400 and answer["message"].startswith("record 1: city_mapped: text holds a lone surrogate"), answer
    malformed = b'{"dataframe_records": [' + json.dumps(record).encode() * (550_000 // len(json.dumps(record))) + b"]}"
    assert 500_000 < len(malformed) < MAX_BYTES
    status, _, answer = client.post(None, raw=malformed)
    assert status == 400 and len(json.dumps(answer)) < 1_000, answer
    logged = log.read_text()
    assert "lone surrogate" in logged and "not valid JSON" in logged


def _check_healing(process, port, new, first, second, log):
    from mlflow import MlflowClient

    client, body = Client(port), _records(new.head(1))
    mlflow_client = MlflowClient()
    mlflow_client.delete_registered_model_alias(NAME, "champion")  # the champion deleted
    wait_for("the removed champion to be withdrawn", lambda: client.ping() == 503, process, 30, every=0.2)
    status, _, answer = client.post(body)
    assert status == 503 and f"{NAME}@champion was removed from the registry" in answer["message"], answer
    assert f"stopped serving version {first}" in log.read_text()
    registry.set_champion(NAME, first)
    wait_for("the champion to be served again", lambda: client.ping() == 200, process, 30, every=0.2)
    assert client.post(body)[1] == first

    # a promoted version whose artifacts are briefly unreachable: retried until it loads
    source = mlflow_client.get_model_version(NAME, second).source
    folder = Path(mlflow_client.get_logged_model(source.split("/")[-1]).artifact_location.removeprefix("file://"))
    hidden = folder.with_name(folder.name + ".away")
    shutil.move(folder, hidden)
    try:
        registry.set_champion(NAME, second)
        wait_for("the failed load to be logged", lambda: f"version {second} failed to load (attempt 1)"
                 in log.read_text(), process, 60, every=0.2)
        status, version, _ = client.post(body)
        assert status == 200 and version == first and client.ping() == 200  # the old version keeps serving
    finally:
        shutil.move(hidden, folder)
    wait_for(f"version {second} to load on a retry", lambda: client.post(body)[1] == second, process, 60, every=0.5)
    assert "retrying in 5 s, still serving version" in log.read_text()


def test_every_worker_answers_once_one_says_it_is_ready(lead_home, tmp_path):
    """`--workers 2`: after the first /ping 200, no new connection reaches a worker still loading
    (one that accepted while it loaded answered 503 beside a ready one)."""
    use_experiment("lead_scoring_served", lead_home)
    registry.set_champion(NAME, register_model(lead_home, seed=3, depth=4))
    record = _records(generate_leads(NEW_DAYS[0], 1, 1, seed=12, labelled=False))
    with lead_assets_serve(lead_home.root, tmp_path / "serve.log", "--workers", "2", "--poll-seconds", "1",
                           env={"LEAD_ASSETS_SERVE_TOKEN": TOKEN}) as (process, port):
        wait_for("a worker answering /ping 200", lambda: Client(port).ping() == 200, process, timeout=120,
                 every=0.2)
        answers = [Client(port).post(record)[0] for _ in range(40)]  # a new connection each time
        assert answers == [200] * 40
