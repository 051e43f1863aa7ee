"""The scoring service's wrapper, driven as ASGI: readiness, token, size limit, swaps, error answers."""

import asyncio
import json

from lead_assets.serving import Served, ScoringService, concise_error


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


def _call(service, path="/invocations", body=b"{}", headers=(), chunks=1):
    parts = [body[i::chunks] for i in range(chunks)] if chunks > 1 else [body]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": list(headers)}
    asyncio.run(service(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), json.loads(body)


def _service(versions, token=None, published=None, **kwargs):
    loads = []

    def loader(name, version, cutoff_file):
        loads.append(version)
        if version == "broken":
            raise RuntimeError("cannot unpickle")
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
    status, _, answer = _call(service, body=b"y" * 100, chunks=4)
    assert status == 200 and answer["bytes"] == 100


def test_error_answers_name_the_reason_without_echoing_the_data():
    service, _, _ = _service(["3"])
    service.refresh()
    status, headers, answer = _call(service, body=b"bad")
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
