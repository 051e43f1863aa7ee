"""What sales were shown: every model version's first score of each lead, kept when a day is rescored.

``scored_leads`` holds today's scores; a promotion or a rollback rescores every day and
replaces them. Realised performance must judge each version by the scores it served, so
every scoring run also records, per day and model version, the scores of leads that version
had not scored before (``served_scores/<day>/v<version>.parquet``); later rescoring by the
same version never overwrites them.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from upath import UPath

from lead_assets.core.store import warehouse
from lead_assets.core.schema import CREATED_DATE, LEAD_ID

SERVED = "served_scores"
COLUMNS = (LEAD_ID, CREATED_DATE, "probability", "score", "bucket", "cutoff", "model_version", "served_at")


def _path(root: UPath, day: str, version: str) -> UPath:
    return root / SERVED / day / f"v{version}.parquet"


def record(root: UPath, scored: pd.DataFrame, served_at: datetime) -> int:
    """Add the leads each (day, version) had not served yet; returns how many rows were added."""
    if scored.empty:
        return 0
    stamp = pd.Timestamp(served_at)
    rows = scored[[c for c in COLUMNS if c != "served_at"]].assign(
        served_at=stamp.tz_convert(None) if stamp.tzinfo else stamp)
    added = 0
    days = rows[CREATED_DATE].dt.strftime("%Y-%m-%d")
    for (day, version), part in rows.groupby([days, rows["model_version"].astype(str)], sort=True):
        path = _path(root, day, version)
        if path.exists():
            before = warehouse.read_parquet(path)
            part = part[~part[LEAD_ID].isin(set(before[LEAD_ID]))]
            if part.empty:
                continue
            part = pd.concat([before, part], ignore_index=True)
            added += len(part) - len(before)
        else:
            added += len(part)
        warehouse.atomic_write_bytes(path, warehouse.frame_to_parquet_bytes(part))
    return added


def read(root: UPath) -> pd.DataFrame:
    """Every served score of every version (one row per lead and version)."""
    folder = root / SERVED
    if not folder.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    frames = [warehouse.read_parquet(p) for day in sorted(folder.iterdir()) if day.is_dir()
              for p in sorted(day.iterdir()) if p.name.endswith(".parquet") and not p.name.startswith(".")]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
