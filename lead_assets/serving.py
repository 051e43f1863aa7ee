"""``lead-assets serve``: MLflow's own scoring server for the current champion, following the alias.

MLflow's scoring server (``mlflow.pyfunc.scoring_server.init``) answers for one loaded model.
:class:`ScoringService` is a small ASGI app in front of it that

* polls the registry every few seconds; when ``champion`` points at another version (a
  promotion or a rollback) it loads that version in the background, scores the model's input
  example once (so the first real request is not the slow one), then swaps the scoring app in
  one assignment. A request already running finishes on the app it started on; nothing fails
  during a switch.
* heals: a version that fails to load (artifacts briefly unreachable) is tried again with
  backoff (``retry_seconds`` doubling up to ``retry_max_seconds``), each failure logged, while
  the current version (if any) keeps serving; once it loads, it is served.
* answers ``/ping`` with 503 while nothing is served, with a body that says why (not loaded yet,
  failed to load and when it is retried, or the alias was removed), then MLflow's 200. When the
  ``champion`` alias disappears (the version or the alias was deleted) the service stops
  answering with that version: ``/ping`` and every request get 503 and the log says so; the
  model stays in memory, so the alias coming back to it is served again at once.
* refuses a body above ``max_request_bytes`` (413) before MLflow parses it, and one holding more
  than ``max_request_rows`` leads (413), counted without building the frame: JSON's
  ``dataframe_records`` / ``dataframe_split`` / ``instances`` / ``inputs``, CSV records, and a
  Parquet body's row count from its footer. A body that is not valid JSON or Parquet, text that
  is not UTF-8 or holds a lone surrogate get a 400 naming the problem, and are logged;
* requires ``Authorization: Bearer <token>`` on everything but ``/ping`` and ``/health`` when
  a token is set (``lead-assets serve`` refuses to listen beyond loopback without one);
* keeps the published junk cut-off current (:mod:`lead_assets.core.scoring.online`): the latest scored
  day's cut-off for the served version, written as JSON where the model reads it.

Every answer carries ``X-Lead-Model-Version``: the version that produced it. An error answer
never quotes more than ``MAX_ERROR_CHARS`` of what it complains about.
"""

from __future__ import annotations

import csv
import errno
import hmac
import io
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("lead_assets.serving")

DEFAULT_MAX_REQUEST_BYTES = 1 << 20  # 1 MiB: about 1,500 leads of JSON records
# 10,000 leads: ~2.6 s of scoring at the measured 0.26 ms a lead (README, "Online scoring"); a JSON
# body reaches its byte limit at ~1,500, while a Parquet body of 8-115 KB can hold a million rows.
DEFAULT_MAX_REQUEST_ROWS = 10_000
PARQUET_INFLATION = 64  # a Parquet body may unpack to this many times max_request_bytes
MAX_ERROR_CHARS = 1_000
DEFAULT_POLL_SECONDS = 5.0
DEFAULT_RETRY_SECONDS = 5.0
DEFAULT_RETRY_MAX_SECONDS = 300.0
DEFAULT_CUTOFF_SECONDS = 60.0
OPEN_PATHS = ("/ping", "/health")
PAGE_PATHS = ("/calls", "/calls.csv")  # the reps' call list (lead_assets.call_list), under the same access rules
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Refused(Exception):
    """A request answered before MLflow sees it: HTTP status, MLflow-style error code, message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class LoadFailure:
    """A version that failed to load: how often, and when it is tried again."""

    version: str
    attempts: int
    retry_at: float
    error: str


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
    """The ASGI app: auth, size limits, readiness, and the current champion's MLflow scoring app."""

    def __init__(self, model_name: str, champion: Callable[[], str | None], *, token: str | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 cutoff_file: Path | None = None, publish_cutoff: Callable[[str], dict | None] | None = None,
                 cutoff_seconds: float = DEFAULT_CUTOFF_SECONDS,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS, retry_max_seconds: float = DEFAULT_RETRY_MAX_SECONDS,
                 loader: Callable[[str, str, Path | None], Served] = load_version,
                 clock: Callable[[], float] = time.monotonic, pages: Any = None):
        self.model_name = model_name
        self.champion = champion
        self.token = token.encode() if token else None
        self.max_request_bytes = max_request_bytes
        self.max_request_rows = max_request_rows
        self.poll_seconds = poll_seconds
        self.cutoff_file = cutoff_file
        self.publish_cutoff = publish_cutoff
        self.cutoff_seconds = cutoff_seconds
        self.retry_seconds = retry_seconds
        self.retry_max_seconds = retry_max_seconds
        self.loader = loader
        self.clock = clock
        self.pages = pages  # answers PAGE_PATHS: (status, content type, body) = pages.answer(path, query)
        self.current: Served | None = None
        self.unavailable = f"no {model_name}@champion loaded yet"  # why nothing is served (the 503's body)
        self.failure: LoadFailure | None = None
        self._withdrawn: Served | None = None  # the version served before its alias disappeared
        self._told_none = False
        self._cutoff_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ following the champion
    def refresh(self) -> None:
        """One poll: follow the alias (load, retry, withdraw) and refresh the published cut-off when due."""
        try:
            version = self.champion()
        except Exception as error:  # the registry is down: keep serving what is loaded
            log.warning("cannot read %s@champion: %s", self.model_name, error)
            return
        current = self.current
        if version is None:
            self._no_champion(current)
        elif current is not None and version == current.version:
            if self.clock() - self._cutoff_at >= self.cutoff_seconds:
                self._publish(current.version)
        elif self._withdrawn is not None and version == self._withdrawn.version:
            self._publish(version)
            self.current, self._withdrawn = self._withdrawn, None
            log.warning("%s@champion is version %s again: serving it", self.model_name, version)
        else:
            self._load(version, current)

    def _no_champion(self, current: Served | None) -> None:
        if current is not None:
            self._withdrawn, self.current = current, None
            self.unavailable = (f"{self.model_name}@champion was removed from the registry: version "
                                f"{current.version} is no longer served; promote a version to serve again")
            log.error("%s@champion was removed from the registry: stopped serving version %s; /ping and "
                      "/invocations answer 503 until a version is promoted", self.model_name, current.version)
        elif self._withdrawn is None:
            self.unavailable = f"no {self.model_name}@champion in the registry: promote a version to serve it"
            if not self._told_none:
                log.warning("no %s@champion in the registry yet: /ping answers 503 until one is promoted",
                            self.model_name)
                self._told_none = True
        self.failure = None

    def _load(self, version: str, current: Served | None) -> None:
        """Load ``version`` unless it failed and its next try is not due; back off after each failure."""
        failure = self.failure if self.failure is not None and self.failure.version == version else None
        now = self.clock()
        if failure is not None and now < failure.retry_at:
            return
        attempts = failure.attempts + 1 if failure else 1
        try:
            loaded = self.loader(self.model_name, version, self.cutoff_file)
        except Exception as error:
            delay = min(self.retry_max_seconds, self.retry_seconds * 2 ** (attempts - 1))
            summary = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
            self.failure = LoadFailure(version, attempts, now + delay, summary)
            serving = f"still serving version {current.version}" if current else "serving nothing"
            log.error("%s version %s failed to load (attempt %d): %s; retrying in %.0f s, %s", self.model_name,
                      version, attempts, summary, delay, serving, exc_info=attempts == 1)
            if current is None:
                self.unavailable = (f"{self.model_name} version {version} (the champion) failed to load "
                                    f"{attempts} time(s), last: {summary}; retrying in {delay:.0f} s")
            return
        self._publish(loaded.version)
        self.current, self._withdrawn, self.failure = loaded, None, None
        log.warning("serving %s version %s (loaded in %.1f s%s)", self.model_name, version, self.clock() - now,
                    f", attempt {attempts}" if attempts > 1 else "")

    def _publish(self, version: str) -> None:
        if self.cutoff_file is None or self.publish_cutoff is None:
            return
        self._cutoff_at = self.clock()
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
        if self.pages is not None and path in PAGE_PATHS and scope.get("method", "GET") in ("GET", "HEAD"):
            await self._page(scope, send)
            return
        served = self.current
        if served is None:
            await _answer(send, 503, "TEMPORARILY_UNAVAILABLE", self.unavailable, [(b"retry-after", b"5")])
            return
        try:
            body = await self._read_body(headers, receive)
            if body is None:  # the client went away
                return
            if path == "/invocations" and scope.get("method") == "POST":
                self.check_request(headers.get(b"content-type", b"").decode("latin-1"), body)
        except Refused as refused:
            log.warning("refused a request (%d %s): %s", refused.status, refused.code, refused.message[:300])
            await _answer(send, refused.status, refused.code, refused.message)
            return
        if path == "/invocations" and scope.get("method") == "POST":
            answer = direct_answer(served, headers.get(b"content-type", b""), body)
            if answer is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(answer)).encode()),
                                        (b"x-lead-model-version", served.version.encode())]})
                await send({"type": "http.response.body", "body": answer})
                return
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

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
                log.warning("answered %d: %s", held["status"], body[:300].decode("utf-8", "replace"))
                headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
                await send(dict(held, headers=[*headers, (b"content-length", str(len(body)).encode())]))
                held = None
                message = {"type": "http.response.body", "body": body, "more_body": False}
            await send(message)

        await served.app(scope, replay, tagged)

    async def _page(self, scope, send) -> None:
        """The call list needs no champion: it reads what crm_export published (off the event loop)."""
        import asyncio

        try:
            status, content_type, body = await asyncio.to_thread(self.pages.answer, scope["path"],
                                                                 scope.get("query_string", b""))
        except Exception as error:  # noqa: BLE001 - a broken file is an answer, not a dead worker
            log.exception("the call list failed")
            await _answer(send, 500, "INTERNAL_ERROR", f"the call list could not be read: {_clip(str(error))}")
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})

    def _authorized(self, headers: dict) -> bool:
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)

    async def _read_body(self, headers: dict, receive) -> bytes | None:
        """The whole body, read up to the byte limit (413 beyond it); None if the client disconnected."""
        limit = self.max_request_bytes
        too_large = Refused(413, "REQUEST_TOO_LARGE",
                            f"the request body is larger than {limit:,} bytes (--max-request-bytes); send fewer leads")
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            raise Refused(400, "BAD_REQUEST", "Content-Length is not a number") from None
        if declared > limit:
            raise too_large
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def check_request(self, content_type: str, body: bytes) -> None:
        """Refuse, before MLflow builds a frame, a body that is not what it claims or holds too many leads."""
        mime = content_type.split(";")[0].strip().lower()
        if not mime:
            raise Refused(415, "UNSUPPORTED_MEDIA_TYPE", f"send a Content-Type: one of {', '.join(CONTENT_TYPES)}")
        if mime == "application/json":
            rows = json_rows(body)
        elif mime == "text/csv":
            rows = csv_rows(body, self.max_request_rows)
        elif mime == "application/vnd.apache.parquet":
            rows = self._parquet_rows(body)
        else:  # MLflow answers 415 with the types it takes
            return
        if rows > self.max_request_rows:
            raise Refused(413, "REQUEST_TOO_LARGE",
                          f"the request holds {rows:,} leads, more than the {self.max_request_rows:,} one request "
                          "may hold (--max-request-rows); send them in several requests")

    def _parquet_rows(self, body: bytes) -> int:
        """Rows (and unpacked bytes) from a Parquet body's footer: nothing of its data is read."""
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(io.BytesIO(body)).metadata
        except Exception as error:  # pyarrow raises several types for a body that is not Parquet
            raise Refused(400, "BAD_REQUEST", "the body is not a Parquet file: "
                          + _clip(str(error).splitlines()[0] if str(error) else type(error).__name__)) from None
        groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
        unpacked = sum(max(g.total_byte_size, 0) for g in groups)
        if unpacked > self.max_request_bytes * PARQUET_INFLATION:
            raise Refused(413, "REQUEST_TOO_LARGE",
                          f"the Parquet body unpacks to {unpacked:,} bytes, more than {PARQUET_INFLATION} times "
                          f"--max-request-bytes ({self.max_request_bytes:,}); send fewer leads")
        return max(meta.num_rows, sum(g.num_rows for g in groups))

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


DIRECT_ROWS = 64  # a JSON request of at most this many leads is answered without MLflow's app
DIRECT_PARAMS = ("cutoff", "hot_min_probability", "warm_min_probability")


def direct_answer(served: Served, content_type: bytes, body: bytes) -> bytes | None:
    """MLflow's answer to a small ``dataframe_records`` request, computed by the model's own
    ``answer`` (what its ``predict`` runs) without MLflow's app: for one lead, MLflow's input
    cast and frame cost more than the scoring. Anything else (other shapes, params MLflow would
    check, a lead a rule refuses, an error) returns None, and MLflow's app answers it as before.
    """
    if content_type.split(b";")[0].strip().lower() != b"application/json":
        return None
    unwrap = getattr(served.model, "unwrap_python_model", None)
    model = unwrap() if unwrap is not None else None
    if not callable(getattr(model, "answer", None)):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not set(payload) <= {"dataframe_records", "params"}:
        return None
    records, params = payload.get("dataframe_records"), payload.get("params", {})
    if (not isinstance(records, list) or not 0 < len(records) <= DIRECT_ROWS
            or not all(isinstance(r, dict) for r in records) or not isinstance(params, dict)
            or not set(params) <= set(DIRECT_PARAMS)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in params.values())):
        return None
    try:
        rows = model.answer(records, params)
    except Exception:  # a refused lead or a failure: MLflow's app says it as before
        return None
    return json.dumps({"predictions": rows}).encode()


CONTENT_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")
JSON_FORMATS = ("dataframe_records", "dataframe_split", "instances", "inputs")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """At most ``limit`` characters of ``text``, saying how much was left out."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit:,} more characters not shown)"


def json_rows(body: bytes) -> int:
    """Leads in an MLflow JSON body; a body that is not UTF-8 JSON or holds a lone surrogate is refused."""
    try:
        return _json_rows(body)
    except RecursionError:
        raise Refused(400, "BAD_REQUEST", "the body's JSON is nested too deeply") from None


def _json_rows(body: bytes) -> int:
    try:
        payload = json.loads(body)
    except UnicodeDecodeError as error:
        raise Refused(400, "BAD_REQUEST", f"the body is not UTF-8 text (byte {error.start:,}: {error.reason}); "
                      "send JSON encoded as UTF-8") from None
    except json.JSONDecodeError as error:
        raise Refused(400, "BAD_REQUEST", f"the body is not valid JSON: {error.msg} at line {error.lineno} "
                      f"column {error.colno} (character {error.pos:,})") from None
    if _SURROGATE_ESCAPE.search(body):  # \ud800-\udfff: fine in a pair, not alone
        for where, text in _strings(payload, ()):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                point = f"\\u{ord(text[error.start]):04x}"
                raise Refused(400, "BAD_REQUEST", f"{_where(where)}: text holds a lone surrogate ({point}), which "
                              "is not a character: send the text as UTF-8 (a surrogate only comes in a pair)") from None
    if not isinstance(payload, dict):
        return 0  # MLflow says which shapes it takes
    rows = 0
    for key in JSON_FORMATS:
        value = payload.get(key)
        if key == "dataframe_split" and isinstance(value, dict):
            value = value.get("data")
        if isinstance(value, list):
            rows = max(rows, len(value))
        elif isinstance(value, dict):  # columns: {"field": [values]}
            rows = max(rows, max((len(v) for v in value.values() if isinstance(v, list)), default=1))
    return rows


def _strings(value, where: tuple) -> Iterator[tuple[tuple, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield where + (key,), key
            yield from _strings(item, where + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, where + (index,))


def _where(path: tuple) -> str:
    """``("dataframe_records", 3, "city")`` -> ``record 3: city``."""
    parts = [f"record {p}" if isinstance(p, int) else str(p) for p in path if p not in JSON_FORMATS]
    return ": ".join(parts).encode("utf-8", "backslashreplace").decode() or "the body"


def csv_rows(body: bytes, at_most: int | None = None) -> int:
    """Records after the header of a CSV body (a quoted field may hold line breaks, so they are parsed
    unless the line breaks alone show there are at most ``at_most``)."""
    lines = body.count(b"\n")
    if at_most is not None and lines <= at_most:  # records <= lines + 1, one of them the header
        return lines
    text = body.decode("utf-8", errors="replace")
    try:
        records = sum(1 for record in csv.reader(io.StringIO(text, newline="")) if record)
    except csv.Error:  # a field beyond the csv module's size limit: count every line break
        return lines
    return max(records - 1, 0)


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
        return body if len(body) <= MAX_ERROR_CHARS else _clip(body.decode("utf-8", "replace")).encode()
    message = message.split("\nInput: \n", 1)[0]  # MLflow quotes a body it cannot parse in full
    for pattern in (_PREDICT_FAILED, _SCHEMA_FAILED):
        found = pattern.match(message)
        if found:
            message = found.group("reason").strip()
    missing = _MISSING.match(message)
    if missing:
        names = [n.strip(" '\"") for n in missing.group("names").split(",") if n.strip()]
        message = "invalid leads: " + "; ".join(f"{n}: missing_field: {n} is required in every record" for n in names)
    answer["message"] = _clip(message)
    answer.pop("stack_trace", None)
    return json.dumps(answer).encode()


async def _answer(send, status: int, code: str, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def warehouse_cutoff(home, lookback_days: int = 14) -> Callable[[str], dict | None]:
    """What the batch serves ``version`` with: the cut-off of the latest ``scored_leads`` day (of the
    last ``lookback_days`` scored) it scored, and its latest recalibration (``champion_calibration``)."""
    from lead_assets.core.model import recalibration
    from lead_assets.core.store import warehouse
    from lead_assets.core.scoring.online import published_cutoff

    def latest(version: str) -> dict | None:
        refit = recalibration.latest(home.warehouse, str(version))
        extra = {"recalibration": refit.as_dict()} if refit else {}
        days = sorted(warehouse.existing_partitions(home.warehouse, "scored_leads"))
        for day in reversed(days[-lookback_days:]):
            found = published_cutoff(warehouse.read_partitions(home.warehouse, "scored_leads", [day]), version)
            if found is not None:
                return {**found, **extra}
        return {"model_version": str(version), **extra} if extra else None

    return latest


class PortInUse(OSError):
    """The address ``lead-assets serve`` was asked to listen on is taken."""


def listen(host: str, port: int) -> socket.socket:
    """A socket bound and listening on ``host:port``: taken before anything slow happens (the model
    loads only once the port is ours), and handed to uvicorn, so nothing can take it in between."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise OSError(f"cannot listen on --host {host}: {error.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} on {host} is already in use (another lead-assets serve?): stop that "
                            "process or choose another --port") from None
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def serve(home, model_name: str, sock: socket.socket, token: str | None = None,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS,
          poll_seconds: float = DEFAULT_POLL_SECONDS, workers: int = 1) -> None:
    """Run the service with uvicorn on ``sock`` (from :func:`listen`) until interrupted: ``lead-assets serve``.

    ``workers`` > 1: that many processes accept on the same socket, each a whole service (its own
    champion follower, retry/backoff, ``/ping``), so one lead's scoring, which holds the GIL, runs
    on every core; a worker that dies is started again.
    """
    settings = dict(token=token, max_request_bytes=max_request_bytes, max_request_rows=max_request_rows,
                    poll_seconds=poll_seconds)
    if workers <= 1:
        _serve_one(home, model_name, sock, **settings)
    else:
        _supervise(workers, dict(home=home, model_name=model_name, sock=sock, **settings))


def _serve_one(home, model_name: str, sock: socket.socket, token: str | None, max_request_bytes: int,
               max_request_rows: int, poll_seconds: float, load_first: bool = False) -> None:
    """One service on ``sock``; ``load_first``: try to load the champion before accepting connections.

    One worker accepts at once and answers /ping 503 while it loads. With several workers every one
    loads first (connections wait in the shared socket's backlog meanwhile): a worker accepting while
    it loaded answered 503 to requests on new connections after another worker's /ping had said 200
    (found by the serving benchmark: one sequential request of 1,000 failed)."""
    import mlflow
    import uvicorn

    from lead_assets.call_list import CallList
    from lead_assets.core.release import registry

    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="lead-serve-") as folder:
        service = ScoringService(
            model_name, lambda: registry.champion_version(model_name), token=token,
            max_request_bytes=max_request_bytes, max_request_rows=max_request_rows, poll_seconds=poll_seconds,
            cutoff_file=Path(folder) / "cutoff.json", publish_cutoff=warehouse_cutoff(home),
            pages=CallList(home, _outbox()))
        if load_first:
            service.refresh()
        server = uvicorn.Server(uvicorn.Config(service, log_level="warning", lifespan="on"))
        server.run(sockets=[sock])


def _outbox():
    """Where crm_export publishes (``LEAD_ASSETS_OUTBOX``, else the home's ``outbox/``)."""
    from upath import UPath

    value = (os.environ.get("LEAD_ASSETS_OUTBOX") or "").strip()
    return UPath(value) if value else None


def _worker(settings: dict, load_first: bool) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops workers with SIGTERM
    _serve_one(**settings, load_first=load_first)


def _supervise(workers: int, settings: dict) -> None:
    """Start ``workers`` worker processes (spawned: no threads or CatBoost state shared by fork) and
    restart one that exits, until SIGTERM or SIGINT; then stop them all."""
    import multiprocessing
    import signal

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def stop(signum, frame):
        stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}

    def start(k: int, load_first: bool) -> multiprocessing.Process:
        process = context.Process(target=_worker, args=(settings, load_first), name=f"lead-serve-worker-{k}", daemon=True)
        process.start()
        return process

    processes = [start(k, True) for k in range(workers)]
    try:
        while not stopping.wait(1.0):
            for k, process in enumerate(processes):
                if not process.is_alive():
                    log.error("serving worker %d (pid %s) exited with %s: starting another", k, process.pid,
                              process.exitcode)
                    processes[k] = start(k, True)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
