"""The warehouse: one Parquet file per asset partition, written atomically.

A partition file is written under a temporary name and renamed into place, so a reader (or a
run killed mid-write) never sees half a partition, and re-running a partition replaces it.
No process holds a lock another partition needs, so parallel backfills cannot collide.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from upath import UPath

from lead_assets.core.store.home import is_local

SUFFIX = ".parquet"
DEFAULT_CHUNK_ROWS = 100_000  # most rows a range run holds (or converts for writing) at once


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


def read_columns(root: UPath, asset: str, columns: Sequence[str]) -> pd.DataFrame:
    """A few columns of every day file of ``asset`` (a column a file lacks comes back empty):
    what a whole-history summary needs, without loading the other columns."""
    import pyarrow.parquet as pq

    frames = []
    for day in existing_partitions(root, asset):
        with partition_path(root, asset, day).open("rb") as handle:
            table = pq.ParquetFile(handle)
            if table.metadata.num_rows:
                present = [c for c in columns if c in table.schema_arrow.names]
                frames.append(table.read(columns=present).to_pandas().reindex(columns=list(columns)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))


def split_by_day(frame: pd.DataFrame, date_column: str, days: Iterable[str]) -> dict[str, pd.DataFrame]:
    """One frame per day key (``YYYY-MM-DD``), including empty frames for days without rows."""
    keys = pd.to_datetime(frame[date_column]).dt.strftime("%Y-%m-%d") if len(frame) else pd.Series(dtype=str)
    groups = {key: part for key, part in frame.groupby(keys.values, sort=True)} if len(frame) else {}
    empty = frame.iloc[0:0]
    return {day: groups.get(day, empty).reset_index(drop=True) for day in days}


# --------------------------------------------------------------------------------------------
# Streaming a range of days: bounded memory whatever the range



def partition_rows(path: UPath) -> int:
    """Rows of a Parquet file from its footer, without reading its data."""
    import pyarrow.parquet as pq

    with path.open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def plan_chunks(rows_per_day: Sequence[tuple[str, int]], chunk_rows: int,
                chunk_days: int | None = None) -> list[list[str]]:
    """Consecutive days grouped so that a chunk holds at most ``chunk_rows`` rows and
    ``chunk_days`` days; a day is never split, so a day larger than the cap is a chunk alone."""
    if chunk_rows < 1 or (chunk_days is not None and chunk_days < 1):
        raise ValueError(f"chunk sizes must be at least 1 (chunk_rows={chunk_rows}, chunk_days={chunk_days})")
    chunks: list[list[str]] = []
    current: list[str] = []
    held = 0
    for day, rows in rows_per_day:
        full = chunk_days is not None and len(current) >= chunk_days
        if current and (held + rows > chunk_rows or full):
            chunks.append(current)
            current, held = [], 0
        current.append(day)
        held += rows
    if current:
        chunks.append(current)
    return chunks


@dataclass
class DayChunks:
    """The day files of one asset for a set of days, read lazily a chunk of days at a time.

    What a range run hands a step instead of one frame: ``chunks()`` yields ``(days, frame)``
    with at most ``chunk_rows`` rows (or one whole day) per frame, so the step holds one chunk,
    not the range. Days without a file read as no rows. ``max_rows_loaded`` and ``chunks_read``
    record what was actually held, so a run (and a test) can show that chunking happened.
    """

    root: UPath
    asset: str
    days: tuple[str, ...]
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    chunk_days: int | None = None
    max_rows_loaded: int = 0
    chunks_read: int = 0
    _present: set[str] | None = field(default=None, repr=False)

    def __post_init__(self):
        self.days = tuple(sorted(set(self.days)))

    def present(self) -> set[str]:
        if self._present is None:
            self._present = set(existing_partitions(self.root, self.asset)) & set(self.days)
        return self._present

    def rows_per_day(self, days: Iterable[str] | None = None) -> list[tuple[str, int]]:
        present = self.present()
        return [(day, partition_rows(partition_path(self.root, self.asset, day)) if day in present else 0)
                for day in (self.days if days is None else sorted(set(days)))]

    def plan(self, days: Iterable[str] | None = None) -> list[list[str]]:
        return plan_chunks(self.rows_per_day(days), self.chunk_rows, self.chunk_days)

    def read(self, days: Iterable[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The files of ``days`` as one frame (an empty frame when none has columns)."""
        present = self.present()
        frames = []
        for day in sorted(set(days)):
            if day in present:
                path = partition_path(self.root, self.asset, day)
                with path.open("rb") as handle:
                    frame = pd.read_parquet(handle, columns=list(columns) if columns else None)
                if len(frame.columns):
                    frames.append(frame)
        out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else (
            frames[0] if frames else pd.DataFrame())
        self.max_rows_loaded = max(self.max_rows_loaded, len(out))
        return out

    def chunks(self, days: Iterable[str] | None = None) -> Iterator[tuple[list[str], pd.DataFrame]]:
        """``(days, frame)`` per chunk, in day order; every requested day is in exactly one chunk."""
        for group in self.plan(days):
            frame = self.read(group)
            self.chunks_read += 1
            yield group, frame

    def frame(self) -> pd.DataFrame:
        """Every requested day at once: only for callers that know the range is small."""
        return self.read(self.days)

    def stats(self) -> dict[str, int]:
        return {"chunks_read": self.chunks_read, "max_rows_loaded": self.max_rows_loaded,
                "chunk_rows": self.chunk_rows}


@dataclass
class DayStream:
    """What a streaming step returns: its output frames, one chunk of days at a time.

    The IO manager writes each day as its frame arrives and, once the frames are exhausted,
    publishes ``metadata()`` (small aggregates the step accumulated chunk by chunk).
    """

    frames: Iterable[pd.DataFrame]
    metadata: Callable[[], dict] = field(default=dict)


def day_codes(dates: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each row's day as a code into the sorted day keys (``YYYY-MM-DD``), -1 where it has no date:
    the days are formatted once each, not once per row."""
    codes, uniques = pd.factorize(pd.to_datetime(dates).dt.normalize().to_numpy(), sort=True)
    return codes, [pd.Timestamp(u).strftime("%Y-%m-%d") for u in uniques]


def day_tables(frame: pd.DataFrame, codes: np.ndarray, days: list[str],
               max_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[tuple[str, "pa.Table"]]:
    """The frame's rows per day (``codes`` into ``days``, from :func:`day_codes`), in day order, as
    Arrow slices.

    Consecutive days are converted together, up to ``max_rows`` rows at a time (a day is never
    split), and each day is a slice of that conversion: a pandas-to-Arrow conversion per day has
    a fixed cost (~3 ms) that made writing the real file's 229 days cost more than scoring them
    (BENCHMARKS.md, "Scoring throughput"), and one conversion of a whole million-row frame would
    hold a second copy of it.
    """
    import pyarrow as pa

    counts = np.bincount(codes, minlength=len(days))
    starts = np.r_[0, np.cumsum(counts)]
    order = np.argsort(codes, kind="stable") if len(codes) > 1 and (np.diff(codes) < 0).any() else None
    first = 0
    while first < len(days):
        last = first + 1
        while last < len(days) and starts[last + 1] - starts[first] <= max_rows:
            last += 1
        rows = slice(int(starts[first]), int(starts[last]))
        group = frame.iloc[rows] if order is None else frame.iloc[order[rows]]
        table = pa.Table.from_pandas(group.reset_index(drop=True), preserve_index=False)
        for i in range(first, last):
            yield days[i], table.slice(int(starts[i] - starts[first]), int(counts[i]))
        first = last


def table_to_parquet_bytes(table) -> bytes:
    """What :func:`frame_to_parquet_bytes` writes (pandas' own ``to_parquet`` is this call), from Arrow."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def write_stream(root: UPath, asset: str, days: Sequence[str], frames: Iterable[pd.DataFrame],
                 date_column: str) -> dict[str, int]:
    """Write each frame's rows to their day files as the frames come; days no frame had rows for
    get an empty file (so a rerun clears them). Returns rows written per day.

    A row outside ``days`` or a day in two frames is an error: each day must be written whole once.
    """
    wanted = list(days)
    allowed = set(wanted)
    written: dict[str, int] = {}
    empty: pd.DataFrame | None = None
    for frame in frames:
        if empty is None or not len(empty.columns):
            empty = frame.iloc[0:0]
        if not len(frame):
            continue
        codes, keys = day_codes(frame[date_column])
        foreign = [i for i, day in enumerate(keys) if day not in allowed]
        outside = int(np.isin(codes, foreign).sum() + (codes < 0).sum())  # -1: no date at all
        if outside:
            raise ValueError(f"{asset}: {outside} row(s) have a {date_column} outside the partitions "
                             f"{wanted[0]}..{wanted[-1]} of this run")
        for day, table in day_tables(frame, codes, keys):
            if day in written:
                raise ValueError(f"{asset}: day {day} came in two chunks; a day must be written whole once")
            atomic_write_bytes(partition_path(root, asset, day), table_to_parquet_bytes(table))
            written[day] = table.num_rows
    for day in wanted:
        if day not in written:
            atomic_write_bytes(partition_path(root, asset, day),
                               frame_to_parquet_bytes(empty if empty is not None else pd.DataFrame()))
            written[day] = 0
    return written
