"""``lead-assets serve``: MLflow's own scoring server for the current champion, following the alias.

MLflow's scoring server (``mlflow.pyfunc.scoring_server.init``) answers for one loaded model.
:class:`ScoringService` is a small ASGI app in front of it that

* polls the registry every few seconds; when ``champion`` points at another version (a
  promotion or a rollback) it loads that version in the background, scores the model's input
  example once (so the first real request is not the slow one), then swaps the scoring app in
  one assignment. A request already running finishes on the app it started on; nothing fails
  during a switch. A version that fails to load is logged and the current one keeps serving.
* answers ``/ping`` with 503 until a model is loaded (the readiness probe), then MLflow's 200;
* refuses a body above ``max_request_bytes`` with 413 before MLflow parses it;
* requires ``Authorization: Bearer <token>`` on everything but ``/ping`` and ``/health`` when
  a token is set (``lead-assets serve`` refuses to listen beyond loopback without one);
* keeps the published junk cut-off current (:mod:`lead_assets.core.online`): the latest scored
  day's cut-off for the served version, written as JSON where the model reads it.

Every answer carries ``X-Lead-Model-Version``: the version that produced it.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("lead_assets.serving")

DEFAULT_MAX_REQUEST_BYTES = 1 << 20  # 1 MiB: about 1,500 leads of JSON records
DEFAULT_POLL_SECONDS = 5.0
DEFAULT_CUTOFF_SECONDS = 60.0
OPEN_PATHS = ("/ping", "/health")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Served:
    """One loaded version and the MLflow scoring app that answers for it."""

    version: str
    app: Any
    model: Any


def load_version(model_name: str, version: str, cutoff_file: Path | None) -> Served:
    """Load ``models:/name/version``, build MLflow's scoring app for it and score its input example once."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(
        f"models:/{model_name}/{version}",
        model_config={"model_name": model_name, "model_version": str(version),
                      "cutoff_file": str(cutoff_file) if cutoff_file else ""})
    example = model.input_example
    if example is not None:
        model.predict(example)
    return Served(str(version), scoring_server.init(model), model)


def write_json_atomically(path: Path, value: dict | None) -> None:
    """Replace ``path`` in one rename (readers never see half a file); None removes it."""
    if value is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(value, handle)
    os.replace(handle.name, path)


class ScoringService:
    """The ASGI app: auth, size limit, readiness, and the current champion's MLflow scoring app."""

    def __init__(self, model_name: str, champion: Callable[[], str | None], *, token: str | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 cutoff_file: Path | None = None, publish_cutoff: Callable[[str], dict | None] | None = None,
                 cutoff_seconds: float = DEFAULT_CUTOFF_SECONDS,
                 loader: Callable[[str, str, Path | None], Served] = load_version):
        self.model_name = model_name
        self.champion = champion
        self.token = token.encode() if token else None
        self.max_request_bytes = max_request_bytes
        self.poll_seconds = poll_seconds
        self.cutoff_file = cutoff_file
        self.publish_cutoff = publish_cutoff
        self.cutoff_seconds = cutoff_seconds
        self.loader = loader
        self.current: Served | None = None
        self._failed: str | None = None
        self._told_none = False
        self._cutoff_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ following the champion
    def refresh(self) -> None:
        """One poll: load and swap in a new champion, and refresh the published cut-off when due."""
        try:
            version = self.champion()
        except Exception as error:  # the registry is down: keep serving what is loaded
            log.warning("cannot read %s@champion: %s", self.model_name, error)
            return
        current = self.current
        if version is None and current is None and not self._told_none:
            log.warning("no %s@champion in the registry yet: /ping answers 503 until one is promoted", self.model_name)
            self._told_none = True
        if version is not None and (current is None or version != current.version) and version != self._failed:
            try:
                started = time.monotonic()
                loaded = self.loader(self.model_name, version, self.cutoff_file)
            except Exception:
                log.exception("%s version %s failed to load; still serving %s", self.model_name, version,
                              current.version if current else "nothing")
                self._failed = version
                return
            self._publish(loaded.version)
            self.current = loaded
            self._failed = None
            log.warning("serving %s version %s (loaded in %.1f s)", self.model_name, version,
                        time.monotonic() - started)
        elif current is not None and time.monotonic() - self._cutoff_at >= self.cutoff_seconds:
            self._publish(current.version)

    def _publish(self, version: str) -> None:
        if self.cutoff_file is None or self.publish_cutoff is None:
            return
        self._cutoff_at = time.monotonic()
        try:
            write_json_atomically(self.cutoff_file, self.publish_cutoff(version))
        except Exception as error:  # the warehouse is unreachable: the model falls back, and says so
            log.warning("cannot publish the junk cut-off for version %s: %s", version, error)

    def _follow(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.poll_seconds)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, name="champion-follower", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    # -------------------------------------------------------------------------------- ASGI
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        headers = dict(scope.get("headers") or [])
        if path not in OPEN_PATHS and self.token is not None and not self._authorized(headers):
            await _answer(send, 401, "UNAUTHENTICATED", "send Authorization: Bearer <token>",
                          [(b"www-authenticate", b"Bearer")])
            return
        served = self.current
        if served is None:
            await _answer(send, 503, "TEMPORARILY_UNAVAILABLE",
                          f"no {self.model_name}@champion loaded yet", [(b"retry-after", b"5")])
            return
        receive = await self._bounded_body(headers, receive, send)
        if receive is None:
            return

        held: dict | None = None
        chunks: list[bytes] = []

        async def tagged(message):
            nonlocal held
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-lead-model-version", served.version.encode())]
                message = dict(message, headers=headers)
                if message["status"] >= 400:  # an error answer is rewritten once its whole body is in
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = concise_error(b"".join(chunks))
                headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
                await send(dict(held, headers=[*headers, (b"content-length", str(len(body)).encode())]))
                held = None
                message = {"type": "http.response.body", "body": body, "more_body": False}
            await send(message)

        await served.app(scope, receive, tagged)

    def _authorized(self, headers: dict) -> bool:
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)

    async def _bounded_body(self, headers: dict, receive, send):
        """The whole body, read up to the limit, replayed to MLflow; None when refused with 413."""
        limit = self.max_request_bytes
        too_large = f"the request body is larger than {limit:,} bytes (--max-request-bytes); send fewer leads"
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            await _answer(send, 400, "BAD_REQUEST", "Content-Length is not a number")
            return None
        if declared > limit:
            await _answer(send, 413, "REQUEST_TOO_LARGE", too_large)
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _answer(send, 413, "REQUEST_TOO_LARGE", too_large)
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


_PREDICT_FAILED = re.compile(r"^Failed to predict data .*?\bError: (?P<reason>.*)$", re.S)
_SCHEMA_FAILED = re.compile(r"^Failed to enforce schema of data .*\bError: (?P<reason>.*)$", re.S)
_MISSING = re.compile(r"^Model is missing inputs \[(?P<names>[^\]]*)\]")


def concise_error(body: bytes) -> bytes:
    """MLflow's error answer without the echo of the request's data and the model's whole schema.

    MLflow prefixes a failed prediction with ``Failed to predict data '<the frame>'`` and a
    schema failure with the full schema; the reason after ``Error:`` is what names the field.
    A missing field is said as the other rules are: ``<field>: missing_field: ...``.
    """
    try:
        answer = json.loads(body)
        message = str(answer["message"])
    except (ValueError, KeyError, TypeError):
        return body
    for pattern in (_PREDICT_FAILED, _SCHEMA_FAILED):
        found = pattern.match(message)
        if found:
            message = found.group("reason").strip()
    missing = _MISSING.match(message)
    if missing:
        names = [n.strip(" '\"") for n in missing.group("names").split(",") if n.strip()]
        message = "invalid leads: " + "; ".join(f"{n}: missing_field: {n} is required in every record" for n in names)
    answer["message"] = message
    answer.pop("stack_trace", None)
    return json.dumps(answer).encode()


async def _answer(send, status: int, code: str, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def warehouse_cutoff(home, lookback_days: int = 14) -> Callable[[str], dict | None]:
    """The latest ``scored_leads`` day (of the last ``lookback_days`` scored) that ``version`` scored."""
    from lead_assets.core import warehouse
    from lead_assets.core.online import published_cutoff

    def latest(version: str) -> dict | None:
        days = sorted(warehouse.existing_partitions(home.warehouse, "scored_leads"))
        for day in reversed(days[-lookback_days:]):
            found = published_cutoff(warehouse.read_partitions(home.warehouse, "scored_leads", [day]), version)
            if found is not None:
                return found
        return None

    return latest


def serve(home, model_name: str, host: str = "127.0.0.1", port: int = 5050, token: str | None = None,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
    """Run the service with uvicorn until interrupted (what ``lead-assets serve`` does)."""
    import mlflow
    import uvicorn

    from lead_assets.core import registry

    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="lead-serve-") as folder:
        service = ScoringService(
            model_name, lambda: registry.champion_version(model_name), token=token,
            max_request_bytes=max_request_bytes, poll_seconds=poll_seconds,
            cutoff_file=Path(folder) / "cutoff.json", publish_cutoff=warehouse_cutoff(home))
        uvicorn.run(service, host=host, port=port, log_level="warning", lifespan="on")
