"""The outcome loop through the sensors: scored leads, outcomes later, labels in place, performance, retrain."""

import json
import os
import time
from datetime import date

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, build_sensor_context, instance_for_test, materialize

from lead_assets.core.inbox import ledger

from lead_assets.core.leads import synth

from lead_assets.core.store import warehouse
from lead_assets.core.store.home import LeadHome
from lead_assets.core.outcomes.realised import ALL_WEEKS
from lead_assets.definitions import defs
from lead_assets.defs.inbox.ingest import inbox_sensor
from lead_assets.defs.outcomes.performance import model_performance, retrain_on_outcomes, retrain_reasons
from lead_assets.defs.policy import OutcomePolicy
from lead_assets.defs.resources import LeadHomeResource, ModelRegistry, resources_for
from lead_assets.views import run_query

pytestmark = pytest.mark.slow(seconds=55)  # started first by make test (conftest.py)

FIRST, TODAY = date(2021, 7, 1), date(2026, 11, 24)
NEW_DAYS = ["2021-08-10", "2021-08-11"]


def run(instance, keys, tags=None):
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[AssetKey(k) for k in keys], tags=tags)
    assert result.success
    return result


def tick(instance, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor,
                                   resources={"lead_home": LeadHomeResource(settle_seconds=0)})
    result = inbox_sensor(context)
    return list(result.run_requests or []), result.cursor


def execute(instance, request):
    keys = [k.to_user_string() for k in request.asset_selection]
    partition = {k: v for k, v in request.tags.items() if k.startswith("dagster/asset_partition_range")}
    return run(instance, keys, partition or None)


def drop(home, name, text: str):
    path = home.inbox / name
    path.write_text(text)
    os.utime(path.path, (time.time() - 10, time.time() - 10))


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """A champion on 40 labelled days, then two new days dropped unlabelled and scored."""
    root = tmp_path_factory.mktemp("outcomes")
    saved = {k: os.environ.get(k) for k in ("LEAD_ASSETS_HOME", "MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
    os.environ["LEAD_ASSETS_HOME"] = str(root / "home")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    home = LeadHome.resolve().ensure()
    with instance_for_test(overrides={"telemetry": {"enabled": False}}) as instance:
        history = synth.generate_leads("2021-07-01", 40, 150, seed=21, labelled=True)
        for path in synth.write_daily_files(history, home.inbox.path, prefix="history"):
            ledger.receive(home, home.inbox / path.name, FIRST, TODAY)
        run(instance, ["raw_leads", "cleaned_leads", "lead_features"],
            {"dagster/asset_partition_range_start": "2021-07-01", "dagster/asset_partition_range_end": "2021-08-09"})
        run(instance, ["lead_scoring_model", "champion_model"])
        _, cursor = tick(instance)
        truth = synth.generate_leads(NEW_DAYS[0], 2, 120, seed=77, labelled=True)
        drop(home, "web_leads.csv", truth.drop(columns="app_complete_flag").to_csv(index=False))
        (request,), cursor = tick(instance, cursor)
        assert AssetKey("scored_leads") in request.asset_selection
        execute(instance, request)
        yield home, instance, truth, cursor
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_outcomes_as_a_narrow_file_and_a_re_export_label_every_lead_once(loop):
    home, instance, truth, cursor = loop
    raw = warehouse.read_partitions(home.warehouse, "raw_leads", NEW_DAYS).sort_values("source_row")
    assert raw["app_complete_flag"].isna().all() and len(raw) == len(truth)
    truth = truth.assign(lead_id=raw.set_index("source_row").loc[range(2, len(truth) + 2), "lead_id"].to_numpy())
    half = len(truth) // 2
    narrow, export = truth.iloc[:half], truth.iloc[half:]
    narrow_text = narrow[["lead_id", "app_complete_flag"]].to_csv(index=False)
    drop(home, "crm_outcomes.csv", narrow_text + "no-such-lead,1\nbad\tid,1\n" + f"{narrow.lead_id.iloc[0]},7\n")
    drop(home, "crm_export.csv", export.drop(columns="lead_id").to_csv(index=False))

    requests, cursor = tick(instance, cursor)
    assert sorted(r.run_key.split("-")[0] for r in requests) == ["ingest", "outcomes"]
    for request in requests:
        execute(instance, request)
    found, cursor = tick(instance, cursor)  # lead_outcomes found the days whose labels changed
    (relabel,) = found
    assert relabel.run_key.startswith("relabel-") and AssetKey("scored_leads") not in relabel.asset_selection
    execute(instance, relabel)
    assert tick(instance, cursor)[0] == []

    raw = warehouse.read_partitions(home.warehouse, "raw_leads", NEW_DAYS)
    assert len(raw) == len(truth) and raw["lead_id"].is_unique  # no second lead from the re-export
    features = warehouse.read_partitions(home.warehouse, "lead_features", NEW_DAYS).set_index("lead_id")
    expected = truth.set_index("lead_id")["app_complete_flag"]
    assert features.loc[expected.index, "app_complete_flag"].astype(int).tolist() == expected.tolist()
    assert features["outcome_at"].notna().all()
    sources = raw.set_index("lead_id")["outcome_source"]
    assert set(sources[narrow.lead_id]) == {"crm_outcomes.csv"} and set(sources[export.lead_id]) == {"crm_export.csv"}

    status = run_query(home, "SELECT status, count(*) AS n FROM lead_outcomes GROUP BY status")
    assert dict(zip(status["status"], status["n"])) == {"attached": half, "pending": 1}
    rejected = run_query(home, "SELECT source_row, rule FROM rejected_leads WHERE source_file = 'crm_outcomes.csv'")
    assert sorted(zip(rejected.source_row, rejected.rule)) == [(half + 3, "bad_lead_id"), (half + 4, "label_not_binary")]
    ledger = run_query(home, "SELECT rows_read, kind FROM ingest_log WHERE file = 'crm_outcomes.csv'")
    assert ledger.to_dict(orient="records") == [{"rows_read": half + 3, "kind": "outcomes"}]  # = half + 1 + 2
    history = run_query(home, "SELECT via, count(*) AS n FROM outcome_history WHERE day >= '2021-08-10' GROUP BY via")
    assert dict(zip(history["via"], history["n"])) == {"outcomes_file": half, "re_export": len(truth) - half}


def test_model_performance_judges_the_champion_on_what_it_served(loop):
    home, instance, truth, _ = loop
    version = ModelRegistry(lead_home=LeadHomeResource()).champion_version()
    result = run(instance, ["model_performance"])
    table = result.output_for_node("model_performance")
    pooled = table[(table["model_version"] == version) & (table["week"] == ALL_WEEKS)].iloc[0]
    assert pooled["leads_scored"] == len(truth) and pooled["leads_with_outcome"] == len(truth)
    assert 0.5 < pooled["auc"] <= 1 and 0 < pooled["precision"] <= 1 and 0 < pooled["recall"] <= 1
    deciles = json.loads(pooled["calibration"])
    assert len(deciles) == 10 and sum(d["leads"] for d in deciles) == len(truth)
    assert pooled["outcomes_since_training"] == len(truth)
    assert set(table["week"]) == {"2021-08-09", ALL_WEEKS}  # both new days are in the week of Monday 9 August
    (check,) = result.get_asset_check_evaluations()
    below = pooled["precision"] < 0.65 or pooled["recall"] < 0.75
    assert check.passed == (not below) and check.severity.value == "WARN"
    queried = run_query(home, "SELECT model_version, week, leads_with_outcome FROM model_performance")
    assert len(queried) == len(table)
    materialization = result.asset_materializations_for_node("model_performance")[0]
    assert "data:image/png;base64," in materialization.metadata["plots"].value


def test_the_champion_is_recalibrated_on_the_outcomes_it_was_not_trained_on_and_scores_through_them(loop):
    from lead_assets.core.model import recalibration
    from lead_assets.defs.outcomes.calibration import champion_calibration
    from lead_assets.serving import warehouse_cutoff

    home, instance, truth, _ = loop
    version = ModelRegistry(lead_home=LeadHomeResource()).champion_version()
    range_tags = {"dagster/asset_partition_range_start": NEW_DAYS[0],
                  "dagster/asset_partition_range_end": NEW_DAYS[-1]}

    def calibrate(minimum):
        resources = {**resources_for(LeadHomeResource()),
                     "outcome_policy": OutcomePolicy(recalibration_min_outcomes=minimum)}
        return materialize([champion_calibration], resources=resources, instance=instance).output_for_node(
            "champion_calibration")

    waiting = calibrate(len(truth) + 1)  # the two labelled days after its training: one lead short
    assert f"{len(truth)} outcomes of leads version {version} was not trained on" in waiting["status"]
    assert recalibration.latest(home.warehouse, version) is None
    before = warehouse.read_partitions(home.warehouse, "scored_leads", NEW_DAYS).set_index("lead_id")
    try:
        refit_summary = calibrate(len(truth))
        refit = recalibration.latest(home.warehouse, version)
        assert refit_summary["status"] == f"refit: {refit.name}" and refit.version == version
        assert (refit.outcomes, refit.since, refit.until) == (len(truth), NEW_DAYS[0], NEW_DAYS[-1])
        assert refit.positives == int(truth["app_complete_flag"].sum())
        assert calibrate(len(truth))["status"].startswith("unchanged")  # the same outcomes: no second refit
        assert len(recalibration.history(home.warehouse, version)) == 1

        result = run(instance, ["scored_leads"], range_tags)
        assert result.asset_materializations_for_node("scored_leads")[0].metadata["calibration"].value == refit.name
        after = warehouse.read_partitions(home.warehouse, "scored_leads", NEW_DAYS).set_index("lead_id")
        after = after.loc[before.index]
        np.testing.assert_allclose(after["probability"], refit.apply(before["probability"]), rtol=0, atol=1e-9)
        assert ((after["bucket"] == "junk") == (before["bucket"] == "junk")).all()
        assert warehouse_cutoff(home)(version)["recalibration"] == refit.as_dict()  # what serve publishes
    finally:
        (home.warehouse / recalibration.FOLDER / f"v{version}.json").unlink(missing_ok=True)
        run(instance, ["scored_leads"], range_tags)  # the later tests see the scores as trained


def test_rescoring_by_a_new_version_keeps_what_the_old_one_served(loop):
    home, instance, truth, _ = loop
    before = run_query(home, "SELECT model_version, count(*) AS n FROM served_scores "
                             "WHERE created_date >= '2021-08-10' GROUP BY model_version")
    assert before["n"].tolist() == [len(truth)]
    run(instance, ["scored_leads"], {"dagster/asset_partition_range_start": NEW_DAYS[0],
                                     "dagster/asset_partition_range_end": NEW_DAYS[-1]})
    again = run_query(home, "SELECT count(*) AS n FROM served_scores WHERE created_date >= '2021-08-10'")
    assert again["n"].tolist() == [len(truth)]  # the same version rescoring adds nothing


def test_the_retrain_trigger_fires_once_per_champion_and_reason(loop):
    home, instance, truth, _ = loop
    run(instance, ["model_performance"])
    registry = ModelRegistry(lead_home=LeadHomeResource())
    champion = registry.champion_version()

    def evaluate(policy):
        with build_sensor_context(instance=instance, resources={
                "lead_home": LeadHomeResource(), "model_registry": registry, "outcome_policy": policy}) as context:
            return retrain_on_outcomes.evaluate_tick(context)

    quiet = evaluate(OutcomePolicy(retrain_min_new_outcomes=len(truth) + 1, retrain_on_underperformance=False))
    assert quiet.run_requests == [] and "meets its targets" in quiet.skip_message
    (request,) = evaluate(OutcomePolicy(retrain_min_new_outcomes=len(truth), retrain_on_underperformance=False)).run_requests
    assert request.run_key == f"retrain-v{champion}-new_outcomes" and retrain_on_outcomes.job_name == (
        "retrain_lead_scoring_model")
    table = pd.DataFrame([{"model_version": champion, "week": ALL_WEEKS, "leads_with_outcome": 500,
                           "precision": 0.5, "recall": 0.9, "outcomes_since_training": 3}])
    assert retrain_reasons(table, champion, OutcomePolicy()) == ["below_target"]
    assert retrain_reasons(table, champion, OutcomePolicy(performance_min_labelled=501)) == []
    assert retrain_reasons(table.assign(precision=0.7), champion, OutcomePolicy()) == []


def test_completions_only_exports_count_as_negatives_only_after_the_maturity_window(loop):
    home, instance, _, cursor = loop
    day = "2021-08-16"  # a week of its own
    truth = synth.generate_leads(day, 1, 150, seed=78, labelled=True)
    drop(home, "more_leads.csv", truth.drop(columns="app_complete_flag").to_csv(index=False))
    requests, cursor = tick(instance, cursor)
    for request in requests:
        execute(instance, request)
    raw = warehouse.read_partitions(home.warehouse, "raw_leads", [day]).set_index("source_row")
    truth["lead_id"] = raw.loc[range(2, len(truth) + 2), "lead_id"].to_numpy()
    completed = truth[truth["app_complete_flag"] == 1]
    drop(home, "completions.csv", completed[["lead_id", "app_complete_flag"]].to_csv(index=False))
    for _ in range(2):  # the outcomes run, then the relabel run it asks for
        requests, cursor = tick(instance, cursor)
        for request in requests:
            execute(instance, request)

    def week_row(policy):
        resources = {**resources_for(LeadHomeResource()), "outcome_policy": policy}
        result = materialize([model_performance], resources=resources, instance=instance)
        table = result.output_for_node("model_performance")
        return table[table["week"] == day].iloc[0]

    recorded = week_row(OutcomePolicy())
    assert recorded["leads_with_outcome"] == len(completed) and recorded["observed_rate"] == 1.0
    matured = week_row(OutcomePolicy(label_maturity_days=30))  # 2021 leads are years old: silence is a no
    assert matured["leads_with_outcome"] == len(truth)
    assert matured["observed_rate"] == pytest.approx(len(completed) / len(truth))
    young = week_row(OutcomePolicy(label_maturity_days=100_000))  # younger than the window: never a negative
    assert young["leads_with_outcome"] == len(completed)


def test_the_realised_check_warns_only_on_enough_labelled_leads():
    from lead_assets.defs.outcomes.performance import realised_performance_meets_targets

    rows = [{"model_version": "3", "week": ALL_WEEKS, "leads_scored": 900, "leads_with_outcome": 400,
             "auc": 0.7, "precision": 0.55, "recall": 0.8, "precision_top_10pct": 0.8, "calibration_error": 0.05},
            {"model_version": "4", "week": ALL_WEEKS, "leads_scored": 90, "leads_with_outcome": 40,
             "auc": 0.6, "precision": 0.2, "recall": 0.2, "precision_top_10pct": 0.3, "calibration_error": 0.2},
            {"model_version": "3", "week": "2021-08-09", "leads_scored": 900, "leads_with_outcome": 400,
             "auc": 0.7, "precision": 0.55, "recall": 0.8, "precision_top_10pct": 0.8, "calibration_error": 0.05}]
    table = pd.DataFrame(rows)
    result = realised_performance_meets_targets(model_performance=table, outcome_policy=OutcomePolicy())
    assert not result.passed and result.severity.value == "WARN"
    assert result.metadata["versions_below_target"].value == ["3"]  # v4 has too few labelled leads to judge
    assert "0.55" in result.metadata["realised"].value
    fine = realised_performance_meets_targets(model_performance=table.assign(precision=0.7),
                                              outcome_policy=OutcomePolicy())
    assert fine.passed and fine.metadata["versions_judged"].value == 1
    unjudged = realised_performance_meets_targets(model_performance=table,
                                                  outcome_policy=OutcomePolicy(performance_min_labelled=401))
    assert unjudged.passed and unjudged.metadata["versions_judged"].value == 0


def test_performance_refresh_asks_again_for_updates_made_after_its_request(loop):
    from lead_assets.defs.outcomes.performance import performance_refresh

    home, instance, _, _ = loop

    def evaluate(cursor):
        with build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as context:
            result = performance_refresh.evaluate_tick(context)
        return result.run_requests, result.cursor

    (request,), cursor = evaluate(None)
    assert request.asset_selection == [AssetKey("model_performance"), AssetKey("champion_calibration")]
    assert evaluate(cursor)[0] == []  # nothing changed since it asked
    run(instance, ["lead_features"], {"dagster/asset_partition_range_start": NEW_DAYS[0],
                                      "dagster/asset_partition_range_end": NEW_DAYS[0]})
    (again,), newer = evaluate(cursor)  # an update after the request: one more run
    assert again.run_key != request.run_key and int(newer) > int(cursor)


def _settle(instance, cursor, rounds=6):
    """Tick and run what the sensor asks for until it asks for nothing (outcomes run, then relabel)."""
    for _ in range(rounds):
        requests, cursor = tick(instance, cursor)
        if not requests:
            return cursor
        for request in requests:
            execute(instance, request)
    raise AssertionError("the inbox sensor kept asking for runs")


def test_a_cumulative_export_counts_each_outcome_once_and_a_withdrawn_file_leaves_the_history(loop):
    """Issue #20: a CRM that exports every outcome daily must not inflate attached nor
    outcomes_since_training; the later outcome_at wins; withdrawing a file takes all its events back."""
    from lead_assets.core.leads import labels, landed

    home, instance, _, cursor = loop
    day = "2021-08-24"
    leads = synth.generate_leads(day, 1, 30, seed=90, labelled=False).assign(lead_id=[f"cum-{i}" for i in range(30)])
    drop(home, "cum_leads.csv", leads.to_csv(index=False))
    cursor = _settle(instance, cursor)
    trained_at = max(r.seq for r in ledger.read_index(home)[0])
    sent = []
    days = [[(f"cum-{i}", i % 2, "2021-08-25 10:00:00") for i in range(10)],
            [(f"cum-{i}", i % 2, "2021-08-26 10:00:00") for i in range(10, 20)],
            [(f"cum-{i}", 1, "2021-08-27 10:00:00") for i in (0, 2)]  # two changes, 0 -> 1
            + [("cum-1", 0, "2021-08-25 09:00:00"),  # older than the label in force: no change
               ("cum-3", 0, "2021-08-01 10:00:00")]]  # before the lead was created: a rejected row
    for n, rows in enumerate(days):
        sent += rows
        text = "lead_id,app_complete_flag,outcome_at\n" + "".join(f"{a},{b},{c}\n" for a, b, c in sent)
        drop(home, f"cum_export_{n}.csv", text)
        cursor = _settle(instance, cursor)
    status = run_query(home, "SELECT source_file, status, count(*) AS n FROM lead_outcomes "
                             "WHERE source_file LIKE 'cum_export_%' GROUP BY ALL ORDER BY ALL")
    counts = {(f, s): n for f, s, n in status.itertuples(index=False)}
    assert counts == {("cum_export_0.csv", "attached"): 10,
                      ("cum_export_1.csv", "attached"): 10, ("cum_export_1.csv", "unchanged"): 10,
                      ("cum_export_2.csv", "attached"): 2, ("cum_export_2.csv", "unchanged"): 21,
                      ("cum_export_2.csv", "rejected"): 1}
    refused = run_query(home, "SELECT source_row, rule FROM rejected_leads WHERE source_file = 'cum_export_2.csv'")
    assert refused.values.tolist() == [[25, "outcome_before_lead"]]
    in_force = warehouse.read_partitions(home.warehouse, "raw_leads", [day]).set_index("lead_id")["app_complete_flag"]
    assert in_force["cum-0"] == 1 and in_force["cum-2"] == 1 and in_force["cum-1"] == 1 and in_force["cum-4"] == 0
    history = warehouse.read_partitions(home.warehouse, "outcome_history", [day])
    assert labels.new_outcomes_since(history, trained_at) == 22  # not 10 + 20 + 23 rows sent

    landed.withdraw(home, "cum_export_1.csv", "sent twice by mistake", FIRST, TODAY)
    cursor = _settle(instance, cursor)
    history = warehouse.read_partitions(home.warehouse, "outcome_history", [day])
    assert "cum_export_1.csv" not in set(history["source_file"])  # also where it was not the label in force
    assert run_query(home, "SELECT count(*) AS n FROM lead_outcomes WHERE source_file = 'cum_export_1.csv'")[
        "n"].tolist() == [0]
    labels = warehouse.read_partitions(home.warehouse, "raw_leads", [day]).set_index("lead_id")["app_complete_flag"]
    assert labels["cum-12"] == 0 and labels["cum-0"] == 1  # export 2 still carries every row export 1 did
