"""The data-quality checks inside Dagster: per-day evaluations, ranges, blocking, metadata.

Runs use the real assets and checks on landed factory files. Defects are injected by
monkeypatching the function an asset calls (ingest rejects bad rows, so a bad raw partition
cannot be made from a file); the checks themselves are never patched.
"""

from datetime import date

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    Definitions,
    asset,
    asset_check,
    materialize,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
import pytest

from lead_assets.core.inbox import ledger

from lead_assets.core.store import warehouse
from lead_assets.core.schema import CREATED_DATE, LEAD_ID, REFERRED, SOURCE_ROW
from lead_assets.defs.leads import cleaning as cleaning_defs
from lead_assets.defs.leads import features as features_defs
from lead_assets.defs.inbox import ingest as ingest_defs
from lead_assets.defs.inbox.raw_checks import raw_leads_quality
from lead_assets.defs.leads.cleaning_checks import cleaned_leads_quality
from lead_assets.defs.leads.features_checks import lead_features_schema
from lead_assets.defs.scoring.drift_checks import scored_leads_drift
from lead_assets.defs.scoring.scoring_checks import scored_leads_quality

all_checks = (raw_leads_quality, cleaned_leads_quality, lead_features_schema, scored_leads_quality, scored_leads_drift)
from lead_assets.defs.leads.cleaning_checks import cleaned_leads_quality
from lead_assets.defs.leads.features_checks import lead_features_schema
from lead_assets.defs.inbox.raw_checks import raw_leads_quality
from lead_assets.defs.scoring.scoring_checks import scored_leads_quality
from lead_assets.defs.leads.cleaning import cleaned_leads
from lead_assets.defs.leads.features import lead_features
from lead_assets.defs.inbox.ingest import PIPELINE, raw_leads
from lead_assets.defs.partitions import lead_days, one_run_per_range
from lead_assets.defs.resources import LeadHomeResource, WarehouseIOManager
from lead_assets_tests.factories import raw_leads as make_raw

pytestmark = pytest.mark.slow(seconds=40)  # started first by make test (conftest.py)

FIRST, TODAY = date(2021, 7, 1), date(2026, 11, 24)
ASSETS = [raw_leads, cleaned_leads, lead_features]
CHECKS = [raw_leads_quality, cleaned_leads_quality, lead_features_schema]
D5, D6, D7, D8 = "2021-07-05", "2021-07-06", "2021-07-07", "2021-07-08"


def resources():
    return {"lead_home": (home := LeadHomeResource()), "io_manager": WarehouseIOManager(lead_home=home)}


def range_tags(first, last):
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def land(home, frame, name="a.csv"):
    path = home.inbox / name
    frame.to_csv(path.path, index=False)
    return ledger.receive(home, path, FIRST, TODAY)


def run(instance, assets, first, last, **kwargs):
    return materialize(assets, resources=resources(), instance=instance, tags=range_tags(first, last),
                       raise_on_error=False, **kwargs)


def name_of(check) -> str:
    return next(iter(check.check_specs)).name


def evaluations(result, check) -> dict[str, AssetCheckEvaluation]:
    return {e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == name_of(check)}


def materialized(result) -> set[tuple[str, str]]:
    return {(e.asset_key.to_user_string(), e.partition) for e in result.get_asset_materialization_events()}


def partition_status(instance, check) -> dict[str, AssetCheckExecutionRecordStatus]:
    (spec,) = check.check_specs
    infos = instance.event_log_storage.get_asset_check_partition_info([spec.key])
    return {i.partition_key: i.latest_execution_status for i in infos}


def md(evaluation, key) -> str:
    return evaluation.metadata[key].value


def md_rows(evaluation, key) -> list[dict]:
    """A markdown table from metadata, back as dicts of stripped strings."""
    header, _, *lines = md(evaluation, key).splitlines()
    names = [c.strip() for c in header.strip("|").split("|")]
    return [dict(zip(names, (c.strip() for c in line.strip("|").split("|")))) for line in lines if line.startswith("|")]


# ---------------------------------------------------------------------------------------------
# Wiring


def test_every_asset_has_its_check_blocking_except_scored_and_nothing_is_eager():
    from lead_assets.definitions import build_definitions

    defs = build_definitions()
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    specs = {s.asset_key.to_user_string(): s for c in all_checks for s in c.check_specs}
    assert set(specs) == {"raw_leads", "cleaned_leads", "lead_features", "scored_leads"}
    assert {k: s.blocking for k, s in specs.items()} == {
        "raw_leads": True, "cleaned_leads": True, "lead_features": True, "scored_leads": False}
    assert all(s.partitions_def == lead_days for s in specs.values())
    assert {s.key for s in specs.values()} <= graph.asset_check_keys
    # The inbox sensor's runs select PIPELINE's assets: their checks come along.
    assert {s.key for s in specs.values()} <= set(PIPELINE.resolve_checks(graph))
    # The checks run with their assets' runs; none is automated on its own.
    assert all(s.automation_condition is None for s in specs.values())
    # Plain eager() would not wait for blocking checks: where eager is used, it must be gated.
    for key in graph.materializable_asset_keys:
        condition = graph.get(key).automation_condition
        if condition is not None and "eager" in labels(condition):
            assert "all_deps_blocking_checks_passed" in labels(condition), key


def labels(condition) -> set[str]:
    return {condition.get_label(), *(label for child in condition.children for label in labels(child))} - {None}


# ---------------------------------------------------------------------------------------------
# Partitions: the check looks at the days the run wrote, one evaluation per day


def test_a_range_run_gets_one_passing_evaluation_per_day(lead_home, instance):
    land(lead_home, pd.concat([make_raw(6, D5), make_raw(4, D7, seed=1)]))
    result = run(instance, ASSETS + CHECKS, D5, D8)
    assert result.success
    for check in CHECKS:
        per_day = evaluations(result, check)
        assert set(per_day) == {D5, D6, D7, D8}
        assert all(e.passed and e.target_materialization_data for e in per_day.values())
        assert {d: e.metadata["rows"].value for d, e in per_day.items()} == {D5: 6, D6: 0, D7: 4, D8: 0}
        assert md(per_day[D5], "run_partitions") == f"{D5}...{D8} (4 days)"
        assert partition_status(instance, check) == dict.fromkeys([D5, D6, D7, D8],
                                                                  AssetCheckExecutionRecordStatus.SUCCEEDED)
    cleaned = evaluations(result, cleaned_leads_quality)[D7]
    assert (cleaned.metadata["raw_rows"].value, cleaned.metadata["cleaned_rows"].value) == (4, 4)


def test_a_sensor_shaped_run_of_the_code_location_runs_the_checks(lead_home, instance):
    """What the inbox sensor launches: PIPELINE's assets, range tags even for one day."""
    from lead_assets.definitions import build_definitions

    land(lead_home, make_raw(5, D6))
    job = build_definitions().resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey(k) for k in ("raw_leads", "cleaned_leads", "lead_features")})
    result = job.execute_in_process(instance=instance, tags=range_tags(D6, D6))
    assert result.success
    checked = {(e.check_name, e.partition, e.passed) for e in result.get_asset_check_evaluations()}
    assert checked == {(name_of(c), D6, True) for c in CHECKS}


def test_assetcheckresult_would_leave_a_range_planned_forever(lead_home, instance):
    """Why the checks emit their own evaluations: a partitioned check returning AssetCheckResult
    in a range run records one result without a partition, and the days stay PLANNED."""

    @asset(name="toy", partitions_def=lead_days, backfill_policy=one_run_per_range)
    def toy(context) -> pd.DataFrame:
        return pd.DataFrame({CREATED_DATE: pd.to_datetime(list(context.partition_keys))})

    @asset_check(asset=toy, partitions_def=lead_days, blocking=True)
    def toy_check(toy: pd.DataFrame) -> AssetCheckResult:
        return AssetCheckResult(passed=True)

    result = run(instance, [toy, toy_check], D5, D6)
    assert [e.partition for e in result.get_asset_check_evaluations()] == [None]
    infos = instance.event_log_storage.get_asset_check_partition_info([AssetCheckKey(AssetKey("toy"), "toy_check")])
    assert {i.partition_key: i.latest_execution_status for i in infos if i.partition_key} == {
        D5: AssetCheckExecutionRecordStatus.PLANNED, D6: AssetCheckExecutionRecordStatus.PLANNED}


# ---------------------------------------------------------------------------------------------
# Blocking


def test_a_failed_raw_day_stops_cleaning_and_features_in_the_same_run(lead_home, instance, monkeypatch):
    land(lead_home, pd.concat([make_raw(6, D5), make_raw(4, D6, seed=1)]))
    real, bad = ingest_defs.parse_lead_chunks, {}

    def parse_with_a_bad_row(*args, **kwargs):
        for part in real(*args, **kwargs):  # the parse comes a chunk at a time (issue #20)
            accepted = part.accepted
            rows = accepted.index[accepted[CREATED_DATE].dt.strftime("%Y-%m-%d") == D6]
            if len(rows) > 1 and not bad:
                accepted.loc[rows[1], REFERRED] = 7.0
                bad.update({LEAD_ID: accepted.loc[rows[1], LEAD_ID], SOURCE_ROW: int(accepted.loc[rows[1], SOURCE_ROW])})
            yield part

    monkeypatch.setattr(ingest_defs, "parse_lead_chunks", parse_with_a_bad_row)
    result = run(instance, ASSETS + CHECKS, D5, D6)

    assert not result.success
    assert materialized(result) == {("raw_leads", D5), ("raw_leads", D6)}
    assert warehouse.existing_partitions(lead_home.warehouse, "cleaned_leads") == []
    assert warehouse.existing_partitions(lead_home.warehouse, "lead_features") == []
    per_day = evaluations(result, raw_leads_quality)
    assert per_day[D5].passed and not per_day[D6].passed
    failed = per_day[D6]
    assert failed.severity == AssetCheckSeverity.ERROR and failed.blocking
    assert "referred_lead_is_0_or_1 (1 rows)" in failed.description
    assert md(failed, "failed_expectations") == "referred_lead_is_0_or_1"
    assert failed.metadata["expectations_failed"].value == 1
    assert failed.metadata["unexpected_rows"].value == 1 and failed.metadata["rows"].value == 4
    assert "expect_column_values_to_be_in_set" in md(failed, "failures")
    (offending,) = md_rows(failed, "offending_rows")
    assert offending == {"rule": "referred_lead_is_0_or_1", "day": D6, LEAD_ID: bad[LEAD_ID],
                         SOURCE_ROW: str(bad[SOURCE_ROW]), REFERRED: "7"}
    assert "referred_lead_is_0_or_1" in md(failed, "expectations")
    assert partition_status(instance, raw_leads_quality) == {
        D5: AssetCheckExecutionRecordStatus.SUCCEEDED, D6: AssetCheckExecutionRecordStatus.FAILED}
    assert not evaluations(result, cleaned_leads_quality)


def test_a_lost_cleaned_row_stops_features(lead_home, instance, monkeypatch):
    land(lead_home, make_raw(5, D5))
    real = cleaning_defs.clean_leads
    monkeypatch.setattr(cleaning_defs, "clean_leads", lambda raw: real(raw).iloc[1:])
    result = run(instance, ASSETS + CHECKS, D5, D5)

    assert not result.success
    assert materialized(result) == {("raw_leads", D5), ("cleaned_leads", D5)}
    (failed,) = evaluations(result, cleaned_leads_quality).values()
    assert not failed.passed and md(failed, "failed_expectations") == "rows_reconcile_with_raw_leads"
    assert (failed.metadata["raw_rows"].value, failed.metadata["cleaned_rows"].value) == (5, 4)
    assert md_rows(failed, "offending_rows") == [
        {"rule": "rows_reconcile_with_raw_leads", "day": D5, "cleaned_rows": "4", "raw_rows": "5"}]


def _scored_stub(mutate=lambda frame: frame):
    """scored_leads stand-in (the real one needs a champion model): a hand-made scored frame."""

    @asset(name="scored_leads", partitions_def=lead_days, backfill_policy=one_run_per_range)
    def scored(lead_features: pd.DataFrame) -> pd.DataFrame:
        probability = np.linspace(0.1, 0.9, len(lead_features))
        frame = pd.DataFrame({
            LEAD_ID: lead_features[LEAD_ID], CREATED_DATE: lead_features[CREATED_DATE],
            "probability": probability, "score": np.round(probability * 100, 1),
            "bucket": np.select([probability >= 0.8, probability >= 0.6, probability >= 0.3],
                                ["hot", "warm", "cold"], "junk"),
            "reasons": "referred_lead+", "model_version": "3",
        })
        return mutate(frame)

    return scored


def test_a_schema_drift_in_features_stops_scoring(lead_home, instance, monkeypatch):
    land(lead_home, make_raw(4, D5))
    real = features_defs.build_features
    monkeypatch.setattr(features_defs, "build_features", lambda cleaned: real(cleaned).assign(city_tier=1))
    result = run(instance, ASSETS + CHECKS + [_scored_stub(), scored_leads_quality], D5, D5)

    assert not result.success
    assert ("lead_features", D5) in materialized(result) and ("scored_leads", D5) not in materialized(result)
    (failed,) = evaluations(result, lead_features_schema).values()
    assert md(failed, "failed_expectations") == "feature_dtypes"
    assert "city_tier: int64 (expected float64)" in md(failed, "failures")
    assert not evaluations(result, scored_leads_quality)


def test_the_scored_check_warns_and_blocks_nothing(lead_home, instance):
    land(lead_home, pd.concat([make_raw(4, D5), make_raw(4, D6, seed=1)]))

    def corrupt(frame):
        frame.loc[frame.index[-1], "score"] = 120.0
        frame.loc[frame.index[-2], "bucket"] = "lukewarm"
        return frame

    result = run(instance, ASSETS + CHECKS + [_scored_stub(corrupt), scored_leads_quality], D5, D6)
    assert result.success
    assert {("scored_leads", D5), ("scored_leads", D6)} <= materialized(result)
    per_day = evaluations(result, scored_leads_quality)
    assert per_day[D5].passed and not per_day[D6].passed
    failed = per_day[D6]
    assert failed.severity == AssetCheckSeverity.WARN and not failed.blocking
    assert md(failed, "failed_expectations") == "score_in_0_100, bucket_known"
    offending = {r["rule"]: r for r in md_rows(failed, "offending_rows")}
    assert offending["score_in_0_100"]["score"] == "120" and offending["bucket_known"]["bucket"] == "lukewarm"

    good = run(instance, ASSETS + CHECKS + [_scored_stub(), scored_leads_quality], D6, D6)
    assert evaluations(good, scored_leads_quality)[D6].passed
    assert partition_status(instance, scored_leads_quality)[D6] == AssetCheckExecutionRecordStatus.SUCCEEDED
