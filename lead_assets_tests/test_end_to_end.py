"""A mixed batch of good and bad files, dropped in the inbox, reconciled row by row.

Every row of every file ends in exactly one of: scored_leads (accepted, one row per lead),
rejected_leads (with file, row and rule), or quarantine/ (whole file, with a reason). Then a
new champion is promoted and the rescoring sensor rescores every day in one run.
"""

import gzip
import json
import os
import time
from datetime import date

import pandas as pd
import pytest
from dagster import AssetKey, build_sensor_context, instance_for_test

from lead_assets.core.leads import synth

from lead_assets.core.store import warehouse
from lead_assets.definitions import defs
from lead_assets.defs.scoring.freshness import rescore_on_champion_change
from lead_assets.defs.inbox.ingest import inbox_sensor
from lead_assets.defs.resources import LeadHomeResource, ModelRegistry

pytestmark = pytest.mark.slow(seconds=100)  # started first by make test (conftest.py)

PIPELINE = ["raw_leads", "cleaned_leads", "lead_features", "scored_leads"]


def run_selection(instance, keys, tags=None):
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[AssetKey(k) for k in keys], tags=tags)
    assert result.success
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A home with 40 days of labelled history and a promoted champion."""
    root = tmp_path_factory.mktemp("e2e")
    env = {"LEAD_ASSETS_HOME": str(root / "home")}
    saved = {k: os.environ.get(k) for k in (*env, "MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
    os.environ.update(env)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from lead_assets.core.inbox import ledger
    from lead_assets.core.store.home import LeadHome

    home = LeadHome.resolve().ensure()
    with instance_for_test(overrides={"telemetry": {"enabled": False}}) as instance:
        history = synth.generate_leads("2021-07-01", 40, 150, seed=21, labelled=True)
        synth.write_daily_files(history, home.inbox.path, prefix="history")
        for candidate in ledger.list_candidates(home.inbox)[0]:
            ledger.receive(home, candidate.path, date(2021, 7, 1), date(2026, 11, 24))
        run_selection(instance, PIPELINE[:3], {"dagster/asset_partition_range_start": "2021-07-01",
                                               "dagster/asset_partition_range_end": "2021-08-09"})
        run_selection(instance, ["lead_scoring_model", "champion_model"])
        yield home, instance
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def drop(home, name, data: bytes):
    path = home.inbox / name
    path.write_bytes(data)
    os.utime(path.path, (time.time() - 10, time.time() - 10))


def test_mixed_batch_reconciles_every_row(trained):
    """Every row of every file: accepted in raw_leads, rejected (every rule) or in a quarantined file."""
    home, instance = trained
    good = synth.generate_leads("2021-08-20", 2, 60, seed=5, labelled=False)
    messy = synth.generate_leads("2021-08-21", 1, 40, seed=6, labelled=False)
    messy["total_leads_droppped"] = messy["total_leads_droppped"].astype(object)
    messy.loc[0, "created_date"] = "31/31/2021"
    messy.loc[1, "referred_lead"] = 3
    messy.loc[2, "created_date"] = "2020-01-01 10:00:00"
    messy.loc[3, "created_date"] = "2099-01-01 10:00:00"
    messy.loc[4, "total_leads_droppped"] = "many"
    messy.loc[5, "total_leads_droppped"] = -2
    messy.loc[6, "total_leads_droppped"] = 5000
    messy.loc[7, "created_date"] = "20210821"
    messy.loc[8, "created_date"] = "2021-8-21"
    messy.loc[9, "created_date"] = "2021-08-21T10"
    messy = pd.concat([messy, messy.iloc[[15]]], ignore_index=True)  # duplicate row
    messy_lines = messy.to_csv(index=False, sep=";").splitlines()
    messy_lines[13] += ";surplus"  # row 14 has one field too many
    labelled = synth.generate_leads("2021-08-22", 1, 10, seed=8, labelled=True)
    labelled["app_complete_flag"] = ""  # outcome not known yet (training data stays the history's)
    labelled.loc[0, "app_complete_flag"] = 2
    overlap = pd.concat([good.iloc[:10], synth.generate_leads("2021-08-22", 1, 5, seed=7, labelled=False)])
    first_ids = synth.generate_leads("2021-08-20", 1, 3, seed=9, labelled=False).assign(lead_id=["c1", "c2", "c3"])
    resent = synth.generate_leads("2021-08-22", 1, 1, seed=10, labelled=False).assign(lead_id=["c2"])
    files = {
        "good.csv": good.to_csv(index=False).encode(),
        "messy latin ü.csv": ("\n".join(messy_lines) + "\n").encode("latin-1"),
        "labelled.csv": labelled.to_csv(index=False).encode(),
        "overlap.csv.gz": gzip.compress(overlap.to_csv(index=False).encode()),
        "crm_ids.csv": first_ids.to_csv(index=False).encode(),
        "empty.csv": b"",
        "garbage.csv": os.urandom(4096),
        "header_only.csv": (",".join(good.columns) + "\n").encode(),
    }
    for name, data in files.items():
        drop(home, name, data)
    context = build_sensor_context(instance=instance, resources={"lead_home": LeadHomeResource(settle_seconds=0)})
    (request,) = inbox_sensor(context).run_requests
    run_selection(instance, PIPELINE, request.tags)
    drop(home, "crm_ids_resent.csv", resent.to_csv(index=False).encode())  # lead c2 again, another day
    files["crm_ids_resent.csv"] = b""
    context = build_sensor_context(instance=instance, cursor=context.cursor,
                                   resources={"lead_home": LeadHomeResource(settle_seconds=0)})
    (request,) = inbox_sensor(context).run_requests
    run_selection(instance, PIPELINE, request.tags)

    days = ["2021-08-20", "2021-08-21", "2021-08-22"]
    ledger = [json.loads(p.read_text()) for p in home.ledger.glob("*.json")]
    fate = {e["file"]: e for e in ledger if e["file"] in files}
    quarantined = {f for f, e in fate.items() if e["status"] == "quarantined"}
    assert quarantined == {"empty.csv", "garbage.csv", "header_only.csv"}
    assert {p.name.split("_", 2)[2] for p in home.quarantine.iterdir() if p.name.endswith(".reason.json")} >= {
        f"{name}.reason.json" for name in quarantined}
    scored = warehouse.read_partitions(home.warehouse, "scored_leads", days)
    raw = warehouse.read_partitions(home.warehouse, "raw_leads", days)
    rejected = pd.concat([warehouse.read_partitions(home.warehouse, "rejected_leads", days),
                          warehouse.read_partitions(home.warehouse, "rejected_leads/undated")])
    rejected = rejected[rejected.source_file.isin(files)]
    assert scored["lead_id"].is_unique and set(scored["lead_id"]) == set(raw["lead_id"])
    assert rejected.groupby(["source_file", "source_row"]).size().max() == 1  # a row is rejected once
    assert not set(zip(raw.source_file, raw.source_row)) & set(zip(rejected.source_file, rejected.source_row))
    by_rule = rejected.groupby("source_file")["rule"].apply(sorted).to_dict()
    assert by_rule == {
        "messy latin ü.csv": ["absurd_count", "date_before_start", "date_in_future", "duplicate_in_file",
                              "negative_count", "not_a_number", "not_binary", "unparseable_date",
                              "wrong_field_count"],
        "labelled.csv": ["label_not_binary"],
        "overlap.csv.gz": ["duplicate_of_earlier_file"] * 10,
        "crm_ids_resent.csv": ["duplicate_of_earlier_file"],
    }
    for name in files.keys() - quarantined:
        accepted, refused = (raw.source_file == name).sum(), (rejected.source_file == name).sum()
        assert fate[name]["rows_read"] == accepted + refused, name
    # mixed spellings of 2021-08-21 are in their day; lead c2 lives on its first landed day only
    assert len(raw[raw.source_file == "messy latin ü.csv"]) == 41 - 9
    assert raw.set_index("lead_id").loc["c2", "created_date"].strftime("%Y-%m-%d") == "2021-08-20"
    assert len(scored) == 120 + 32 + 9 + 5 + 3


def _rescore_requests(instance, cursor=None):
    home = LeadHomeResource()
    with build_sensor_context(instance=instance, cursor=cursor,
                              resources={"lead_home": home, "model_registry": ModelRegistry(lead_home=home)}) as context:
        result = rescore_on_champion_change.evaluate_tick(context)
    return result.run_requests, result.cursor


def test_promotion_and_rollback_rescore_every_day_in_one_run(trained):
    from lead_assets.cli import main

    home, instance = trained
    leads = set(warehouse.read_partitions(home.warehouse, "lead_features")["lead_id"])
    old = ModelRegistry(lead_home=LeadHomeResource()).champion_version()
    first = run_selection(instance, ["lead_scoring_model"]).output_for_node("lead_scoring_model")["version"]
    _, cursor = _rescore_requests(instance)  # the sensor has seen the current champion
    assert _rescore_requests(instance, cursor)[0] == []
    result = run_selection(instance, ["lead_scoring_model", "champion_model"])
    version = result.output_for_node("champion_model")["version"]
    assert int(version) > int(first)
    (request,), cursor = _rescore_requests(instance, cursor)
    assert request.tags["dagster/asset_partition_range_start"] == "2021-07-01"
    assert rescore_on_champion_change.job_name == "rescore_leads"
    run_selection(instance, ["scored_leads"], request.tags)
    after = warehouse.read_partitions(home.warehouse, "scored_leads")
    assert len(after) == len(leads) and set(after["lead_id"]) == leads  # every day with leads, in one run
    assert set(after["model_version"]) == {str(version)}

    assert main(["--home", str(home.root), "model", "rollback"]) == 0
    (request,), cursor = _rescore_requests(instance, cursor)
    assert request.tags["lead_assets/reason"] == f"champion is now version {old}"
    assert request.run_key.startswith("rescore-3-")  # a new change, not a repeat of version {old}'s first
    run_selection(instance, ["scored_leads"], request.tags)
    restored = warehouse.read_partitions(home.warehouse, "scored_leads")
    assert set(restored["model_version"]) == {str(old)} and set(restored["lead_id"]) == leads
    assert _rescore_requests(instance, cursor)[0] == []


def test_leads_command_lists_best_first_with_reasons(trained, capsys):
    from lead_assets.cli import main

    home, _ = trained
    assert main(["--home", str(home.root), "leads", "--date", "2021-08-20", "--top", "5", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert all(r["reasons"].count(";") == 2 and r["model_version"] for r in rows)
    assert all(r["cutoff_rule"] and (r["bucket"] == "junk") == (r["probability"] < r["cutoff"]) for r in rows)
    for row in rows:  # the same reasons as structured fields, in the order of the text
        details = row["reason_details"]
        assert [d["feature"] for d in details] == [part.split("=")[0] for part in row["reasons"].split("; ")]
        assert all(d["direction"] in ("up", "down") and d["size"] >= 0 for d in details)
        assert f"{'+' if details[0]['direction'] == 'up' else '-'}{details[0]['size']:.2f}" in row["reasons"]
    assert main(["--home", str(home.root), "leads", "--from", "2021-08-20", "--to", "2021-08-22",
                 "--bucket", "junk", "--top", "500", "--format", "csv"]) == 0
    junk = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert len(junk) and set(junk["bucket"]) == {"junk"}


def test_leads_command_shows_each_leads_rank_in_its_day_and_the_capacity_line(trained, capsys, monkeypatch):
    from lead_assets.cli import main

    home, _ = trained
    assert main(["--home", str(home.root), "leads", "--date", "2021-08-20", "--top", "6", "--capacity", "3",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["day_rank"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["in_capacity"] for r in rows] == [r["bucket"] != "junk" and r["day_rank"] <= 3 for r in rows]
    monkeypatch.setenv("LEAD_ASSETS_DAILY_CAPACITY", "1")
    assert main(["--home", str(home.root), "leads", "--date", "2021-08-20", "--bucket", "junk", "--top", "2",
                 "--format", "json"]) == 0
    junk = json.loads(capsys.readouterr().out)
    assert junk and all(r["day_rank"] > 1 and not r["in_capacity"] for r in junk)  # ranked in the whole day


def test_ingest_log_and_rejected_rows_are_queryable(trained, capsys):
    from lead_assets.cli import main

    home, _ = trained
    assert main(["--home", str(home.root), "query", "--format", "json",
                 "SELECT status, count(*) AS files FROM ingest_log GROUP BY status ORDER BY status"]) == 0
    statuses = {r["status"]: r["files"] for r in json.loads(capsys.readouterr().out)}
    assert statuses["accepted"] >= 46 and statuses["quarantined"] == 3
    assert main(["--home", str(home.root), "query", "--format", "json",
                 "SELECT rule, source_row FROM rejected_leads ORDER BY source_row"]) == 0
    assert {r["rule"] for r in json.loads(capsys.readouterr().out)} == {
        "unparseable_date", "not_binary", "duplicate_in_file", "date_before_start", "date_in_future",
        "not_a_number", "negative_count", "absurd_count", "wrong_field_count", "label_not_binary",
        "duplicate_of_earlier_file"}


def test_lead_insights_tables_plots_and_mlflow(trained):
    import mlflow

    home, instance = trained
    result = run_selection(instance, ["lead_insights"])
    summary = result.output_for_node("lead_insights")
    assert {"conversion_by_source", "conversion_by_city_tier", "conversion_by_bucket", "cumulative_gains"} <= set(
        summary["tables"])
    folder = home.warehouse / "lead_insights"
    assert (folder / "conversion_by_source.png").read_bytes().startswith(b"\x89PNG")
    by_tier = pd.read_csv((folder / "conversion_by_city_tier.csv").path)
    assert by_tier["leads"].sum() == 40 * 150  # every labelled lead, by tier
    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    runs = mlflow.search_runs(experiment_names=["lead_insights"])
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"


def _training(instance):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, raise_on_error=False,
                                  asset_selection=[AssetKey("lead_scoring_model"), AssetKey("champion_model")])


def _lead_scoring_runs(home):
    import mlflow

    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    return mlflow.search_runs(experiment_names=["lead_scoring"], order_by=["start_time DESC"])


def test_the_asset_pages_show_the_plots_and_the_backtests(trained):
    """People look at the asset page: the training plots, the backtest months and the gate are there."""
    import base64

    _, instance = trained
    event = instance.get_latest_materialization_event(AssetKey("lead_scoring_model"))
    metadata = event.asset_materialization.metadata
    plots = metadata["plots"].value
    images = [chunk.split(")")[0] for chunk in plots.split("data:image/png;base64,")[1:]]
    assert len(images) == 5 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    for title in ("roc", "calibration", "cumulative gains"):
        assert f"**{title}**" in plots
    assert "| month" in metadata["backtest_months"].value and "pooled over" in metadata["backtest_months"].value
    assert "auc" in metadata["gate"].value
    result = run_selection(instance, ["lead_insights"])
    insights = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"][0]
    shown = insights.event_specific_data.materialization.metadata["plots"].value
    assert shown.count("data:image/png;base64,") >= 3 and "**conversion by source**" in shown


def test_every_training_materialization_is_one_finished_mlflow_run(trained):
    home, instance = trained
    materializations = instance.fetch_materializations(AssetKey("lead_scoring_model"), limit=100).records
    runs = _lead_scoring_runs(home)
    assert len(runs) == len(materializations) >= 1
    assert set(runs["status"]) == {"FINISHED"}
    assert set(runs["tags.dagster_run_id"]) == {r.run_id for r in materializations}


def test_failed_training_ends_its_mlflow_run_failed(trained, monkeypatch):
    from lead_assets.core.model import training

    home, instance = trained

    def broken(features, config=None):
        raise RuntimeError("disk full while training")
    monkeypatch.setattr(training, "train_model", broken)
    before = len(_lead_scoring_runs(home))
    assert not _training(instance).success
    runs = _lead_scoring_runs(home)
    assert len(runs) == before + 1 and runs.iloc[0]["status"] == "FAILED"


def test_a_weak_model_is_not_promoted(trained, monkeypatch):
    from lead_assets.core.model import training
    from lead_assets.core.release import registry

    home, instance = trained
    registry_uri = home.mlflow_tracking_uri
    import mlflow

    mlflow.set_tracking_uri(registry_uri)
    champion = registry.champion_version("lead_scoring")
    original = training.train_model

    def on_shuffled_labels(features, config=None):
        labels = features["app_complete_flag"].sample(frac=1.0, random_state=0).to_numpy()
        return original(features.assign(app_complete_flag=labels), config)
    monkeypatch.setattr(training, "train_model", on_shuffled_labels)
    result = _training(instance)
    assert not result.success
    (evaluation,) = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert evaluation.check_name == "promotion_gate" and not evaluation.passed
    assert not any(e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key == AssetKey("champion_model")
                   for e in result.all_events)
    mlflow.set_tracking_uri(registry_uri)
    assert registry.champion_version("lead_scoring") == champion
    assert _lead_scoring_runs(home).iloc[0]["status"] == "FINISHED"  # the weak run itself completed


def test_drift_check_compares_each_day_with_its_models_holdout(trained):
    from lead_assets.defs.scoring.drift_checks import profile_path

    home, instance = trained
    result = run_selection(instance, ["scored_leads"], {"dagster/asset_partition_range_start": "2021-07-01",
                                                        "dagster/asset_partition_range_end": "2021-07-03"})
    drift = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
             and e.event_specific_data.check_name == "scored_leads_drift"]
    assert [d.partition for d in drift] == ["2021-07-01", "2021-07-02", "2021-07-03"]
    version = drift[0].metadata["model_version"].value
    assert profile_path(home, version).exists()
    comparison = drift[0].metadata["comparison"].value
    assert "score_psi" in comparison and "predicted_positive_ratio" in comparison
