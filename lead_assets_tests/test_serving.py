"""The scoring service's wrapper, driven as ASGI: readiness, token, size and row limits, swaps, healing
(a failed load retried with backoff, a removed champion withdrawn), error answers."""

import asyncio
import io
import json
import logging

import pandas as pd
import pytest

from lead_assets.serving import Served, ScoringService, concise_error, csv_rows, json_rows


def _echo_app(version: str):
    """A stand-in for MLflow's scoring app: answers with its version and the body it got."""

    async def app(scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status = 400 if body == b"bad" else 200
        payload = (json.dumps({"error_code": "BAD_REQUEST", "message": "Failed to predict data 'x\n0 1'. \nError: "
                               "invalid leads: record 0: created_date: unparseable_date: no"}).encode()
                   if status == 400 else json.dumps({"version": version, "bytes": len(body)}).encode())
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload[:10], "more_body": True})
        await send({"type": "http.response.body", "body": payload[10:], "more_body": False})

    return app


def _call(service, path="/invocations", body=b"{}", headers=(), chunks=1, content_type=b"application/json"):
    headers = [*headers, *([(b"content-type", content_type)] if content_type else [])]
    parts = [body[i::chunks] for i in range(chunks)] if chunks > 1 else [body]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST" if path == "/invocations" else "GET", "path": path,
             "headers": list(headers)}
    asyncio.run(service(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), json.loads(body)


def _service(versions, token=None, published=None, failures=None, **kwargs):
    """``failures``: how many times each version fails to load before it loads (``broken`` always fails)."""
    loads = []
    failures = dict(failures or {})

    def loader(name, version, cutoff_file):
        loads.append(version)
        if version == "broken":
            raise RuntimeError("cannot unpickle")
        if failures.get(version, 0) > 0:
            failures[version] -= 1
            raise OSError(f"artifacts for version {version} unreachable")
        return Served(version, _echo_app(version), None)

    current = iter(versions)
    state = {"version": next(current)}
    service = ScoringService("lead_scoring", lambda: state["version"], token=token, loader=loader, **kwargs)
    return service, state, loads


def test_not_ready_until_a_model_is_loaded_then_answers_with_its_version():
    service, state, loads = _service([None])
    assert _call(service, "/ping")[0] == 503
    assert _call(service)[0] == 503
    service.refresh()
    assert loads == []
    state["version"] = "3"
    service.refresh()
    status, headers, answer = _call(service)
    assert status == 200 and answer["version"] == "3" and headers[b"x-lead-model-version"] == b"3"


def test_a_new_champion_is_swapped_in_and_a_broken_one_keeps_the_old():
    service, state, loads = _service(["3"])
    service.refresh()
    state["version"] = "broken"
    service.refresh()
    service.refresh()
    assert _call(service)[2]["version"] == "3" and loads == ["3", "broken"]  # tried once, not every poll
    state["version"] = "4"
    service.refresh()
    assert _call(service)[2]["version"] == "4"
    state["version"] = "3"  # a rollback
    service.refresh()
    assert _call(service)[2]["version"] == "3"


def test_token_required_except_for_ping():
    service, _, _ = _service(["3"], token="secret")
    service.refresh()
    assert _call(service)[0] == 401
    assert _call(service, headers=[(b"authorization", b"Bearer nope")])[0] == 401
    assert _call(service, headers=[(b"authorization", b"Bearer secret")])[0] == 200
    assert _call(service, "/ping", headers=[])[0] == 200


def test_bodies_above_the_limit_are_refused_declared_or_streamed():
    service, _, _ = _service(["3"], max_request_bytes=100)
    service.refresh()
    status, _, answer = _call(service, body=b"x" * 101, headers=[(b"content-length", b"101")])
    assert status == 413 and "100 bytes" in answer["message"]
    assert _call(service, body=b"x" * 101, chunks=4)[0] == 413
    status, _, answer = _call(service, body=b"y" * 100, chunks=4, content_type=b"text/csv")
    assert status == 200 and answer["bytes"] == 100


def test_error_answers_name_the_reason_without_echoing_the_data():
    service, _, _ = _service(["3"])
    service.refresh()
    status, headers, answer = _call(service, body=b"bad", content_type=b"text/csv")
    assert status == 400 and answer["message"] == "invalid leads: record 0: created_date: unparseable_date: no"
    assert int(headers[b"content-length"]) == len(json.dumps(answer).encode())
    missing = json.dumps({"message": "Failed to predict data 'x'. \nError: Failed to enforce schema of data 'x' with "
                                     "schema '['a': string]'. Error: Model is missing inputs ['created_date']."})
    assert json.loads(concise_error(missing.encode()))["message"] == (
        "invalid leads: created_date: missing_field: created_date is required in every record")


def test_the_published_cutoff_follows_the_served_version(tmp_path):
    published = []

    def publish(version):
        published.append(version)
        return {"model_version": version, "cutoff": 0.4}

    service, state, _ = _service(["3"], cutoff_file=tmp_path / "cutoff.json", publish_cutoff=publish,
                                 cutoff_seconds=0)
    service.refresh()
    assert json.loads((tmp_path / "cutoff.json").read_text())["model_version"] == "3"
    service.refresh()
    state["version"] = "4"
    service.refresh()
    assert published == ["3", "3", "4"]
    assert json.loads((tmp_path / "cutoff.json").read_text())["model_version"] == "4"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_version_that_fails_to_load_is_retried_with_backoff_while_the_old_one_serves(caplog):
    clock = Clock()
    service, state, loads = _service(["3"], failures={"4": 2}, clock=clock, retry_seconds=5, retry_max_seconds=60)
    service.refresh()
    state["version"] = "4"
    with caplog.at_level(logging.WARNING, logger="lead_assets.serving"):
        service.refresh()  # attempt 1 fails: next try in 5 s
        clock.now += 4
        service.refresh()
        assert loads == ["3", "4"] and _call(service)[2]["version"] == "3"
        clock.now += 1
        service.refresh()  # attempt 2 fails: next try in 10 s
        clock.now += 9
        service.refresh()
        assert loads == ["3", "4", "4"] and _call(service)[2]["version"] == "3"
        clock.now += 1
        service.refresh()  # attempt 3 loads
    assert loads == ["3", "4", "4", "4"] and _call(service)[2]["version"] == "4"
    logged = caplog.text
    assert "version 4 failed to load (attempt 1)" in logged and "retrying in 5 s, still serving version 3" in logged
    assert "(attempt 2)" in logged and "retrying in 10 s" in logged and "attempt 3)" in logged


def test_the_backoff_stops_growing_at_its_ceiling():
    clock = Clock()
    service, state, loads = _service(["broken"], clock=clock, retry_seconds=5, retry_max_seconds=20)
    for _ in range(40):
        service.refresh()
        clock.now += 1
    assert len(loads) == 4  # at 0, 5, 15 and 35 s: 5, 10, then 20 (the ceiling)


def test_a_failed_first_load_is_retried_and_ping_says_why_until_then():
    clock = Clock()
    service, state, loads = _service(["3"], failures={"3": 1}, clock=clock, retry_seconds=5)
    service.refresh()
    status, headers, answer = _call(service, "/ping")
    assert status == 503 and headers[b"retry-after"] == b"5"
    assert "version 3 (the champion) failed to load" in answer["message"] and "unreachable" in answer["message"]
    assert "retrying in 5 s" in answer["message"]
    clock.now += 5
    service.refresh()
    assert _call(service, "/ping")[0] == 200 and _call(service)[2]["version"] == "3"


def test_a_removed_champion_is_withdrawn_and_said_then_served_again_when_it_comes_back(caplog):
    service, state, loads = _service(["3"])
    service.refresh()
    state["version"] = None  # the alias (or the version) was deleted
    with caplog.at_level(logging.WARNING, logger="lead_assets.serving"):
        service.refresh()
    assert "lead_scoring@champion was removed from the registry: stopped serving version 3" in caplog.text
    for path in ("/ping", "/invocations"):
        status, _, answer = _call(service, path)
        assert status == 503 and "was removed from the registry" in answer["message"], path
    state["version"] = "3"
    service.refresh()
    assert _call(service, "/ping")[0] == 200 and loads == ["3"]  # kept in memory: no second load
    state["version"] = None
    service.refresh()
    state["version"] = "4"
    service.refresh()
    assert _call(service)[2]["version"] == "4"


def _parquet(rows: int) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame({"lead_id": ["x"] * rows, "total_leads_droppped": [1] * rows}).to_parquet(buffer, index=False)
    return buffer.getvalue()


RECORD = {"lead_id": "a", "city_mapped": "pune"}


@pytest.mark.parametrize("content_type,body", [
    (b"application/json", {"dataframe_records": [RECORD] * 6}),
    (b"application/json", {"dataframe_split": {"columns": ["lead_id"], "data": [["a"]] * 6}}),
    (b"application/json", {"instances": [RECORD] * 6}),
    (b"application/json", {"inputs": {"lead_id": ["a"] * 6, "city_mapped": ["pune"] * 6}}),
    (b"text/csv", "lead_id,city_mapped\n" + "a,pune\n" * 6),
    (b"text/csv; charset=utf-8", "lead_id,city_mapped\n" + "a,pune\n" * 6),
    (b"application/vnd.apache.parquet", 6),
])
def test_rows_are_limited_in_every_format(content_type, body):
    service, _, _ = _service(["3"], max_request_rows=5)
    service.refresh()

    def encode(value):
        if isinstance(value, int):
            return _parquet(value)
        return value.encode() if isinstance(value, str) else json.dumps(value).encode()

    status, _, answer = _call(service, body=encode(body), content_type=content_type)
    assert status == 413 and "6 leads, more than the 5" in answer["message"] and "--max-request-rows" in answer["message"]
    fewer = (5 if isinstance(body, int) else body.replace("a,pune\n", "", 1) if isinstance(body, str)
             else json.loads(json.dumps(body).replace(', {"lead_id": "a", "city_mapped": "pune"}]', "]", 1)
                             .replace(', ["a"]]', "]", 1).replace(', "a"]', "]", 1).replace(', "pune"]', "]", 1)))
    assert _call(service, body=encode(fewer), content_type=content_type)[0] == 200


def test_a_tiny_parquet_body_of_a_million_rows_is_refused_from_its_footer():
    body = _parquet(1_000_000)
    assert len(body) < 64_000  # a few KB that pandas would turn into a frame of a million rows
    service, _, _ = _service(["3"])
    service.refresh()
    status, _, answer = _call(service, body=body, content_type=b"application/vnd.apache.parquet")
    assert status == 413 and "1,000,000 leads, more than the 10,000" in answer["message"]
    status, _, answer = _call(service, body=b"PAR1 not really", content_type=b"application/vnd.apache.parquet")
    assert status == 400 and "not a Parquet file" in answer["message"]


def test_csv_rows_count_records_not_line_breaks():
    quoted = "lead_id,city_mapped\n" + 'a,"line one\nline two"\n' * 3
    assert csv_rows(quoted.encode()) == 3
    assert csv_rows(quoted.encode(), at_most=100) == 7  # a cheap upper bound (line breaks) when under the limit
    assert json_rows(b'{"dataframe_records": []}') == 0


def test_a_lone_surrogate_is_a_400_naming_where_and_logged(caplog):
    service, _, _ = _service(["3"])
    service.refresh()
    body = b'{"dataframe_records": [{"lead_id": "a"}, {"lead_id": "b", "city_mapped": "Pune\\ud800"}]}'
    with caplog.at_level(logging.WARNING, logger="lead_assets.serving"):
        status, _, answer = _call(service, body=body)
    assert status == 400
    assert answer["message"].startswith("record 1: city_mapped: text holds a lone surrogate (\\ud800)")
    assert "lone surrogate" in caplog.text
    pair = b'{"dataframe_records": [{"lead_id": "a", "city_mapped": "\\ud83d\\ude00"}]}'  # an emoji, escaped
    assert _call(service, body=pair)[0] == 200


def test_a_malformed_big_body_is_never_echoed_back():
    service, _, _ = _service(["3"], max_request_bytes=2_000_000)
    service.refresh()
    body = b'{"dataframe_records": [' + b'{"lead_id": "a"},' * 50_000 + b"oops"
    assert len(body) > 850_000
    status, _, answer = _call(service, body=body)
    assert status == 400 and "not valid JSON" in answer["message"] and len(answer["message"]) < 300
    status, _, answer = _call(service, body=b'{"dataframe_records": [{"city_mapped": "\xff"}]}')
    assert status == 400 and "not UTF-8" in answer["message"]
    status, _, answer = _call(service, body=b"{}", content_type=None)
    assert status == 415 and "application/json" in answer["message"]
    status, _, answer = _call(service, body=b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert status == 400 and "nested too deeply" in answer["message"]
    echoed = json.dumps({"error_code": "BAD_REQUEST", "message": "Ensure that input is a valid JSON formatted string. "
                         "Error: 'x'\nInput: \n" + "{" * 900_000}).encode()
    assert len(concise_error(echoed)) < 200  # MLflow's echo of the body is cut
    long = json.dumps({"error_code": "BAD_REQUEST", "message": "y" * 900_000}).encode()
    message = json.loads(concise_error(long))["message"]
    assert len(message) < 1_100 and message.endswith("(899,000 more characters not shown)")
    assert len(concise_error(b"z" * 900_000)) < 1_100


def test_a_small_json_request_is_answered_without_mlflow_exactly_as_mlflow_answers_it(tmp_path):
    """The direct path (one lead in milliseconds) gives what MLflow's pyfunc answers (its input cast,
    then ``predict``); what it does not take (a refused lead, other shapes, text params) goes to
    MLflow's app."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature

    from lead_assets.core.leads import synth

    from lead_assets.core.release import registry
    from lead_assets.core.model.recipe import TrainConfig
    from lead_assets.core.model.training import train_model
    from lead_assets_tests.factories import FAST, make_features

    model = train_model(make_features(n=1200, seed=8), TrainConfig(**FAST)).model
    mlflow.pyfunc.save_model(str(tmp_path / "m"), python_model=registry._pyfunc_class()(model),
                             signature=ModelSignature(registry.raw_input_schema(), None, registry.params_schema()))
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    served = Served("3", _echo_app("3"), loaded)
    service = ScoringService("lead_scoring", lambda: "3", loader=lambda *_: served)
    service.refresh()
    records = json.loads(synth.generate_leads("2021-08-01", 1, 3, seed=9, labelled=False).to_json(orient="records"))
    for payload in ({"dataframe_records": records[:1]}, {"dataframe_records": records, "params": {"cutoff": 0.3}},
                    {"dataframe_records": [dict(records[0], lead_id="crm-1")]}):
        status, headers, answer = _call(service, body=json.dumps(payload).encode())
        expected = loaded.predict(pd.DataFrame(payload["dataframe_records"]), params=payload.get("params"))
        assert status == 200 and headers[b"x-lead-model-version"] == b"3"
        assert answer == json.loads(json.dumps({"predictions": expected}))
    for payload in ({"dataframe_records": [dict(records[0], referred_lead=True)]},
                    {"dataframe_records": records[:1], "params": {"cutoff": "high"}},
                    {"dataframe_split": {"columns": list(records[0]), "data": [list(records[0].values())]}},
                    {"dataframe_records": records * 30}):
        status, _, answer = _call(service, body=json.dumps(payload).encode())
        assert status == 200 and answer["version"] == "3"  # MLflow's app (here a stand-in) answered
