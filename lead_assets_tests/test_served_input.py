"""Served: hostile input through `dagster dev` with `make dev`'s settings (issue #20, the input half).

A champion is trained; then, with only files dropped in the inbox and the daemon doing the rest:
a lead file with a stray opening quote, one with a NUL byte in a row, a spreadsheet's UTF-16
"Unicode text" export, and a CRM's cumulative outcomes export on three days (each day repeats
the days before and adds new outcomes, one day also changes three labels). Every row of every
file is reconciled (rows read = accepted + rejected, by rule), every outcome is counted once
(attached when it set or changed a label, unchanged when it repeats it, pending without its
lead), `outcomes_since_training` counts only the new ones, no run fails, and the next file is
scored. About four minutes, most of it training the champion and starting the server.
"""

import codecs
import os
from pathlib import Path

import pandas as pd
import pytest

from lead_assets.core.inbox import ledger

from lead_assets.core.leads import synth

from lead_assets.core.release import registry

from lead_assets.core.store import warehouse
from lead_assets.core.outcomes.realised import ALL_WEEKS
from lead_assets.views import run_query
from lead_assets_tests.served import dev_server, graphql, train_champion, wait_for

pytestmark = pytest.mark.slow(seconds=145)  # started first by make test (conftest.py)

DAYS = ["2021-08-20", "2021-08-21", "2021-08-22"]
NEXT_DAY = "2021-08-23"
RUNS = '{ runsOrError { ... on Runs { results { runId status jobName } } } }'


@pytest.fixture
def served(lead_home, tmp_path, monkeypatch):
    from lead_assets.demo import ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    ensure_dagster_home(lead_home)
    train_champion(lead_home)
    env = dict(os.environ, LEAD_ASSETS_TICK_WATCH_SECONDS="4")  # what `make dev` sets
    with dev_server(env) as (process, port, _):
        yield lead_home, process, port


def _drop(home, name: str, data: bytes) -> None:
    """Written beside the inbox, then moved in whole: what an export job does."""
    staging = Path(str(home.root)) / "staging"
    staging.mkdir(exist_ok=True)
    (staging / name).write_bytes(data)
    os.replace(staging / name, Path(str(home.inbox)) / name)


def _leads(day: str, prefix: str, seed: int) -> pd.DataFrame:
    leads = synth.generate_leads(day, 1, 30, seed=seed, labelled=True).reset_index(drop=True)
    leads.insert(0, "lead_id", [f"{prefix}-{i}" for i in range(len(leads))])
    return leads


def _lead_files() -> tuple[dict[str, bytes], pd.DataFrame, dict[str, str]]:
    """Three hostile exports, the truth about their leads, and the lead each file's broken row held."""
    quoted, nul, wide = _leads(DAYS[0], "sq", 61), _leads(DAYS[1], "nul", 62), _leads(DAYS[2], "u16", 63)
    wide.loc[3, "city_mapped"] = "münchen"
    lines = quoted.drop(columns="app_complete_flag").to_csv(index=False).splitlines()
    lines[5] = lines[5].replace(",", ',"', 1)  # sq-4: a quote opened in city_mapped, never closed
    text = nul.drop(columns="app_complete_flag").to_csv(index=False).splitlines()
    text[6] = text[6].replace("Level", "Lev\x00el", 1)  # nul-5: a NUL byte in a level
    unicode_text = codecs.BOM_UTF16_LE + wide.drop(columns="app_complete_flag").to_csv(
        index=False, sep="\t").encode("utf-16-le")
    files = {"stray_quote.csv": ("\n".join(lines) + "\n").encode(), "nul_row.csv": ("\n".join(text) + "\n").encode(),
             "unicode_text.txt": unicode_text}
    truth = pd.concat([quoted, nul, wide], ignore_index=True).set_index("lead_id")["app_complete_flag"]
    return files, truth, {"stray_quote.csv": "sq-4", "nul_row.csv": "nul-5"}


def _exports(truth: pd.Series) -> list[list[tuple[str, int, str]]]:
    """What the CRM sends on three days: every outcome known so far, each day (the common case)."""
    day1 = [(f"sq-{i}", truth[f"sq-{i}"], "2021-08-25 10:00:00") for i in range(10)] + [
        (f"u16-{i}", truth[f"u16-{i}"], "2021-08-25 10:00:00") for i in range(10)]
    day2 = [(f"nul-{i}", truth[f"nul-{i}"], "2021-08-26 10:00:00") for i in range(10)] + [
        (f"sq-{i}", truth[f"sq-{i}"], "2021-08-26 10:00:00") for i in range(10, 20)]
    day3 = [(f"u16-{i}", truth[f"u16-{i}"], "2021-08-27 10:00:00") for i in range(10, 20)] + [
        (f"nul-{i}", truth[f"nul-{i}"], "2021-08-27 10:00:00") for i in range(10, 20)] + [
        (lead, 1 - truth[lead], "2021-08-27 11:00:00") for lead in ("sq-0", "sq-1", "u16-0")]  # corrections
    sent, out = [], []
    for day in (day1, day2, day3):
        sent = sent + day
        out.append(list(sent))
    return out


def _final(rows) -> dict[str, int]:
    """Each lead's label by the rule: the later outcome_at wins."""
    latest: dict[str, tuple[str, int]] = {}
    for lead, label, at in rows:
        if lead not in latest or at >= latest[lead][0]:
            latest[lead] = (at, int(label))
    return {lead: label for lead, (_, label) in latest.items()}


def test_hostile_files_and_a_cumulative_outcomes_export_reconcile_row_by_row(served):
    import mlflow

    home, process, port = served

    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    champion = registry.champion_version("lead_scoring")
    files, truth, broken = _lead_files()
    for name, data in files.items():
        _drop(home, name, data)
    expected_ids = set(truth.index) - set(broken.values())

    def scored():
        frame = warehouse.read_partitions(home.warehouse, "scored_leads", DAYS)
        return len(frame) and expected_ids <= set(frame["lead_id"]) and set(frame["model_version"]) == {champion}

    wait_for("the three hostile files scored", scored, process, 240, every=1)

    # every row of every lead file: accepted or rejected, by rule
    raw = warehouse.read_partitions(home.warehouse, "raw_leads", DAYS)
    rejected = pd.concat([warehouse.read_partitions(home.warehouse, "rejected_leads", DAYS),
                          warehouse.read_partitions(home.warehouse, "rejected_leads/undated")], ignore_index=True)
    entries = {e.file: e for e in ledger.landed_entries(home)}
    rules = {"stray_quote.csv": ["unclosed_quote"], "nul_row.csv": ["binary_data"], "unicode_text.txt": []}
    for name, expected in rules.items():
        accepted = raw[raw["source_file"] == name]
        refused = rejected[rejected["source_file"] == name]
        assert entries[name].rows_read == 30 == len(accepted) + len(refused), name
        assert sorted(refused["rule"]) == expected, name
    assert "münchen" in set(raw["city_mapped"])
    assert set(raw["lead_id"]) == expected_ids
    entry = ledger.read_entry(home, entries["unicode_text.txt"].sha256)
    assert entry.encoding == "utf-16 with BOM" and entry.rows_unreadable == 0

    # a CRM's cumulative export, one file a day; each day waits for the last one's labels
    exports = _exports(truth)
    for day, rows in enumerate(exports):
        text = "lead_id,app_complete_flag,outcome_at\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)
        _drop(home, f"crm_outcomes_day{day + 1}.csv", text.encode())
        want = {lead: label for lead, label in _final(rows).items() if lead in expected_ids}

        def labelled():
            features = warehouse.read_partitions(home.warehouse, "lead_features", DAYS)
            if not len(features):
                return False
            shown = features.dropna(subset=["app_complete_flag"]).set_index("lead_id")["app_complete_flag"]
            return shown.astype(int).to_dict() == want

        wait_for(f"day {day + 1}'s outcomes in lead_features", labelled, process, 180, every=1)

    status = run_query(home, "SELECT source_file, status, count(*) AS n FROM lead_outcomes GROUP BY ALL")
    counts = {(f, s): int(n) for f, s, n in status.itertuples(index=False)}
    assert counts == {
        ("crm_outcomes_day1.csv", "attached"): 19, ("crm_outcomes_day1.csv", "pending"): 1,  # sq-4's row was broken
        ("crm_outcomes_day2.csv", "attached"): 19, ("crm_outcomes_day2.csv", "unchanged"): 19,
        ("crm_outcomes_day2.csv", "pending"): 2,  # and nul-5's
        ("crm_outcomes_day3.csv", "attached"): 23, ("crm_outcomes_day3.csv", "unchanged"): 38,
        ("crm_outcomes_day3.csv", "pending"): 2}
    for day, rows in enumerate(exports):
        name = f"crm_outcomes_day{day + 1}.csv"
        assert ledger_rows(home, name) == len(rows) == sum(n for (f, _), n in counts.items() if f == name)

    history = warehouse.read_partitions(home.warehouse, "outcome_history", DAYS)
    assert int(history["label_changed"].sum()) == 19 + 19 + 23  # not 20 + 40 + 63 rows sent

    path = home.warehouse / "model_performance.parquet"

    def counted():
        if not path.exists():
            return None
        table = warehouse.read_parquet(path)
        row = table[(table["model_version"] == champion) & (table["week"] == ALL_WEEKS)]
        return (row.iloc[0],) if len(row) and row.iloc[0]["outcomes_since_training"] == 61 else None

    wait_for("model_performance counting the 61 new outcomes", counted, process, 150, every=2)

    nxt = synth.generate_leads(NEXT_DAY, 1, 25, seed=64, labelled=False)
    _drop(home, "next_day.csv", nxt.to_csv(index=False).encode())

    def next_scored():
        frame = warehouse.read_partitions(home.warehouse, "scored_leads", [NEXT_DAY])
        return len(frame) == 25 and set(frame["model_version"]) == {champion}

    wait_for("the next file scored", next_scored, process, 120, every=1)
    runs = graphql(port, RUNS)["runsOrError"]["results"]
    assert runs and not [r for r in runs if r["status"] in ("FAILURE", "CANCELED")], runs


def ledger_rows(home, name: str) -> int:
    (entry,) = [e for e in ledger.landed_entries(home, kind="outcomes") if e.file == name]
    return entry.rows_read
