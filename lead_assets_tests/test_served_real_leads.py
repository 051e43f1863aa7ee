"""The live system on the real CodePro history: what a first deployment does, end to end.

`lead-assets init` and `dg dev` on a free loopback port (as `make dev`); the labelled leads up to
2021-12-31 are dropped in the inbox and ingested through lead_features with no champion yet (no
red runs); `dg launch --assets lead_scoring_model` with its defaults judges the recipe on monthly
backtests and its gate promotes a champion with no further click; the 2022 leads, dropped
without their labels, are scored, and their withheld labels show precision >= 0.65 and recall
>= 0.75 for "not junk"; then those labels are dropped as a narrow outcomes file and
model_performance shows the same realised precision and recall for the champion. Skips when
the real file is absent. Takes a few minutes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lead_assets_tests.served import ROOT, dev_server, graphql, wait_for

pytestmark = pytest.mark.slow(seconds=150)  # started first by make test (conftest.py)

REAL = "leads_labelled_2021-07_2022-02.csv"
CUT = "2021-12-31"
FAILED_RUNS = '{ runsOrError(filter: {statuses: [FAILURE]}) { ... on Runs { results { runId jobName } } } }'


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _drop(home, name: str, frame: pd.DataFrame) -> None:
    """Written beside the inbox, then moved in whole: what an export job does."""
    staging = Path(str(home.root)) / "staging"
    staging.mkdir(exist_ok=True)
    frame.to_csv(staging / name, index=False)
    os.replace(staging / name, Path(str(home.inbox)) / name)


def _partitions(home, asset: str) -> set[str]:
    from lead_assets.core.store import warehouse

    return set(warehouse.existing_partitions(home.warehouse, asset))


@pytest.fixture
def live(codepro, lead_home, tmp_path):
    """`make dev`: `lead-assets init`, then `dg dev` on a free loopback port."""
    env = dict(os.environ, LEAD_ASSETS_HOME=str(lead_home.root), DAGSTER_HOME=str(tmp_path / "dagster"),
               # deployed by one click and judged as it stands: no training without it (the loop's own tests)
               LEAD_ASSETS_FIRST_TRAINING_MIN_LABELLED="0", LEAD_ASSETS_RETRAIN_MIN_NEW_OUTCOMES="0")
    subprocess.run([_bin("lead-assets"), "init"], env=env, check=True, capture_output=True, cwd=ROOT)
    with dev_server(env, command="dg") as (process, port, _):
        yield process, port, env, lead_home, codepro


def test_first_deployment_on_real_history_promotes_and_scores_2022(live):
    import mlflow

    from lead_assets.core.release import registry

    from lead_assets.core.store import warehouse

    process, port, env, home, codepro = live
    raw = pd.read_csv(codepro / REAL, dtype=str, keep_default_na=False)
    raw = raw.drop(columns=[c for c in raw.columns if c.startswith("Unnamed") or c == ""])
    raw.insert(0, "lead_id", [f"real-{i}" for i in range(len(raw))])
    created = pd.to_datetime(raw["created_date"])
    history, later = raw[created <= f"{CUT} 23:59:59"], raw[created > f"{CUT} 23:59:59"]
    history_days = set(created[created <= f"{CUT} 23:59:59"].dt.strftime("%Y-%m-%d"))
    later_days = set(created[created > f"{CUT} 23:59:59"].dt.strftime("%Y-%m-%d"))

    _drop(home, "history_to_2021-12-31.csv", history)
    wait_for("the history in lead_features", lambda: history_days <= _partitions(home, "lead_features"), process,
             900, every=3)
    assert not _partitions(home, "scored_leads")  # no champion yet: nothing scored, nothing failed

    launched = subprocess.run([_bin("dg"), "launch", "--assets", "lead_scoring_model"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]

    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    champion = wait_for("a champion promoted by the gate", lambda: registry.champion_version("lead_scoring"),
                        process, 300, every=3)
    _drop(home, "leads_2022_unlabelled.csv", later.drop(columns=["app_complete_flag"]))

    def scored_2022():
        if not later_days <= _partitions(home, "scored_leads"):
            return None
        frame = warehouse.read_partitions(home.warehouse, "scored_leads", sorted(later_days))
        return (frame,) if len(frame) >= len(later) * 0.99 and set(frame["model_version"]) == {champion} else None

    (scored,) = wait_for("the 2022 leads scored by the champion", scored_2022, process, 900, every=3)
    labels = later.set_index("lead_id")["app_complete_flag"].astype(int)
    scored = scored[scored["lead_id"].isin(labels.index)]
    y = labels.loc[scored["lead_id"]].to_numpy()
    flagged = (scored["bucket"] != "junk").to_numpy()
    precision, recall = (flagged & (y == 1)).sum() / flagged.sum(), (flagged & (y == 1)).sum() / y.sum()
    print(json.dumps({"champion": champion, "leads_2022": int(len(scored)), "precision": round(precision, 4),
                      "recall": round(recall, 4)}))
    assert len(scored) >= 0.99 * len(later)
    assert precision >= 0.65 and recall >= 0.75, (precision, recall)
    assert scored["cutoff_rule"].str.startswith("top ").mean() > 0.95

    featured = len(warehouse.read_partitions(home.warehouse, "lead_features", sorted(history_days)))

    def history_rescored():  # the first promotion scores every day that had features
        frame = warehouse.read_partitions(home.warehouse, "scored_leads", sorted(history_days))
        return (frame,) if len(frame) == featured and set(frame["model_version"]) == {champion} else None

    wait_for("the history rescored by the first champion", history_rescored, process, 600, every=3)

    # The 2022 outcomes arrive later, as the CRM's narrow export: the live system judges the champion on them.
    outcomes = later[["lead_id", "app_complete_flag"]]
    staging = Path(str(home.root)) / "staging"
    outcomes.to_csv(staging / "outcomes_2022.csv", index=False)
    os.replace(staging / "outcomes_2022.csv", Path(str(home.inbox)) / "outcomes_2022.csv")
    path = home.warehouse / "model_performance.parquet"

    def realised():
        if not path.exists():
            return None
        table = warehouse.read_parquet(path)
        row = table[(table["model_version"] == champion) & (table["week"] == "all")]
        return (row.iloc[0],) if len(row) and row.iloc[0]["leads_with_outcome"] == len(scored) else None

    (row,) = wait_for("model_performance on the 2022 outcomes", realised, process, 600, every=3)
    print(json.dumps({"realised_precision": round(float(row["precision"]), 4),
                      "realised_recall": round(float(row["recall"]), 4), "realised_auc": round(float(row["auc"]), 4)}))
    assert row["leads_scored"] == len(scored)  # judged on 2022 only: the history is its training data
    assert row["precision"] == pytest.approx(precision, abs=1e-12) and row["recall"] == pytest.approx(recall, abs=1e-12)
    failed = graphql(port, FAILED_RUNS)["runsOrError"]["results"]
    assert failed == [], failed
