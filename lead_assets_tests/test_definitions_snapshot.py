"""The code location's public contract, checked in as a snapshot so a change shows up in review.

Every asset's key, group, partitions and backfill policy, every check's blocking flag and
partitions, every job's selection, every sensor's and schedule's default status and target,
the resource keys and the executor. After an intended change, refresh the snapshot with
``.venv/bin/python -m pytest lead_assets_tests/test_definitions_snapshot.py --snapshot-update``
and commit ``__snapshots__/test_definitions_snapshot.ambr`` with the change.
"""

import json
import os
import subprocess
import sys

from dagster import Definitions

IMPLICIT_JOB = "__ASSET_JOB"


def public_contract(defs: Definitions) -> dict:
    graph = defs.resolve_asset_graph()

    def partitions(node) -> str | None:
        return str(node.partitions_def) if node.partitions_def is not None else None

    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": partitions(node),
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
        }
    checks = {}
    for key in sorted(graph.asset_check_keys, key=str):
        node = graph.get(key)
        checks[f"{key.asset_key.to_user_string()}:{key.name}"] = {
            "blocking": node.blocking, "partitions": partitions(node)}
    jobs = {}
    for job in defs.resolve_all_job_defs():
        if job.name == IMPLICIT_JOB:
            continue
        jobs[job.name] = {
            "selection": sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys),
            "partitions": str(job.partitions_def) if job.partitions_def else None,
            "tags": dict(sorted(job.tags.items())),
        }
    sensors = {
        sensor.name: {
            "default_status": sensor.default_status.value,
            "jobs": sorted(target.job_name for target in sensor.targets),
            "assets": sorted(k.to_user_string() for k in sensor.asset_selection.resolve(graph))
            if sensor.asset_selection is not None else None,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
        }
        for sensor in sorted(defs.sensors or [], key=lambda s: s.name)
    }
    schedules = {
        schedule.name: {
            "default_status": schedule.default_status.value,
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "job": schedule.job_name,
        }
        for schedule in sorted(defs.schedules or [], key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "checks": checks,
        "jobs": dict(sorted(jobs.items())),
        "sensors": sensors,
        "schedules": schedules,
        "resources": sorted(defs.resources or {}),
        "executor": defs.resolve_implicit_global_asset_job_def().executor_def.name,
    }


def _loaded_contract() -> dict:
    """Loaded in a fresh process, without LEAD_ASSETS_START_DATE, as a code server would."""
    env = {k: v for k, v in os.environ.items() if k != "LEAD_ASSETS_START_DATE"}
    code = ("import json; from lead_assets.definitions import defs; "
            "from lead_assets_tests.test_definitions_snapshot import public_contract; "
            "print(json.dumps(public_contract(defs)))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_public_contract_matches_the_snapshot(snapshot):
    assert _loaded_contract() == snapshot


def test_a_changed_contract_changes_the_snapshot():
    """The snapshot sees a moved group and a check that stops blocking."""
    from lead_assets.definitions import defs

    before = public_contract(defs)
    regrouped = defs.map_resolved_asset_specs(func=lambda spec: spec.replace_attributes(group_name="elsewhere"),
                                              selection="raw_leads")
    after = public_contract(regrouped)
    assert after["assets"]["raw_leads"]["group"] == "elsewhere" != before["assets"]["raw_leads"]["group"]
    assert {k: v for k, v in after["assets"].items() if k != "raw_leads"} == {
        k: v for k, v in before["assets"].items() if k != "raw_leads"}
