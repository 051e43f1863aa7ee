"""The platform's one clock: real UTC time, or the time a replay says it is.

Everything that asks "what time is it" (which days may hold leads, which outcomes have matured,
when a lead was scored, when a model was trained) asks here, so that a replay of a labelled
history can set ``LEAD_ASSETS_NOW`` and the same code decides as it would have on that day.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone

NOW_ENV = "LEAD_ASSETS_NOW"


def now() -> datetime:
    """Timezone-aware UTC now; ``LEAD_ASSETS_NOW`` (ISO 8601, naive means UTC) overrides it."""
    fixed = (os.environ.get(NOW_ENV) or "").strip()
    if not fixed:
        return datetime.now(timezone.utc)
    try:
        stamp = datetime.fromisoformat(fixed)
    except ValueError as error:
        raise ValueError(f"{NOW_ENV}={fixed!r} is not an ISO 8601 date or time") from error
    return stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp.astimezone(timezone.utc)


def today() -> date:
    return now().date()
