"""Partition files are all-or-nothing, even when the writer is killed mid-write."""

import io
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from upath import UPath

from lead_assets.core.store import warehouse


def frame(n, value):
    return pd.DataFrame({"lead_id": [f"id{i}" for i in range(n)], "value": [value] * n,
                         "created_date": pd.Timestamp("2021-07-05")})


def test_write_read_and_replace(tmp_path):
    root = UPath(tmp_path)
    warehouse.write_partition(root, "raw_leads", "2021-07-05", frame(3, 1))
    warehouse.write_partition(root, "raw_leads", "2021-07-05", frame(2, 2))
    assert warehouse.read_partitions(root, "raw_leads")["value"].tolist() == [2, 2]
    assert warehouse.existing_partitions(root, "raw_leads") == ["2021-07-05"]


def test_failed_write_keeps_the_old_partition(tmp_path, monkeypatch):
    root = UPath(tmp_path)
    warehouse.write_partition(root, "raw_leads", "2021-07-05", frame(3, 1))

    def boom(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        warehouse.write_partition(root, "raw_leads", "2021-07-05", frame(5, 2))
    assert warehouse.read_partitions(root, "raw_leads")["value"].tolist() == [1, 1, 1]
    assert sorted(p.name for p in (root / "raw_leads").iterdir()) == ["2021-07-05.parquet"]  # no *.tmp left


def test_a_write_that_fails_midway_leaves_no_temporary_file(tmp_path, monkeypatch):
    root = UPath(tmp_path)

    class Full:
        def __init__(self, path, mode):
            self.handle = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[:10])
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(warehouse, "open", Full, raising=False)
    with pytest.raises(OSError, match="No space"):
        warehouse.atomic_write_bytes(root / "ledger" / "x.json", b"{}" * 100)
    assert list((root / "ledger").iterdir()) == []


def test_killed_writer_leaves_old_or_new_never_half(tmp_path):
    root = UPath(tmp_path)
    warehouse.write_partition(root, "raw_leads", "2021-07-05", frame(3, 1))
    script = (
        "import pandas as pd, numpy as np; from upath import UPath; from lead_assets.core.store import warehouse\n"
        f"root = UPath({str(tmp_path)!r})\n"
        "big = pd.DataFrame({'lead_id': np.arange(3_000_000).astype(str), 'value': 2,"
        " 'created_date': pd.Timestamp('2021-07-05')})\n"
        "print('writing', flush=True)\n"
        "while True: warehouse.write_partition(root, 'raw_leads', '2021-07-05', big)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    time.sleep(1.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    values = warehouse.read_partitions(root, "raw_leads")["value"].unique().tolist()
    assert values in ([1], [2])
    assert warehouse.existing_partitions(root, "raw_leads") == ["2021-07-05"]


def test_split_by_day_covers_every_key():
    df = pd.DataFrame({"created_date": pd.to_datetime(["2021-07-05 10:00", "2021-07-07 09:00"]), "x": [1, 2]})
    parts = warehouse.split_by_day(df, "created_date", ["2021-07-05", "2021-07-06", "2021-07-07"])
    assert {k: len(v) for k, v in parts.items()} == {"2021-07-05": 1, "2021-07-06": 0, "2021-07-07": 1}
    assert list(parts["2021-07-06"].columns) == ["created_date", "x"]


# ------------------------------------------------------------------ streaming a range (issue #15)
def day_frame(day, n, start=0):
    return pd.DataFrame({"lead_id": [f"{day}-{i}" for i in range(start, start + n)], "value": range(n),
                         "created_date": pd.Timestamp(day) + pd.to_timedelta(range(n), unit="min")})


def test_plan_chunks_caps_rows_and_days_and_never_splits_a_day():
    rows = [("d1", 40), ("d2", 40), ("d3", 40), ("d4", 300), ("d5", 10), ("d6", 0)]
    assert warehouse.plan_chunks(rows, chunk_rows=100) == [["d1", "d2"], ["d3"], ["d4"], ["d5", "d6"]]
    assert warehouse.plan_chunks(rows, chunk_rows=1000, chunk_days=4) == [["d1", "d2", "d3", "d4"], ["d5", "d6"]]
    assert warehouse.plan_chunks([], chunk_rows=10) == []
    with pytest.raises(ValueError):
        warehouse.plan_chunks(rows, chunk_rows=0)


def test_day_chunks_read_a_chunk_at_a_time_and_record_what_they_held(tmp_path):
    root = UPath(tmp_path)
    days = [f"2021-07-0{d}" for d in range(1, 8)]
    for i, day in enumerate(days):
        if day != "2021-07-04":  # a day never written reads as no rows
            warehouse.write_partition(root, "lead_features", day, day_frame(day, 10 + i))
    chunks = warehouse.DayChunks(root, "lead_features", tuple(reversed(days)), chunk_rows=30)
    seen = list(chunks.chunks())
    assert [d for group, _ in seen for d in group] == days  # every day once, in order
    assert all(len(frame) <= 30 for _, frame in seen) and len(seen) > 2
    assert sum(len(frame) for _, frame in seen) == sum(10 + i for i, d in enumerate(days) if d != "2021-07-04")
    assert chunks.stats() == {"chunks_read": len(seen), "max_rows_loaded": max(len(f) for _, f in seen),
                              "chunk_rows": 30}
    assert list(chunks.read(["2021-07-02"], columns=["lead_id"]).columns) == ["lead_id"]
    assert chunks.read(["2021-07-04"]).empty


def test_write_stream_writes_each_day_once_and_clears_days_without_rows(tmp_path):
    root = UPath(tmp_path)
    warehouse.write_partition(root, "scored", "2021-07-03", day_frame("2021-07-03", 5))  # lost its leads
    days = ["2021-07-01", "2021-07-02", "2021-07-03"]
    frames = iter([pd.concat([day_frame("2021-07-01", 3), day_frame("2021-07-02", 2)]), day_frame("2021-07-02", 0)])
    written = warehouse.write_stream(root, "scored", days, frames, "created_date")
    assert written == {"2021-07-01": 3, "2021-07-02": 2, "2021-07-03": 0}
    cleared = warehouse.read_parquet(warehouse.partition_path(root, "scored", "2021-07-03"))
    assert cleared.empty and list(cleared.columns) == ["lead_id", "value", "created_date"]


def test_write_stream_refuses_a_day_split_over_chunks_or_outside_the_run(tmp_path):
    root = UPath(tmp_path)
    with pytest.raises(ValueError, match="two chunks"):
        warehouse.write_stream(root, "scored", ["2021-07-01"],
                               [day_frame("2021-07-01", 2), day_frame("2021-07-01", 2, start=2)], "created_date")
    with pytest.raises(ValueError, match="outside the partitions"):
        warehouse.write_stream(root, "scored", ["2021-07-01"], [day_frame("2021-07-02", 1)], "created_date")


def test_a_stream_is_consumed_lazily(tmp_path):
    """Each frame is written before the next is produced: the writer never holds the range."""
    root = UPath(tmp_path)
    days = ["2021-07-01", "2021-07-02", "2021-07-03"]
    on_disk_when_produced = []

    def frames():
        for day in days:
            on_disk_when_produced.append(len(warehouse.existing_partitions(root, "scored")))
            yield day_frame(day, 2)

    warehouse.write_stream(root, "scored", days, frames(), "created_date")
    assert on_disk_when_produced == [0, 1, 2]


def test_rows_in_any_order_reach_their_day_file_as_a_per_day_conversion_writes_them(tmp_path):
    """One Arrow conversion sliced by day reads back as each day converted on its own did."""
    root = UPath(tmp_path)
    days = ["2021-07-01", "2021-07-02", "2021-07-03"]
    frame = pd.concat([day_frame(d, n, start=10 * i) for i, (d, n) in enumerate(zip(days, (3, 1, 2)))])
    frame = frame.assign(note=[None, "a", None, None, "b", None], flag=pd.array([1, None, 0, 1, 0, None], "Int8"))
    shuffled = frame.iloc[[5, 0, 3, 1, 4, 2]]
    assert warehouse.write_stream(root, "scored", days, [shuffled], "created_date") == dict(zip(days, (3, 1, 2)))
    for day, part in frame.groupby(frame["created_date"].dt.strftime("%Y-%m-%d")):
        expected = pd.read_parquet(io.BytesIO(warehouse.frame_to_parquet_bytes(
            shuffled[shuffled["created_date"].dt.strftime("%Y-%m-%d") == day])))
        pd.testing.assert_frame_equal(warehouse.read_parquet(warehouse.partition_path(root, "scored", day)), expected)


def test_a_row_without_a_date_is_outside_every_partition(tmp_path):
    frame = day_frame("2021-07-01", 2)
    frame.loc[frame.index[1], "created_date"] = pd.NaT
    with pytest.raises(ValueError, match="1 row"):
        warehouse.write_stream(UPath(tmp_path), "scored", ["2021-07-01"], [frame], "created_date")


def test_days_are_converted_a_group_at_a_time_and_never_split():
    days = ["2021-07-01", "2021-07-02", "2021-07-03"]
    frame = pd.concat([day_frame(d, n) for d, n in zip(days, (3, 1, 2))]).iloc[[5, 0, 3, 1, 4, 2]]
    codes, keys = warehouse.day_codes(frame["created_date"])
    assert keys == days
    for max_rows in (1, 2, 4, 100):
        tables = list(warehouse.day_tables(frame, codes, keys, max_rows=max_rows))
        assert [(day, sorted(t.column("lead_id").to_pylist())) for day, t in tables] == [
            (d, sorted(frame.loc[frame["created_date"].dt.strftime("%Y-%m-%d") == d, "lead_id"])) for d in days]
