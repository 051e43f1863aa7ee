"""The platform's one clock: real UTC time, or the time a replay says it is.

Everything that asks "what time is it" (which days may hold leads, which outcomes have matured,
when a lead was scored, when a model was trained) asks here, so that a replay of a labelled
history can move the clock and the same code decides as it would have on that day.

Two ways to move it: ``LEAD_ASSETS_NOW`` (a fixed moment, for one process: the in-process
replay) and ``LEAD_ASSETS_NOW_FILE`` (a file holding a moment, read on every call, so that
running servers (the daemon, the code server, every run worker) follow it: a replay through
``dagster dev``). The file's moment holds when it was written and time flows from there:
``now = moment + (real now - the file's modification time)``, so runs of one step keep their order.
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

NOW_ENV = "LEAD_ASSETS_NOW"
NOW_FILE_ENV = "LEAD_ASSETS_NOW_FILE"


def _parse(text: str, where: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"{where}{text!r} is not an ISO 8601 date or time") from error
    return stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp.astimezone(timezone.utc)


def now() -> datetime:
    """Timezone-aware UTC now; ``LEAD_ASSETS_NOW`` (ISO 8601, naive means UTC) overrides it, then
    ``LEAD_ASSETS_NOW_FILE`` (missing or empty: real time)."""
    fixed = (os.environ.get(NOW_ENV) or "").strip()
    if fixed:
        return _parse(fixed, f"{NOW_ENV}=")
    path = (os.environ.get(NOW_FILE_ENV) or "").strip()
    if path:
        try:
            written = os.stat(path).st_mtime
            text = Path(path).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        if text:
            return _parse(text, f"{NOW_FILE_ENV} ({path}) holds ") + timedelta(seconds=max(0.0, time.time() - written))
    return datetime.now(timezone.utc)


def set_file(path: str | os.PathLike, moment: datetime) -> None:
    """Move a ``LEAD_ASSETS_NOW_FILE`` clock to ``moment`` (written whole: a reader sees the old
    moment or the new one)."""
    target = Path(path)
    staging = target.with_name(target.name + ".writing")
    staging.write_text(moment.isoformat(), encoding="utf-8")
    os.replace(staging, target)


def today() -> date:
    return now().date()
