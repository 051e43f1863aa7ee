"""Served: `dagster dev` with the inbox sensor on, a batch of broken files, then a good one.

Every row of every dropped file is reconciled against raw_leads, rejected_leads and
quarantine/, no run fails, and the good file's leads are scored by the champion.
"""

import gzip
import json
import os
import time

import pandas as pd
import pytest

from lead_assets.core.leads import synth

from lead_assets.core.store import warehouse
from lead_assets_tests.served import dev_server, graphql, train_champion

pytestmark = pytest.mark.slow(seconds=80)  # started first by make test (conftest.py)

RUNS = '{ runsOrError { ... on Runs { results { runId status jobName } } } }'
BATCH_DAYS = ["2021-08-20", "2021-08-21", "2021-08-22"]


def _batch() -> dict[str, bytes]:
    good = synth.generate_leads("2021-08-22", 1, 50, seed=31, labelled=False)
    base = synth.generate_leads("2021-08-20", 1, 20, seed=32, labelled=False)
    header = ",".join(base.columns)
    truncated = gzip.compress(synth.generate_leads("2021-08-21", 1, 3000, seed=33, labelled=False)
                              .to_csv(index=False).encode())
    extra = base.to_csv(index=False).splitlines()
    extra[4] += ",surplus"
    huge = base.head(3).copy()
    huge.loc[1, "city_mapped"] = "x" * (20 * 1024 * 1024)
    line = base.to_csv(index=False, header=False).splitlines()[0] + "\n"
    bomb = gzip.compress((header + "\n" + line * 1_500_000).encode(), compresslevel=9)
    mixed = synth.generate_leads("2021-08-21", 1, 12, seed=34, labelled=False)
    mixed["created_date"] = ["20210821", "2021-8-21", "2021-08-21T10", "2021-08-21T10:30", "2021-08-21 09:00:00",
                             "2021-08-21T23:30:00-02:00", "21/08/2021", *mixed["created_date"][7:]]
    out_of_range = synth.generate_leads("2021-08-20", 1, 10, seed=35, labelled=False)
    out_of_range.loc[0, "created_date"] = "2019-05-01 10:00:00"
    out_of_range.loc[1, "created_date"] = "2099-01-01 10:00:00"
    return {
        "a_truncated.csv.gz": truncated[: len(truncated) // 2],
        "b_extra_field.csv": ("\n".join(extra) + "\n").encode(),
        "c_huge_field.csv": huge.to_csv(index=False).encode(),
        "d_" + "n" * 234 + ".csv": (header + "\n").encode(),
        "e_bomb.csv.gz": bomb,
        "f_mixed_dates.csv": mixed.to_csv(index=False).encode(),
        "g_out_of_range.csv": out_of_range.to_csv(index=False).encode(),
        "z_good.csv": good.to_csv(index=False).encode(),
    }


@pytest.fixture
def served_home(lead_home, tmp_path, monkeypatch):
    from lead_assets.demo import ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    ensure_dagster_home(lead_home)
    train_champion(lead_home)
    env = dict(os.environ, LEAD_ASSETS_MAX_INFLATED_BYTES=str(64 * 1024 * 1024))
    with dev_server(env) as (_, port, _):
        yield lead_home, port


def _runs(port):
    return graphql(port, RUNS)["runsOrError"]["results"]


def test_broken_files_never_stop_the_inbox_and_every_row_is_accounted_for(served_home):
    home, port = served_home
    files = _batch()
    old = time.time() - 30
    for name, data in files.items():
        path = home.inbox / name
        path.write_bytes(data)
        os.utime(path.path, (old, old))
    good_ids = None
    deadline = time.time() + 420
    while time.time() < deadline:
        runs = _runs(port)
        finished = all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
        if not any(home.inbox.iterdir()) and finished and runs:
            scored = warehouse.read_partitions(home.warehouse, "scored_leads", BATCH_DAYS)
            raw = warehouse.read_partitions(home.warehouse, "raw_leads", BATCH_DAYS)
            good_ids = set(raw.loc[raw.source_file == "z_good.csv", "lead_id"]) if len(raw) else set()
            if good_ids and good_ids <= set(scored["lead_id"]):
                break
        time.sleep(3)
    runs = _runs(port)
    assert good_ids, f"the good file was not scored in time; runs: {runs}"
    assert {r["status"] for r in runs} == {"SUCCESS"}, runs

    ledger = [json.loads(p.read_text()) for p in home.ledger.glob("*.json")]
    fate = {e["file"]: e for e in ledger if e["file"] in files}
    assert set(fate) == set(files)
    quarantined = {name: e["rule"] for name, e in fate.items() if e["status"] == "quarantined"}
    assert quarantined == {"a_truncated.csv.gz": "truncated_file", "d_" + "n" * 234 + ".csv": "no_rows",
                           "e_bomb.csv.gz": "too_large"}  # a 20 MiB field is one rejected row (issue #20)
    reasons = [json.loads(p.read_text()) for p in home.quarantine.glob("*.reason.json")]
    assert {r["file"]: r["rule"] for r in reasons if r["file"] in files} == quarantined
    assert len(list(home.quarantine.glob("*.reason.json"))) * 2 == len(list(home.quarantine.iterdir()))

    raw = warehouse.read_partitions(home.warehouse, "raw_leads")
    rejected = pd.concat([warehouse.read_partitions(home.warehouse, "rejected_leads"),
                          warehouse.read_partitions(home.warehouse, "rejected_leads/undated")])
    for name in files.keys() - quarantined.keys():
        accepted = int((raw.source_file == name).sum())
        refused = rejected[rejected.source_file == name]
        assert fate[name]["rows_read"] == accepted + len(refused), name
    rules = rejected[rejected.source_file.isin(files)].groupby("source_file")["rule"].apply(sorted).to_dict()
    assert rules == {"b_extra_field.csv": ["wrong_field_count"],  # c's other two rows are b's leads again:
                     "c_huge_field.csv": ["duplicate_of_earlier_file", "duplicate_of_earlier_file", "row_too_large"],
                     "f_mixed_dates.csv": ["unparseable_date"],
                     "g_out_of_range.csv": ["date_before_start", "date_in_future"]}
    assert (raw.source_file == "f_mixed_dates.csv").sum() == 11
