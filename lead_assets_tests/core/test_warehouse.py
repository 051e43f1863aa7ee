"""Partition files are all-or-nothing, even when the writer is killed mid-write."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from upath import UPath

from lead_assets.core import warehouse


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
        "import pandas as pd, numpy as np; from upath import UPath; from lead_assets.core import warehouse\n"
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
