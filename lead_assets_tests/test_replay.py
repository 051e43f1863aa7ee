"""`lead-assets replay`: a synthetic labelled history played through a fresh home by the shipped sensors.

Nobody clicks: the first model is trained when retrain_on_outcomes says so, promoted by the gate
in the same run, the history rescored by rescore_on_champion_change, and the leads that arrive
after it are scored on arrival. The report shows what sales were shown, month by month.
"""

import os
import time

import pandas as pd
import pytest

from lead_assets import cli
from lead_assets.core import clock
from lead_assets.core.leads import synth

pytestmark = pytest.mark.slow(seconds=280)  # started first by make test (conftest.py)

# Three steps of 30 days: the first model (step 2), a retrain on new outcomes and its promotion
# (step 3), and leads scored on arrival in between; each served step is about a minute of dagster dev.
STEP_DAYS = 30


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
        result = run_replay(root / "history.csv", root / "out", step_days=STEP_DAYS, label_delay_days=14,
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
    retrain = result.trainings.iloc[1]  # enough new outcomes under the champion: a challenger, judged
    assert retrain["run_key"] == "retrain-v1-new_outcomes" and retrain["champion_before"] == "1"
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
                    "## Recalibrations", "![replay](replay.png)"):
        assert heading in report
    assert (out / "replay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(out / "replay_months.csv")) == len(result.months)
    assert len(pd.read_csv(out / "replay_decisions.csv")) == len(result.decisions)
    assert (out / "replay_recalibrations.csv").exists()
    assert result.months["calibration_error_if_calibrated"].dropna().between(0, 0.2).all()


def test_a_replay_starts_from_a_fresh_home_and_bad_input_is_one_line(replayed, capsys):
    root, _, _ = replayed
    assert cli.main(["replay", "--data", str(root / "history.csv"), "--out", str(root / "out")]) == 2
    assert "already holds a data home" in capsys.readouterr().err
    assert cli.main(["replay", "--data", str(root / "missing.csv"), "--out", str(root / "other")]) == 2
    assert "no such file" in capsys.readouterr().err
    (root / "unlabelled.csv").write_text("created_date,city_mapped\n2021-07-01 10:00:00,Mumbai\n")
    assert cli.main(["replay", "--data", str(root / "unlabelled.csv"), "--out", str(root / "other")]) == 2
    assert "missing column(s) app_complete_flag" in capsys.readouterr().err


REFRESH = "performance_refresh"
SENSOR_TICKS = """{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name
  sensorState { ticks(limit: 1) { timestamp status } } } } } } }"""


def _last_ticks(port) -> dict[str, tuple[float, str]]:
    from lead_assets_tests.served import graphql

    nodes = graphql(port, SENSOR_TICKS)["repositoriesOrError"]["nodes"]
    return {s["name"]: (s["sensorState"]["ticks"][0]["timestamp"], s["sensorState"]["ticks"][0]["status"])
            for node in nodes for s in node["sensors"] if s["sensorState"]["ticks"]}


def _quiet(instance, port, since: float, sensors) -> bool:
    """No run queued or going, and every sensor has finished a tick that began after the last run
    ended (and after ``since``) without asking for one: what the in-process replay's last round is."""
    runs = instance.get_runs(limit=500)
    if any(not run.is_finished for run in runs):
        return False
    ended = [instance.get_run_stats(run.run_id).end_time or 0 for run in runs[:20]]
    mark = max([since, *ended])
    ticks = _last_ticks(port)
    return all(name in ticks and ticks[name][0] > mark and ticks[name][1] in ("SKIPPED", "SUCCESS")
               for name in sensors)


def test_the_same_history_through_dagster_dev_gets_the_same_decisions(replayed, tmp_path, monkeypatch):
    """The served twin: each step's files dropped in the inbox of a running `dagster dev` whose
    processes read the clock from LEAD_ASSETS_NOW_FILE; the daemon decides; each step ends when
    the location is quiet. Same runs (sensor and run key) at each step, same trainings and
    champions, same version shown to sales for every lead."""
    from dagster import DagsterInstance

    from lead_assets.core.outcomes import playback
    from lead_assets.core.release import registry
    from lead_assets.core.scoring import shown
    from lead_assets.core.store.home import LeadHome
    from lead_assets.demo import ensure_dagster_home
    from lead_assets.defs.ticks import INTERVAL_ENV
    from lead_assets.replay import SENSOR_ORDER, _drop, registry_champion
    from lead_assets_tests.served import dev_server, wait_for

    root, result, _ = replayed
    history = playback.read_history(root / "history.csv")
    home_root = tmp_path / "home"
    monkeypatch.setenv("LEAD_ASSETS_HOME", str(home_root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(home_root / "dagster"))
    home = LeadHome.resolve().ensure()
    ensure_dagster_home(home)
    now_file = home_root / "now"
    clock.set_file(now_file, pd.Timestamp(history["_created"].min()).normalize().to_pydatetime())
    env = dict(os.environ, **{clock.NOW_FILE_ENV: str(now_file), INTERVAL_ENV: "5",
                              "LEAD_ASSETS_TICK_WATCH_SECONDS": "0"})
    env["LEAD_ASSETS_FIRST_TRAINING_MIN_LABELLED"] = None  # the shipped rule trains the first model

    live_runs, champions = {}, {}
    with dev_server(env) as (process, port, _), DagsterInstance.from_config(str(home_root / "dagster")) as instance:
        for step in playback.plan(history, STEP_DAYS, 14):
            known = {run.run_id for run in instance.get_runs(limit=500)}
            clock.set_file(now_file, step.now.to_pydatetime())
            stamp = step.now.strftime("%Y-%m-%d")
            began = time.time()
            if len(step.leads):
                _drop(home, f"leads_{stamp}.csv", step.leads)
            if len(step.outcomes):
                _drop(home, f"outcomes_{stamp}.csv", step.outcomes)
            wait_for(f"step {step.number} to go quiet", lambda: _quiet(instance, port, began, SENSOR_ORDER),
                     process, 600, every=1)
            new = [run for run in instance.get_runs(limit=500) if run.run_id not in known]
            assert all(run.status.value == "SUCCESS" for run in new), [(r.job_name, r.status) for r in new]
            live_runs[step.number] = sorted((run.tags.get("dagster/sensor_name", ""), run.tags.get(
                "dagster/run_key", "")) for run in new if run.tags.get("dagster/sensor_name") in SENSOR_ORDER)
            champions[step.number] = registry_champion(registry, "lead_scoring", home)

    decisions = result.decisions[result.decisions["decision"] == "run"]
    for number, runs in live_runs.items():
        asked = decisions[decisions["step"] == number]
        expected = sorted(zip(asked["sensor"], asked["detail"]))
        # model_performance refreshes whenever labels or scores changed: the daemon, ticking while
        # runs go, may refresh twice where the command's rounds refreshed once (its key is an
        # event-log position, which differs between two instances)
        assert [r for r in runs if r[0] != REFRESH] == [r for r in expected if r[0] != REFRESH], (number, runs, expected)
        assert any(r[0] == REFRESH for r in runs) == any(r[0] == REFRESH for r in expected), number
    promoted = result.trainings[result.trainings["promoted"]]
    for number, champion in champions.items():
        before = promoted[promoted["step"] <= number]
        assert champion == (str(before["version"].iloc[-1]) if len(before) else None), number
    command = shown.read(LeadHome.resolve(str(root / "out" / "home")).warehouse)
    live = shown.read(home.warehouse)
    pairs = lambda frame: sorted(zip(frame["lead_id"], frame["model_version"].astype(str)))  # noqa: E731
    assert pairs(live) == pairs(command) and len(live) >= len(history) // 2
