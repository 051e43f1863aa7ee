"""Served: the outcome loop under `dagster dev`, with only files dropped in the inbox.

A champion is trained on synthetic history; two days of leads are dropped unlabelled and
scored; then their outcomes arrive, half as a narrow file (`lead_id`, `app_complete_flag`)
and half as a labelled re-export without ids. The daemon alone (inbox sensor, lead_outcomes,
the relabel run, the performance automation) must leave every lead once in raw_leads with its
true label in lead_features, and model_performance judging the champion on those outcomes.
"""

import os

import pandas as pd
import pytest

from lead_assets.core.leads import synth

from lead_assets.core.release import registry

from lead_assets.core.store import warehouse
from lead_assets.core.outcomes.realised import ALL_WEEKS
from lead_assets_tests.served import dev_server, drop, graphql, train_champion, wait_for

pytestmark = pytest.mark.slow(seconds=100)  # started first by make test (conftest.py)

DAYS = ["2021-08-10", "2021-08-11"]
FAILED_RUNS = '{ runsOrError(filter: {statuses: [FAILURE]}) { ... on Runs { results { runId jobName } } } }'


@pytest.fixture
def served(lead_home, tmp_path, monkeypatch):
    from lead_assets.demo import ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    ensure_dagster_home(lead_home)
    train_champion(lead_home)
    with dev_server(dict(os.environ)) as (process, port, _):
        yield lead_home, process, port


def _read(home, asset):
    return warehouse.read_partitions(home.warehouse, asset, DAYS)


def test_outcomes_dropped_later_label_the_scored_leads_and_judge_the_champion(served):
    import mlflow

    home, process, port = served
    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    champion = registry.champion_version("lead_scoring")
    truth = synth.generate_leads(DAYS[0], len(DAYS), 100, seed=404, labelled=True)
    drop(home, "web_leads.csv", truth.drop(columns="app_complete_flag").to_csv(index=False))

    def scored():
        frame = _read(home, "scored_leads")
        return len(frame) == len(truth) and set(frame["model_version"]) == {champion}

    wait_for("the new leads scored by the champion", scored, process, 300, every=2)
    raw = _read(home, "raw_leads").set_index("source_row")
    truth["lead_id"] = raw.loc[range(2, len(truth) + 2), "lead_id"].to_numpy()
    half = len(truth) // 2
    narrow, export = truth.iloc[:half], truth.iloc[half:]
    drop(home, "crm_outcomes.csv", narrow[["lead_id", "app_complete_flag"]].to_csv(index=False))
    drop(home, "crm_export.csv", export.drop(columns="lead_id").to_csv(index=False))

    expected = truth.set_index("lead_id")["app_complete_flag"].astype(int)

    def labelled():
        features = _read(home, "lead_features")
        if len(features) != len(truth) or features["app_complete_flag"].isna().any():
            return None
        return (features.set_index("lead_id").loc[expected.index, "app_complete_flag"].astype(int),)

    (labels,) = wait_for("every lead labelled in lead_features", labelled, process, 300, every=2)
    assert labels.tolist() == expected.tolist()
    raw = _read(home, "raw_leads")
    assert len(raw) == len(truth) and raw["lead_id"].is_unique
    assert set(raw.set_index("lead_id").loc[narrow["lead_id"], "outcome_source"]) == {"crm_outcomes.csv"}
    assert set(raw.set_index("lead_id").loc[export["lead_id"], "outcome_source"]) == {"crm_export.csv"}

    path = home.warehouse / "model_performance.parquet"

    def judged():
        if not path.exists():
            return None
        table = warehouse.read_parquet(path)
        row = table[(table["model_version"] == champion) & (table["week"] == ALL_WEEKS)]
        return (row.iloc[0],) if len(row) and row.iloc[0]["leads_with_outcome"] == len(truth) else None

    (row,) = wait_for("model_performance judging the champion", judged, process, 300, every=3)
    served_scores = _read(home, "scored_leads").set_index("lead_id")
    flagged = served_scores.loc[expected.index, "bucket"].ne("junk").to_numpy()
    hits = (flagged & (expected.to_numpy() == 1)).sum()
    assert row["leads_scored"] == len(truth)
    assert row["precision"] == pytest.approx(hits / flagged.sum(), abs=1e-12)
    assert row["recall"] == pytest.approx(hits / expected.sum(), abs=1e-12)
    assert pd.notna(row["auc"])
    assert graphql(port, FAILED_RUNS)["runsOrError"]["results"] == []
