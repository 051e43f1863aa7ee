"""The inbox: which files are ready, and moving each to exactly one place with a ledger entry.

Every file that leaves the inbox ends in ``landing/`` (accepted, renamed by content hash, so
identical content lands once) or in ``quarantine/`` with a ``.reason.json``; the ledger keeps
one JSON record per file, which is what ``ingest_log`` shows and what ``raw_leads`` reads to
know which landed files hold leads for a day.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone

from upath import UPath

from lead_assets.core.home import LeadHome, is_local
from lead_assets.core.ingest import LeadFileError, Sniff, sniff_file
from lead_assets.core.warehouse import atomic_write_bytes

ACCEPTED_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv")
TEMP_MARKERS = (".part", ".tmp", ".crdownload", ".partial", "~")


@dataclass(frozen=True)
class Candidate:
    path: UPath
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class LedgerEntry:
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

    @property
    def first_day(self) -> str | None:
        return min(self.days) if self.days else None

    @property
    def last_day(self) -> str | None:
        return max(self.days) if self.days else None


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


def sha256_of(path: UPath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _move(source: UPath, target: UPath) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_local(source) and is_local(target):
        os.replace(source.path, target.path)
    else:
        with source.open("rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        source.unlink()


def landed_name(sha256: str, original: str) -> str:
    return f"{sha256}.csv.gz" if original.lower().endswith(".gz") else f"{sha256}.csv"


def _safe_name(name: str) -> str:
    """A quarantine file name that cannot escape its folder."""
    cleaned = name.replace("/", "_").replace("\\", "_").replace("..", "_")
    return cleaned.lstrip(".") or "unnamed"


def quarantine(home: LeadHome, path: UPath, entry: LedgerEntry, rows: list[int] | None = None) -> LedgerEntry:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = home.quarantine / f"{stamp}_{entry.sha256[:12]}_{_safe_name(path.name)}"
    reason = {"file": entry.file, "rule": entry.rule, "detail": entry.detail, "rows": rows or [],
              "quarantined_as": target.name, "at": entry.received_at}
    _move(path, target)
    atomic_write_bytes(UPath(str(target) + ".reason.json"), json.dumps(reason, indent=2).encode())
    entry.landed_as = target.name
    return entry


def receive(home: LeadHome, path: UPath, first_day: date, today: date) -> LedgerEntry:
    """Move one ready inbox file to landing or quarantine and record its fate in the ledger."""
    size = path.stat().st_size
    sha = sha256_of(path)
    entry = LedgerEntry(file=path.name, sha256=sha, status="accepted", received_at=_now(), size_bytes=size)
    target = home.landing / landed_name(sha, path.name)
    if target.exists():
        entry.status, entry.rule = "duplicate", "same_content"
        entry.detail = "identical content was already landed; nothing to do"
        previous = read_entry(home, sha)
        if previous:
            entry.days, entry.rows_read, entry.landed_as = previous.days, previous.rows_read, previous.landed_as
        path.unlink()
        write_entry(home, entry, key=f"{sha}.dup.{int(time.time() * 1000)}")
        return entry
    try:
        sniff: Sniff = sniff_file(path, first_day, today, name=path.name)
    except LeadFileError as error:
        entry.status, entry.rule, entry.detail = "quarantined", error.rule, error.detail
        quarantine(home, path, entry, error.rows)
        write_entry(home, entry, key=f"{sha}.quarantined.{int(time.time() * 1000)}")
        return entry
    entry.rows_read = sniff.rows
    entry.rows_with_bad_dates = len(sniff.bad_date_rows)
    entry.days = sniff.day_counts
    entry.unknown_columns = sniff.unknown_columns
    entry.landed_as = target.name
    _move(path, target)
    write_entry(home, entry, key=sha)
    return entry


def refuse_link(home: LeadHome, link: UPath) -> LedgerEntry:
    """A symlink could point anywhere on the machine: drop the link, never read its target."""
    entry = LedgerEntry(file=link.name, sha256=hashlib.sha256(link.name.encode()).hexdigest(),
                        status="quarantined", received_at=_now(), size_bytes=0, rule="symlink_refused",
                        detail="symbolic links are refused: copy the file itself into the inbox")
    link.unlink()
    write_entry(home, entry, key=f"{entry.sha256}.quarantined.{int(time.time() * 1000)}")
    return entry


def write_entry(home: LeadHome, entry: LedgerEntry, key: str) -> None:
    atomic_write_bytes(home.ledger / f"{key}.json", json.dumps(asdict(entry), indent=1).encode())


def read_entry(home: LeadHome, sha256: str) -> LedgerEntry | None:
    path = home.ledger / f"{sha256}.json"
    if not path.exists():
        return None
    return LedgerEntry(**json.loads(path.read_text()))


def landed_entries(home: LeadHome) -> list[LedgerEntry]:
    """Accepted files, oldest first: the order in which a lead's first copy wins."""
    if not home.ledger.exists():
        return []
    entries = []
    for path in home.ledger.iterdir():
        if path.name.endswith(".json") and path.name.count(".") == 1:
            entry = LedgerEntry(**json.loads(path.read_text()))
            if entry.status == "accepted":
                entries.append(entry)
    return sorted(entries, key=lambda e: (e.received_at, e.sha256))


def files_for_days(home: LeadHome, days: list[str]) -> list[LedgerEntry]:
    wanted = set(days)
    return [e for e in landed_entries(home) if wanted & set(e.days)]
