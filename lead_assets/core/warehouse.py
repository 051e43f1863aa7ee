"""The warehouse: one Parquet file per asset partition, written atomically.

A partition file is written under a temporary name and renamed into place, so a reader (or a
run killed mid-write) never sees half a partition, and re-running a partition replaces it.
No process holds a lock another partition needs, so parallel backfills cannot collide.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterable

import pandas as pd
from upath import UPath

from lead_assets.core.home import is_local

SUFFIX = ".parquet"


def atomic_write_bytes(path: UPath, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either the old file or the whole new one.

    A failed write (disk full, killed by an exception) removes its temporary file; only a
    killed process can leave one behind, and no reader lists ``.*.tmp`` files.
    """
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name[:100]}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp.path, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp.path, path.path)
        except BaseException:
            remove_quietly(tmp)
            raise
    else:
        path.write_bytes(data)  # an object-store PUT is atomic


def remove_quietly(path: UPath) -> None:
    """Remove a local temporary file if it is there."""
    try:
        os.unlink(path.path)
    except FileNotFoundError:
        pass


def frame_to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(buffer, index=False)
    return buffer.getvalue()


def partition_path(root: UPath, asset: str, partition: str) -> UPath:
    return root / asset / f"{partition}{SUFFIX}"


def write_partition(root: UPath, asset: str, partition: str, frame: pd.DataFrame) -> UPath:
    path = partition_path(root, asset, partition)
    atomic_write_bytes(path, frame_to_parquet_bytes(frame))
    return path


def read_parquet(path: UPath) -> pd.DataFrame:
    with path.open("rb") as handle:
        return pd.read_parquet(handle)


def existing_partitions(root: UPath, asset: str) -> list[str]:
    """Partition keys that have a file, sorted; temporary files are not partitions."""
    folder = root / asset
    if not folder.exists():
        return []
    return sorted(
        p.name[: -len(SUFFIX)]
        for p in folder.iterdir()
        if p.name.endswith(SUFFIX) and not p.name.startswith(".")
    )


def read_partitions(root: UPath, asset: str, partitions: Iterable[str] | None = None) -> pd.DataFrame:
    """Concatenate the existing files of the given partitions (all when None)."""
    present = existing_partitions(root, asset)
    wanted = present if partitions is None else sorted(set(partitions) & set(present))
    frames = [read_parquet(partition_path(root, asset, key)) for key in wanted]
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def split_by_day(frame: pd.DataFrame, date_column: str, days: Iterable[str]) -> dict[str, pd.DataFrame]:
    """One frame per day key (``YYYY-MM-DD``), including empty frames for days without rows."""
    keys = pd.to_datetime(frame[date_column]).dt.strftime("%Y-%m-%d") if len(frame) else pd.Series(dtype=str)
    groups = {key: part for key, part in frame.groupby(keys.values, sort=True)} if len(frame) else {}
    empty = frame.iloc[0:0]
    return {day: groups.get(day, empty).reset_index(drop=True) for day in days}
