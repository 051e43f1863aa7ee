"""Who still writes a dropped file (a kernel read lease), and the second look that catches a writer between writes."""

import os
import subprocess
import sys

import pytest

from lead_assets.core.inbox import writers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="file leases are Linux's")


def _stat(path):
    info = os.stat(path)
    return info.st_size, info.st_mtime


def closed(path, stamp, **hooks) -> bool:
    return str(path) in writers.closed_by_their_writers({str(path): stamp}, **hooks)


def test_a_file_open_for_writing_has_a_writer_and_a_closed_one_none(tmp_path):
    path = tmp_path / "leads.csv"
    with open(path, "w") as handle:
        handle.write("a,b\n")
        handle.flush()
        assert writers.has_writer(str(path)) is True
        assert not closed(path, _stat(path), sleep=lambda _: None)
    with open(path) as reader:  # a reader is not a writer
        assert writers.has_writer(str(path)) is False
        assert closed(path, _stat(path))
        reader.read()


def test_another_process_holding_the_file_open_keeps_it_unsettled(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("a,b\n")
    holder = subprocess.Popen([sys.executable, "-c", f"f = open({str(path)!r}, 'a'); import time; "
                                                     "print('open', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert writers.has_writer(str(path)) is True
        assert not closed(path, _stat(path), sleep=lambda _: None)
    finally:
        holder.kill()
        holder.wait()
    assert writers.has_writer(str(path)) is False


def test_a_writer_that_writes_during_the_second_look_is_caught(tmp_path):
    path = tmp_path / "appended.csv"
    path.write_text("a,b\n")
    before = _stat(path)

    def appends(_seconds):  # the writer reopens and appends during the second look
        with open(path, "a") as handle:
            handle.write("1,2\n")

    assert not closed(path, before, sleep=appends)


def test_unknown_means_not_closed(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a\n")
    assert writers.has_writer(str(tmp_path / "gone.csv")) is None
    assert not closed(path, _stat(path), writer=lambda _: None, sleep=lambda _: None)
    assert not closed(tmp_path / "gone.csv", (1, 1.0), writer=lambda _: False, sleep=lambda _: None)


def test_many_fresh_files_share_one_second_look(tmp_path):
    files = {}
    for i in range(20):
        path = tmp_path / f"f{i}.csv"
        path.write_text("a\n")
        files[str(path)] = _stat(path)
    looks = []
    assert writers.closed_by_their_writers(files, sleep=looks.append) == set(files) and len(looks) == 1
