"""The end-to-end demo: synthetic history and new leads, landed, trained and scored through Dagster.

Runs go to the persistent Dagster instance under the data home, so ``make dev`` shows them
afterwards. Each stage is one Dagster run: a day range is a single run (single-run backfill
policy), the same shape the inbox sensor and CLI backfills use.
"""

import os
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone

from lead_assets.core.store.home import LeadHome, is_local
from lead_assets.views import print_frame, run_query

MARKER = "# Written by lead-assets for local use"
BASE_YAML = MARKER + """: sqlite storage under this folder.
telemetry:
  enabled: false
# An inbox drop is scored sooner (BENCHMARKS.md, "File drop to scored"): queued runs are launched
# within a second (Dagster's default looks every 5 s), each in a child forked from a process that
# already imported the code location, Great Expectations, MLflow and CatBoost (lead_assets.launcher).
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
run_launcher:
  module: lead_assets.launcher
  class: PrewarmedRunLauncher
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    # One slot per pool. raw_leads (pool lead_ingest) reads every landed file for its days,
    # then writes them; scored_leads (pool lead_scoring) reads a day's features, then writes
    # its scores: one at a time each, so two runs can never leave a day older than its inputs.
    default_limit: 1
"""
# A run whose worker dies (the OOM killer, kill -9) would otherwise stay STARTED for ever,
# holding its pool slot: every later inbox run would wait behind it.
SECTIONS = {
    "run_monitoring": """\
# Every 10 s the daemon asks the launcher whether each started run's worker is alive
# (PrewarmedRunLauncher.check_run_worker_health); a run whose worker is gone is failed, and
# 5 s after a run ends the pool slots it still holds are freed.
run_monitoring:
  enabled: true
  poll_interval_seconds: 10
  free_slots_after_run_end_seconds: 5
""",
    "run_retries": """\
# A run that failed because its worker died (or was interrupted when `make dev` stopped) is
# re-run once, from the step that did not finish; a run whose asset raised is not retried.
run_retries:
  enabled: true
  max_retries: 1
  retry_on_asset_or_op_failure: false
""",
}
INSTANCE_YAML = BASE_YAML + "".join(SECTIONS.values())


def ensure_dagster_home(home: LeadHome, say: Callable[[str], None] | None = None) -> str:
    """Use $DAGSTER_HOME if set; otherwise a folder under the data home, with telemetry off.

    A dagster.yaml that exists is kept; one written by an older lead-assets gets the sections it
    lacks (``SECTIONS``) appended, and any other is only checked: ``say`` is told what to add.
    """
    dagster_home = os.environ.get("DAGSTER_HOME") or str(home.dagster_home)
    os.makedirs(dagster_home, exist_ok=True)
    config = os.path.join(dagster_home, "dagster.yaml")
    if not os.path.exists(config):
        with open(config, "w") as handle:
            handle.write(INSTANCE_YAML)
    else:
        for note in update_instance_yaml(config):
            (say or print)(note)
    os.environ["DAGSTER_HOME"] = dagster_home
    return dagster_home


def update_instance_yaml(config: str) -> list[str]:
    """Bring an existing dagster.yaml up to ``SECTIONS``: append what lead-assets' own file lacks,
    and say what any other file lacks (a user's own settings are never rewritten)."""
    import yaml

    with open(config) as handle:
        text = handle.read()
    try:
        current = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        return [f"{config} is not valid YAML, Dagster will refuse it: {str(error).splitlines()[0]}"]
    if not isinstance(current, dict):
        return [f"{config} is not a mapping of settings; Dagster will refuse it"]
    missing = [key for key in SECTIONS if key not in current]
    notes = []
    if missing and text.startswith(MARKER):
        added = "".join(SECTIONS[key] for key in missing)
        with open(config, "a") as handle:
            handle.write(("" if text.endswith("\n") else "\n") + f"# Added by a newer lead-assets init:\n{added}")
        notes.append(f"{config}: added {' and '.join(missing)} (a run whose worker dies is failed, "
                     "its pool slot freed, and it is retried once)")
    elif missing:
        notes.append(f"{config} has no {' or '.join(missing)}: a run whose worker dies (the OOM killer, "
                     "kill -9) stays STARTED and keeps its pool slot. Add:\n"
                     + "".join(SECTIONS[key] for key in missing))
    monitoring, retries = (current.get(key) if isinstance(current.get(key), dict) else {}
                           for key in ("run_monitoring", "run_retries"))
    if "run_monitoring" in current and not (monitoring.get("enabled") and monitoring.get(
            "free_slots_after_run_end_seconds")):
        notes.append(f"{config}: run_monitoring needs enabled: true and free_slots_after_run_end_seconds "
                     "(e.g. 5), or a run whose worker dies keeps its pool slot")
    if "run_retries" in current and not (retries.get("enabled") and retries.get("max_retries", 0) > 0):
        notes.append(f"{config}: run_retries is off, so a run whose worker died is not re-run "
                     "(enabled: true, max_retries: 1)")
    return notes


def range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def materialize_selection(keys: Sequence[str], first: str | None = None, last: str | None = None, *,
                          instance=None, definitions=None, log_level: str = "WARNING"):
    """One in-process run of the selected assets (over a day range when given) with their checks."""
    from dagster import AssetKey, DagsterInstance

    from lead_assets.definitions import defs as default_defs
    from lead_assets.launcher import worker_tags

    definitions = definitions or default_defs
    job = definitions.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance or DagsterInstance.get(),
        asset_selection=[AssetKey(k) for k in keys],
        tags={**(range_tags(first, last) if first else {}), **worker_tags(os.getpid())},  # run monitoring's pid
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_failure]
        raise RuntimeError(f"run {result.run_id} for {', '.join(keys)} failed: " + " | ".join(failures[:3]))
    return result


def run(history_days: int, new_days: int, leads_per_day: int, seed: int, step: Callable[[str], None]) -> int:
    from lead_assets.core.inbox import ledger
    from lead_assets.core.leads.synth import generate_leads, write_daily_files

    home = LeadHome.resolve().ensure()
    ensure_dagster_home(home, step)
    today = datetime.now(timezone.utc).date()
    first_new = today - timedelta(days=new_days - 1)
    first_history = first_new - timedelta(days=history_days)
    first_day = date.fromisoformat(os.environ.get("LEAD_ASSETS_START_DATE", "2021-07-01"))
    if first_history < first_day:
        raise ValueError(f"history would start {first_history}, before the first partition day {first_day}")

    step(f"data home {home.root}; Dagster instance {os.environ['DAGSTER_HOME']}")
    step(f"generating {history_days} days of labelled history from {first_history} "
         f"and {new_days} days of new (unlabelled) leads, {leads_per_day} leads/day")
    history = generate_leads(first_history, history_days, leads_per_day, seed=seed, labelled=True)
    fresh = generate_leads(first_new, new_days, leads_per_day, seed=seed + 1, labelled=False)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    fresh = fresh[fresh["created_date"] <= now]  # today's leads so far: none from the future
    if not is_local(home.inbox):
        raise ValueError(f"the demo writes its files to a local inbox; {home.inbox} is not local")
    write_daily_files(history, home.inbox.path, prefix="history")
    write_daily_files(fresh, home.inbox.path, prefix="new")

    step("landing inbox files (what the inbox sensor does on every tick)")
    candidates, _ = ledger.list_candidates(home.inbox)
    fates: dict[str, int] = {}
    for candidate in candidates:
        entry = ledger.receive(home, candidate.path, first_day, today)
        if entry is not None:
            fates[entry.status] = fates.get(entry.status, 0) + 1
    step("  " + ", ".join(f"{n} {status}" for status, n in sorted(fates.items())))

    first, last = first_history.isoformat(), today.isoformat()
    step(f"run 1/4: raw_leads -> cleaned_leads -> lead_features for {first}..{last} (one run)")
    materialize_selection(["raw_leads", "cleaned_leads", "lead_features"], first, last)
    step("run 2/4: lead_scoring_model -> promotion_gate -> champion_model")
    training = materialize_selection(["lead_scoring_model", "champion_model"])
    step(f"run 3/4: scored_leads -> crm_export for {first}..{last} (one run)")
    materialize_selection(["scored_leads", "crm_export"], first, last)
    step("run 4/4: lead_insights (conversion by source, medium, platform, city tier, bucket; gains)")
    materialize_selection(["lead_insights"])

    info = training.output_for_node("lead_scoring_model")
    gate = [e for e in training.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    passed = gate[0].event_specific_data.passed if gate else None
    print()
    print("== model")
    metrics = info["metrics"]
    print(f"version {info['version']}  gate {'passed' if passed else 'FAILED'}  "
          + "  ".join(f"{k} {metrics[k]:.3f}" for k in ("auc", "precision", "recall", "threshold") if k in metrics))
    print("\n== leads per bucket (new days)")
    print_frame(run_query(home, (
        "SELECT CAST(created_date AS DATE) AS day, bucket, count(*) AS leads FROM scored_leads "
        f"WHERE CAST(created_date AS DATE) >= DATE '{first_new}' GROUP BY ALL ORDER BY day, bucket")), "table")
    print("\n== leads per partition (all days)")
    print_frame(run_query(home, (
        "SELECT min(CAST(created_date AS DATE)) AS first_day, max(CAST(created_date AS DATE)) AS last_day, "
        "count(DISTINCT CAST(created_date AS DATE)) AS partitions, count(*) AS leads, "
        "round(avg(app_complete_flag), 3) AS positive_rate FROM lead_features")), "table")
    latest = run_query(home, "SELECT CAST(max(CAST(created_date AS DATE)) AS VARCHAR) AS d FROM scored_leads")["d"][0]
    print(f"\n== today's top leads ({latest}): lead-assets leads --date {latest} --top 10")
    print_frame(run_query(home, (
        "SELECT lead_id, score, bucket, reasons FROM scored_leads "
        f"WHERE CAST(created_date AS DATE) = DATE '{latest}' ORDER BY probability DESC LIMIT 10")), "table")
    print(f"""
Warehouse:   {home.warehouse}   (lead-assets query "SELECT * FROM scored_leads LIMIT 5")
MLflow:      {home.mlflow_tracking_uri}
             mlflow ui --backend-store-uri {home.mlflow_tracking_uri} --host 127.0.0.1 --port 5000
Insights:    {home.warehouse / "lead_insights"}  (PNG plots and CSV tables; also in MLflow)
CRM export:  {home.root / "outbox"}  (a CSV per day) and the lead_scores table in {home.root / "crm" / "lead_scores.db"}
Dagster UI:  make dev   -> http://127.0.0.1:3000  (drop CSVs into {home.inbox} to score them)""")
    return 0
