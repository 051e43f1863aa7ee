"""The inbox: which files are ready, and moving each to exactly one place with a ledger entry.

Every file that leaves the inbox ends in ``landing/`` (accepted, renamed by content hash, so
identical content lands once) or in ``quarantine/`` with a ``.reason.json``, whatever the file
does: an unexpected error while reading or moving it quarantines that file, never the inbox.
The ledger keeps one JSON record per file (what ``ingest_log`` shows) and one small index,
``ledger/_index.jsonl``: one line per change (accepted, withdrawn, ...) with a sequence number
that only grows. The sensor reads the index from where it stopped and ``raw_leads`` reads it
to know which landed files hold leads for a day, so neither reads every ledger JSON.

An accepted file is written to the ledger and index *before* it is moved to ``landing/``: a
crash in between leaves the file in the inbox, and the next look lands it again (the ledger
never knows a landed file it cannot find, nor loses one it moved).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone

from upath import UPath

from lead_assets.core import clock
from lead_assets.core.store.home import LeadHome, is_local
from lead_assets.core.inbox.parsing import LeadFileError, Sniff, sniff_file
from lead_assets.core.schema import LEAD_ID
from lead_assets.core.store.warehouse import atomic_write_bytes, remove_quietly

ACCEPTED_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv")
TEMP_MARKERS = (".part", ".tmp", ".crdownload", ".partial", "~")
INDEX = "_index.jsonl"
MAX_NAME_CHARS = 120  # quarantine names keep this much of the original name (file systems stop at 255 bytes)
DEFAULT_TICK_MAX_FILES = 100
DEFAULT_TICK_MAX_BYTES = 256 * 1024 * 1024


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def tick_limits() -> tuple[int, int]:
    """How many files and (decompressed) bytes one sensor tick may take; the rest wait a tick.

    ``LEAD_ASSETS_TICK_MAX_FILES`` (default 100) and ``LEAD_ASSETS_TICK_MAX_BYTES`` (default
    256 MiB) keep a tick well inside Dagster's sensor timeout however many files arrive at once.
    """
    return (_env_int("LEAD_ASSETS_TICK_MAX_FILES", DEFAULT_TICK_MAX_FILES),
            _env_int("LEAD_ASSETS_TICK_MAX_BYTES", DEFAULT_TICK_MAX_BYTES))


@dataclass(frozen=True)
class Candidate:
    path: UPath
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name


class _DaySpan:
    """First and last day a file's leads fall on (``days``: day -> rows)."""

    days: dict

    @property
    def first_day(self) -> str | None:
        return min(self.days) if self.days else None

    @property
    def last_day(self) -> str | None:
        return max(self.days) if self.days else None


@dataclass
class LedgerEntry(_DaySpan):
    """The fate of one inbox file (one JSON file in the ledger folder)."""

    file: str
    sha256: str
    status: str  # accepted | quarantined | duplicate
    received_at: str
    size_bytes: int
    rows_read: int = 0
    rows_with_bad_dates: int = 0
    days: dict[str, int] = field(default_factory=dict)
    landed_as: str | None = None
    rule: str | None = None
    detail: str | None = None
    unknown_columns: list[str] = field(default_factory=list)
    seq: int | None = None
    inflated_bytes: int = 0
    lead_ids_given: bool = False
    kind: str = "leads"  # leads | outcomes (a narrow file of labels for leads already ingested)
    encoding: str | None = None  # how the bytes were read (core.inbox.reader), e.g. "utf-16 with BOM"
    rows_unreadable: int = 0  # rows the reader could not read (a stray quote, ...): rejected rows in the run


def is_ignored(name: str) -> bool:
    """Hidden, editor-temporary and partial-download files are never ingested."""
    lowered = name.lower()
    return (
        name.startswith((".", "~", "#"))
        or lowered.endswith(TEMP_MARKERS)
        or not lowered.endswith(ACCEPTED_SUFFIXES)
    )


def list_candidates(inbox: UPath) -> tuple[list[Candidate], list[UPath]]:
    """Files that could be ingested, and symlinks (refused: they point outside the inbox)."""
    if not inbox.exists():
        return [], []
    candidates, links = [], []
    for path in sorted(inbox.iterdir(), key=lambda p: p.name):
        if is_local(path) and os.path.islink(path.path):
            if not is_ignored(path.name):
                links.append(path)
            continue
        if is_ignored(path.name) or not path.is_file():
            continue
        info = path.stat()
        candidates.append(Candidate(path, info.st_size, info.st_mtime))
    return candidates, links


SETTLE_MAX_WAIT = 3.0  # the longest a tick waits for fresh files to settle (a sensor tick may run 60 s)


def ready(candidate: Candidate, previous: tuple[int, float] | None, settle_seconds: float,
          now: float | None = None) -> bool:
    """Ready when unchanged since the last look (if any) and untouched for ``settle_seconds``.

    A writer that is still appending changes size or mtime between ticks, or has touched the
    file within the settle window, so half a file is never ingested.
    """
    now = time.time() if now is None else now
    if previous is not None and tuple(previous) != (candidate.size, candidate.mtime):
        return False
    return now - candidate.mtime >= settle_seconds


def settle(candidates: list[Candidate], seen: dict, settle_seconds: float, max_wait: float | None = None,
           now: float | None = None, sleep=time.sleep) -> tuple[list[Candidate], dict[str, tuple[int, float]]]:
    """Look again, within this tick, at files too fresh to be ready, once they are old enough.

    A file touched less than ``settle_seconds`` ago and not seen by an earlier tick would wait a
    whole sensor interval; instead the tick waits once, until the freshest such file is
    ``settle_seconds`` old (at most ``max_wait``, default ``SETTLE_MAX_WAIT``; a file that needs
    longer waits for a later tick), and stats them again. Returns the candidates as they are now and, for the re-stated ones, the size and mtime
    seen before the wait: ``ready`` then applies its usual rule (unchanged since the last look and
    untouched for ``settle_seconds``), so a writer still appending is never cut short.
    """
    now = time.time() if now is None else now
    limit = SETTLE_MAX_WAIT if max_wait is None else max_wait
    fresh = [c for c in candidates if c.name not in seen and 0 <= now - c.mtime < settle_seconds
             and settle_seconds - (now - c.mtime) <= limit]
    if not fresh:
        return candidates, {}
    sleep(max(settle_seconds - (now - c.mtime) for c in fresh) + 0.01)
    before = {c.name: (c.size, c.mtime) for c in fresh}
    current = []
    for candidate in candidates:
        if candidate.name in before:
            try:
                info = candidate.path.stat()
            except FileNotFoundError:
                continue
            candidate = Candidate(candidate.path, info.st_size, info.st_mtime)
        current.append(candidate)
    return current, before


def sha256_of(path: UPath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> str:
    return clock.now().isoformat(timespec="microseconds")


def _move(source: UPath, target: UPath) -> None:
    """Rename when possible; across file systems (EXDEV) or stores, copy, sync, then remove."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_local(source) and is_local(target):
        try:
            os.replace(source.path, target.path)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        tmp = target.parent / f".{target.name[:60]}.{os.getpid()}.tmp"
        try:
            with open(source.path, "rb") as src, open(tmp.path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp.path, target.path)
        finally:
            remove_quietly(tmp)
        os.unlink(source.path)
    else:
        with source.open("rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        source.unlink()


def landed_name(sha256: str, original: str) -> str:
    return f"{sha256}.csv.gz" if original.lower().endswith(".gz") else f"{sha256}.csv"


def _safe_name(name: str) -> str:
    """A quarantine file name that cannot escape its folder nor exceed a file system's limit."""
    cleaned = name.replace("/", "_").replace("\\", "_").replace("..", "_").lstrip(".") or "unnamed"
    if len(cleaned.encode()) > MAX_NAME_CHARS:
        suffix = next((s for s in (".csv.gz", ".csv", ".txt", ".tsv") if cleaned.lower().endswith(s)), "")
        stem = cleaned[: len(cleaned) - len(suffix)]
        while len((stem + "..." + suffix).encode()) > MAX_NAME_CHARS:
            stem = stem[:-1]
        cleaned = stem + "..." + suffix
    return cleaned


def quarantine(home: LeadHome, path: UPath, entry: LedgerEntry, rows: list[int] | None = None) -> LedgerEntry:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = home.quarantine / f"{stamp}_{entry.sha256[:12]}_{_safe_name(path.name)}"
    reason = {"file": entry.file, "rule": entry.rule, "detail": entry.detail, "rows": rows or [],
              "quarantined_as": target.name, "at": entry.received_at}
    _move(path, target)
    atomic_write_bytes(UPath(str(target) + ".reason.json"), json.dumps(reason, indent=2).encode())
    entry.landed_as = target.name
    return entry


def receive(home: LeadHome, path: UPath, first_day: date, today: date) -> LedgerEntry | None:
    """Move one ready inbox file to landing or quarantine and record its fate in the ledger.

    Never raises for anything the file does: an unexpected error quarantines the file with rule
    ``receive_failed`` (or, if even that move fails, records status ``failed`` and leaves it).
    Returns None when the file vanished before it could be read.
    """
    try:
        return _receive(home, path, first_day, today)
    except Exception as exc:  # noqa: BLE001 (one file must never stop the inbox)
        if not path.exists():
            return None
        return _quarantine_failure(home, path, exc)


def _receive(home: LeadHome, path: UPath, first_day: date, today: date) -> LedgerEntry:
    size = path.stat().st_size
    sha = sha256_of(path)
    entry = LedgerEntry(file=path.name, sha256=sha, status="accepted", received_at=_now(), size_bytes=size)
    target = home.landing / landed_name(sha, path.name)
    previous = read_entry(home, sha)
    if target.exists() and previous is not None and previous.status == "accepted":
        entry.status, entry.rule = "duplicate", "same_content"
        entry.detail = "identical content was already landed; nothing to do"
        entry.days, entry.rows_read, entry.landed_as = previous.days, previous.rows_read, previous.landed_as
        path.unlink()
        write_entry(home, entry, key=f"{sha}.dup.{time.time_ns()}")
        return entry
    try:
        sniff: Sniff = sniff_file(path, first_day, today, name=path.name)
    except LeadFileError as error:
        entry.status, entry.rule, entry.detail = "quarantined", error.rule, error.detail
        quarantine(home, path, entry, error.rows)
        write_entry(home, entry, key=f"{sha}.quarantined.{time.time_ns()}")
        return entry
    entry.rows_read = sniff.rows
    entry.rows_with_bad_dates = len(sniff.bad_date_rows)
    entry.days = sniff.day_counts
    entry.unknown_columns = sniff.unknown_columns
    entry.inflated_bytes = sniff.format.inflated_bytes
    entry.lead_ids_given = LEAD_ID in sniff.format.columns
    entry.kind = sniff.format.kind
    entry.encoding = sniff.format.encoding.label
    entry.rows_unreadable = sniff.broken_rows
    entry.landed_as = target.name
    record(home, entry)  # intent first: a crash before the move leaves the file in the inbox
    write_entry(home, entry, key=sha)
    try:
        if target.exists():  # landed before, but its ledger entry was lost: the content is there
            path.unlink()
        else:
            _move(path, target)
    except Exception:
        entry.status = "not_landed"  # the move failed: take the intent back, receive() quarantines
        record(home, entry)
        (home.ledger / f"{sha}.json").unlink()
        raise
    return entry


def _quarantine_failure(home: LeadHome, path: UPath, exc: Exception) -> LedgerEntry:
    try:
        sha = sha256_of(path)
        size = path.stat().st_size
    except Exception:  # noqa: BLE001
        sha, size = hashlib.sha256(path.name.encode()).hexdigest(), 0
    detail = f"{type(exc).__name__}: {exc}"[:500]
    entry = LedgerEntry(file=path.name, sha256=sha, status="quarantined", received_at=_now(), size_bytes=size,
                        rule="receive_failed", detail=f"the file could not be received ({detail})")
    try:
        quarantine(home, path, entry)
    except Exception as again:  # noqa: BLE001
        entry.status = "failed"
        entry.detail += f"; moving it to quarantine failed too ({type(again).__name__}: {again})"[:500]
    write_entry(home, entry, key=f"{sha}.{entry.status}.{time.time_ns()}")
    return entry


def refuse_link(home: LeadHome, link: UPath) -> LedgerEntry:
    """A symlink could point anywhere on the machine: drop the link, never read its target."""
    entry = LedgerEntry(file=link.name, sha256=hashlib.sha256(link.name.encode()).hexdigest(),
                        status="quarantined", received_at=_now(), size_bytes=0, rule="symlink_refused",
                        detail="symbolic links are refused: copy the file itself into the inbox")
    link.unlink()
    write_entry(home, entry, key=f"{entry.sha256}.quarantined.{time.time_ns()}")
    return entry


MIN_KEY_CHARS = 6  # a shorter sha256 prefix names a file by luck, not by intent


def find_landed(home: LeadHome, key: str) -> IndexRecord:
    """The one landed file whose original name is ``key`` or whose sha256 starts with ``key``.

    An empty or blank key, or a sha256 prefix shorter than ``MIN_KEY_CHARS`` that is not a
    file's name, is refused before anything is matched: it would match every file or a random one.
    """
    given = (key or "").strip()
    entries = landed_entries(home, kind=None)
    if not given:
        raise ValueError("name the file to withdraw: its original name or at least "
                         f"{MIN_KEY_CHARS} characters of its sha256 (an empty name would match every landed file)")
    by_name = [e for e in entries if e.file == given]
    if by_name:
        matches = by_name
    elif len(given) < MIN_KEY_CHARS:
        raise ValueError(f"{given!r} is no landed file's name, and a sha256 prefix needs at least "
                         f"{MIN_KEY_CHARS} characters")
    else:
        matches = [e for e in entries if e.sha256.startswith(given.lower())]
    if len(matches) != 1:
        found = ", ".join(f"{e.file} ({e.sha256[:12]})" for e in matches[:5])
        raise ValueError(f"{given!r} matches {len(matches)} landed files" + (f": {found}" if found else "")
                         + ("; give more of the sha256" if len(matches) > 1 else ""))
    return matches[0]


def withdraw(home: LeadHome, key: str, reason: str, also_days: dict[str, int] | None = None) -> LedgerEntry:
    """Take a landed file back: its leads leave every day it touched at the next run of those days.

    ``key`` is the file's sha256 (or a unique prefix of it) or its original name. The landed
    file moves to ``quarantine/`` with rule ``withdrawn`` (nothing is deleted); the index gets
    a new sequence number, so the inbox sensor re-runs the file's days (and ``also_days``, days
    where another file's copy of its leads now wins) without it.
    """
    entry = read_entry(home, find_landed(home, key).sha256)
    landed = home.landing / entry.landed_as
    entry.days = {**(also_days or {}), **entry.days}
    entry.status, entry.rule = "withdrawn", "withdrawn"
    entry.detail = reason or "withdrawn by an operator"
    entry.received_at = _now()
    record(home, entry)
    write_entry(home, entry, key=entry.sha256)
    if landed.exists():
        quarantine(home, landed, entry)
        write_entry(home, entry, key=entry.sha256)
    return entry


def write_entry(home: LeadHome, entry: LedgerEntry, key: str) -> None:
    atomic_write_bytes(home.ledger / f"{key}.json", json.dumps(asdict(entry), indent=1).encode())


def read_entry(home: LeadHome, sha256: str) -> LedgerEntry | None:
    path = home.ledger / f"{sha256}.json"
    if not path.exists():
        return None
    return LedgerEntry(**json.loads(path.read_text()))


# ------------------------------------------------------------------------------------ the index
INDEX_FIELDS = ("seq", "sha256", "file", "status", "days", "landed_as", "rows_read", "received_at", "lead_ids_given",
                "kind")


@contextmanager
def _index_lock(home: LeadHome):
    """One writer of the index at a time (sensor, ``lead-assets land``, ``withdraw``) on one host."""
    if not is_local(home.ledger):
        yield
        return
    import fcntl

    home.ledger.mkdir(parents=True, exist_ok=True)
    with open((home.ledger / ".index.lock").path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _last_seq(path: UPath) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 65536))
        tail = handle.read().decode().strip().splitlines()
    return json.loads(tail[-1])["seq"] if tail else 0


def record(home: LeadHome, entry: LedgerEntry) -> int:
    """Append ``entry``'s change to the index under the next sequence number (set on the entry)."""
    path = home.ledger / INDEX
    with _index_lock(home):
        _migrate(home)
        entry.seq = _last_seq(path) + 1
        line = json.dumps({k: getattr(entry, k) for k in INDEX_FIELDS}) + "\n"
        if is_local(path):
            with open(path.path, "a") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            previous = path.read_text() if path.exists() else ""
            path.write_text(previous + line)
    return entry.seq


def _migrate(home: LeadHome) -> None:
    """A ledger written before the index existed gets one, in the order its files landed."""
    path = home.ledger / INDEX
    if path.exists() or not home.ledger.exists():
        return
    entries = []
    for item in home.ledger.iterdir():
        if item.name.endswith(".json") and item.name.count(".") == 1:
            entry = LedgerEntry(**json.loads(item.read_text()))
            if entry.status == "accepted":
                entries.append(entry)
    lines = []
    for seq, entry in enumerate(sorted(entries, key=lambda e: (e.received_at, e.sha256)), start=1):
        entry.seq = seq
        lines.append(json.dumps({k: getattr(entry, k) for k in INDEX_FIELDS}) + "\n")
    if lines:
        atomic_write_bytes(path, "".join(lines).encode())


ACCEPTED_OR_WITHDRAWN = ("accepted", "withdrawn")
RELABEL = "relabel"  # a change of labels (not of files): these days re-run to show them


def record_relabel(home: LeadHome, days: dict[str, int], detail: str) -> int:
    """Ask for ``days`` to re-run because outcomes attached to (or left) leads already ingested."""
    entry = LedgerEntry(file=detail[:200], sha256="relabel", status=RELABEL, received_at=_now(), size_bytes=0,
                        days=days, kind="outcomes")
    return record(home, entry)


@dataclass(frozen=True)
class IndexRecord(_DaySpan):
    seq: int
    sha256: str
    file: str
    status: str
    days: dict
    landed_as: str | None
    rows_read: int
    received_at: str
    lead_ids_given: bool = False
    kind: str = "leads"


def read_index(home: LeadHome, offset: int = 0) -> tuple[list[IndexRecord], int]:
    """Index records from byte ``offset`` on, and the offset to read from next time."""
    path = home.ledger / INDEX
    if not path.exists():
        with _index_lock(home):
            _migrate(home)
        if not path.exists():
            return [], 0
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]  # a line being appended right now waits for the next read
    records = [IndexRecord(**json.loads(line)) for line in complete.splitlines() if line.strip()]
    return records, offset + len(complete)


def landed_entries(home: LeadHome, kind: str | None = "leads") -> list[IndexRecord]:
    """Files (of ``kind``; None: any) whose latest change is ``accepted``, in landing order:
    a lead's first copy wins, a later outcome replaces an earlier one."""
    latest: dict[str, IndexRecord] = {}
    for entry in read_index(home)[0]:
        if entry.status != RELABEL:
            latest[entry.sha256] = entry
    return sorted((e for e in latest.values() if e.status == "accepted" and kind in (None, e.kind)),
                  key=lambda e: e.seq)


def files_for_days(home: LeadHome, days: list[str]) -> list[IndexRecord]:
    wanted = set(days)
    return [e for e in landed_entries(home) if wanted & set(e.days)]
