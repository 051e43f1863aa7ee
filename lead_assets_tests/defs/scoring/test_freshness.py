"""Schedules and jobs that keep scores fresh: defined, targeted and stopped by default."""

import pytest
from dagster import AssetKey, DefaultScheduleStatus

from lead_assets.definitions import defs
from lead_assets.defs.scoring.freshness import rescoring_request


def test_weekly_retraining_is_defined_and_stopped_by_default():
    schedule = defs.resolve_schedule_def("retrain_lead_scoring_model_schedule")
    assert schedule.cron_schedule == "0 3 * * 1" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def("retrain_lead_scoring_model")
    assert set(job.asset_layer.selected_asset_keys) == {AssetKey("lead_scoring_model"), AssetKey("champion_model")}


def test_rescoring_is_one_run_over_every_day_with_features():
    request = rescoring_request(["2021-07-01", "2021-07-02", "2021-09-30"], "7", change=4)
    assert request.tags["dagster/asset_partition_range_start"] == "2021-07-01"
    assert request.tags["dagster/asset_partition_range_end"] == "2021-09-30"
    assert request.run_key == "rescore-4-v7-2021-07-01-2021-09-30"
    assert rescoring_request([], "7", change=1).skip_message
    job = defs.resolve_job_def("rescore_leads")
    assert set(job.asset_layer.selected_asset_keys) == {AssetKey("scored_leads"), AssetKey("crm_export")}


@pytest.mark.parametrize("passed", [True, False])
def test_a_passed_gate_promotes_without_another_click(passed):
    """A lead_scoring_model materialized alone (UI, CLI) brings champion_model when its gate
    passed, and never when it failed; the sensor that evaluates this runs by default."""
    from dagster import (
        AssetCheckEvaluation,
        AssetMaterialization,
        DefaultSensorStatus,
        evaluate_automation_conditions,
        instance_for_test,
    )

    model, champion = AssetKey("lead_scoring_model"), AssetKey("champion_model")
    assert defs.resolve_sensor_def("champion_promotion").default_status == DefaultSensorStatus.RUNNING
    with instance_for_test() as instance:
        for key in (model, champion):
            instance.report_runless_asset_event(AssetMaterialization(key))
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.get_num_requested(champion) == 0
        instance.report_runless_asset_event(AssetMaterialization(model))
        instance.report_runless_asset_event(AssetCheckEvaluation(
            asset_key=model, check_name="promotion_gate", passed=passed))
        after = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert after.get_num_requested(champion) == (1 if passed else 0)
