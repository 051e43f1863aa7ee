"""Schedules and jobs that keep scores fresh: defined, targeted and stopped by default."""

from dagster import AssetKey, DefaultScheduleStatus

from lead_assets.definitions import defs
from lead_assets.defs.freshness import rescoring_request


def test_weekly_retraining_is_defined_and_stopped_by_default():
    schedule = defs.resolve_schedule_def("retrain_lead_scoring_model_schedule")
    assert schedule.cron_schedule == "0 3 * * 1" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def("retrain_lead_scoring_model")
    assert set(job.asset_layer.selected_asset_keys) == {AssetKey("lead_scoring_model"), AssetKey("champion_model")}


def test_rescoring_is_one_run_over_every_day_with_features():
    request = rescoring_request(["2021-07-01", "2021-07-02", "2021-09-30"], "7")
    assert request.tags["dagster/asset_partition_range_start"] == "2021-07-01"
    assert request.tags["dagster/asset_partition_range_end"] == "2021-09-30"
    assert request.run_key == "rescore-v7-2021-07-01-2021-09-30"
    assert rescoring_request([], "7").skip_message
    job = defs.resolve_job_def("rescore_leads")
    assert set(job.asset_layer.selected_asset_keys) == {AssetKey("scored_leads")}
