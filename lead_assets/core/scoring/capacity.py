"""A day's calling capacity: each scored lead's rank within its day and whether it is inside the line.

Sales can call N leads a day. The rank orders one day's leads best first (probability descending,
then ``lead_id`` so equal scores rank the same way on every run); a lead is inside the capacity
when its rank is at most N and it is not junk. The capacity is a second, explicit line: it never
moves the junk cut-off, and a junk lead is never inside it, however short the day.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from lead_assets.core.schema import CREATED_DATE, LEAD_ID

DAY_RANK = "day_rank"
IN_CAPACITY = "in_capacity"
CAPACITY_ENV = "LEAD_ASSETS_DAILY_CAPACITY"


def check_capacity(capacity: int | None) -> int | None:
    """``None`` means no limit; otherwise a whole number of leads, at least 1."""
    if capacity is None:
        return None
    if isinstance(capacity, bool) or int(capacity) != capacity or capacity < 1:
        raise ValueError(f"daily capacity must be a whole number of leads >= 1 (or unset for no limit), got {capacity!r}")
    return int(capacity)


def capacity_from_environment() -> int | None:
    """``LEAD_ASSETS_DAILY_CAPACITY`` (unset: no limit); the CRM export and ``lead-assets leads`` read it here."""
    value = (os.environ.get(CAPACITY_ENV) or "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(f"{CAPACITY_ENV}={value!r} is not a whole number of leads")
    return check_capacity(int(value))


def rank_within_day(scored: pd.DataFrame, capacity: int | None) -> pd.DataFrame:
    """``scored`` with ``day_rank`` (1 = call first, per ``created_date`` day) and ``in_capacity``."""
    capacity = check_capacity(capacity)
    out = scored.copy()
    if out.empty:
        out[DAY_RANK] = pd.Series(dtype="int64")
        out[IN_CAPACITY] = pd.Series(dtype=bool)
        return out
    day = pd.to_datetime(out[CREATED_DATE]).dt.normalize().to_numpy()
    order = pd.DataFrame({"day": day, "p": -out["probability"].to_numpy(), "id": out[LEAD_ID].astype(str).to_numpy()})
    order = order.sort_values(["day", "p", "id"], kind="mergesort")  # positions: any index of ``scored`` works
    rank = np.empty(len(out), dtype="int64")
    rank[order.index.to_numpy()] = order.groupby("day", sort=False).cumcount().to_numpy() + 1
    out[DAY_RANK] = rank
    inside = out["bucket"].to_numpy() != "junk"
    if capacity is not None:
        inside &= rank <= capacity
    out[IN_CAPACITY] = np.asarray(inside, dtype=bool)
    return out
