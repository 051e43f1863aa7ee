"""`lead-assets replay`: a synthetic labelled history played through a fresh home by the shipped sensors.

Nobody clicks: the first model is trained when retrain_on_outcomes says so, promoted by the gate
in the same run, the history rescored by rescore_on_champion_change, and the leads that arrive
after it are scored on arrival. The report shows what sales were shown, month by month.
"""

import os

import pandas as pd
import pytest

from lead_assets import cli
from lead_assets.core import clock
from lead_assets.core.leads import synth


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    history = synth.generate_leads("2021-07-01", 75, 60, seed=11, labelled=True)
    history.to_csv(root / "history.csv", index=False)
    from lead_assets.replay import run_replay

    lines = []
    elsewhere = root / "production" / "mlflow.db"  # the caller's registry: a replay must leave it alone
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere}")
        result = run_replay(root / "history.csv", root / "out", step_days=15, label_delay_days=14,
                            say=lines.append)
        assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{elsewhere}"  # given back
    assert not elsewhere.parent.exists() and (root / "out" / "home" / "mlflow" / "mlflow.db").exists()
    return root, result, lines


def test_the_sensors_train_promote_and_score_new_leads_on_arrival_with_nobody_clicking(replayed):
    _, result, lines = replayed
    assert result.failed_runs == []
    decisions = result.decisions
    waits = decisions[(decisions["sensor"] == "retrain_on_outcomes") & (decisions["decision"] == "skip")]
    assert waits["detail"].str.contains("no champion yet").any()
    first = result.trainings.iloc[0]
    assert first["run_key"] == "first-training" and first["why"].startswith("first model: ")
    assert first["verdict"] == "pass" and first["promoted"] and first["version"] == "1"
    rescored = decisions[(decisions["sensor"] == "rescore_on_champion_change") & (decisions["decision"] == "run")]
    assert rescored["detail"].str.startswith("rescore-1-v1-").any()
    months = result.months.set_index("month")
    assert months.loc["2021-07", "scored_on_arrival"] == 0.0  # no model yet: rescored later, not shown on arrival
    assert months.loc["2021-09", "scored_on_arrival"] == 1.0 and months.loc["2021-09", "versions"].startswith("v1 ")
    assert months.loc["2021-09", "auc"] > 0.6 and "frozen_auc" in months
    assert any(line.startswith("  training v1: pass -> champion") for line in lines)
    assert sum("step " in line for line in lines) == len(decisions["step"].unique())  # a line per step
    assert clock.NOW_ENV not in os.environ  # the clock is given back


def test_the_report_has_the_months_the_trainings_and_every_decision(replayed):
    root, result, _ = replayed
    out = root / "out"
    report = result.report.read_text()
    for heading in ("## What sales were shown, per month of lead creation", "## Trainings and the gate's verdicts",
                    "![replay](replay.png)"):
        assert heading in report
    assert (out / "replay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(out / "replay_months.csv")) == len(result.months)
    assert len(pd.read_csv(out / "replay_decisions.csv")) == len(result.decisions)


def test_a_replay_starts_from_a_fresh_home_and_bad_input_is_one_line(replayed, capsys):
    root, _, _ = replayed
    assert cli.main(["replay", "--data", str(root / "history.csv"), "--out", str(root / "out")]) == 2
    assert "already holds a data home" in capsys.readouterr().err
    assert cli.main(["replay", "--data", str(root / "missing.csv"), "--out", str(root / "other")]) == 2
    assert "no such file" in capsys.readouterr().err
    (root / "unlabelled.csv").write_text("created_date,city_mapped\n2021-07-01 10:00:00,Mumbai\n")
    assert cli.main(["replay", "--data", str(root / "unlabelled.csv"), "--out", str(root / "other")]) == 2
    assert "missing column(s) app_complete_flag" in capsys.readouterr().err
