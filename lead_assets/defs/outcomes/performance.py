"""What happened, per model version: realised performance of the scores sales were served, a
warning when a version misses its targets, and a retrain when outcomes say it is time."""

import json
from collections.abc import Callable

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    sensor,
)

from lead_assets.core.store import warehouse
from lead_assets.core.model.judging import DEFAULT_TARGETS
from lead_assets.core.store.home import PROFILES
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID
from lead_assets.defs.scoring import freshness
from lead_assets.defs.policy import OutcomePolicy
from lead_assets.defs.resources import LeadHomeResource, ModelRegistry
from lead_assets.defs import ticks

PERFORMANCE = "model_performance"
CALIBRATION = "champion_calibration"  # refreshed in the same run (defs.outcomes.calibration)
REFRESHED = (AssetKey(PERFORMANCE), AssetKey(CALIBRATION))

DEPENDS_ON = (AssetKey("scored_leads"), AssetKey("lead_features"))


def _profiles(root) -> dict[str, dict]:
    """What training recorded of each version: the last lead day it was trained on, the ledger position."""
    folder = root / PROFILES
    if not folder.exists():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in folder.iterdir() if p.name.endswith(".json")}


def _outcomes_since(history: pd.DataFrame, profiles: dict[str, dict], versions) -> dict[str, int]:
    """Outcome events that landed after each version was trained (ledger sequence numbers)."""
    from lead_assets.core.leads.labels import new_outcomes_since

    out = {}
    for version in versions:
        trained = profiles.get(version, {}).get("ledger_seq")
        out[version] = new_outcomes_since(history, trained) if trained is not None else 0
    return out


@asset(
    deps=list(DEPENDS_ON),
    group_name="scoring",
    kinds={"pandas", "parquet"},
    description="Per model version and week of lead creation: leads scored, leads with a known outcome, AUC, "
                "precision and recall of 'not junk' at the cut-off served, precision in the top 10%, calibration "
                "by score decile; judged on the scores each version served, on leads after its training data.",
)
def model_performance(context: AssetExecutionContext, lead_home: LeadHomeResource,
                      outcome_policy: OutcomePolicy) -> pd.DataFrame:
    from lead_assets.core.leads import labels
    from lead_assets.core.outcomes import realised
    from lead_assets.core.scoring import shown
    from lead_assets.core.model.plots import markdown_images, realised_png, served_calibration_png

    home = lead_home.resolve()
    scores = shown.read(home.warehouse)
    known = warehouse.read_columns(home.warehouse, "lead_features", [LEAD_ID, CREATED_DATE, LABEL])
    known[LABEL] = labels.matured_labels(known, outcome_policy.label_maturity_days, lead_home.today())
    profiles = _profiles(home.warehouse)
    table = realised.realised(scores, known, {v: p.get("trained_until") for v, p in profiles.items()})
    history = warehouse.read_columns(home.warehouse, "outcome_history", list(labels.NEW_OUTCOME_COLUMNS))
    since = _outcomes_since(history, profiles, table["model_version"].unique())
    pooled = table["week"] == realised.ALL_WEEKS
    table["outcomes_since_training"] = table["model_version"].map(since).where(pooled)
    weekly = table[~pooled]
    plots = {}
    if len(weekly):
        plots["realised_precision_recall.png"] = realised_png(weekly, DEFAULT_TARGETS)
    for _, row in table[pooled].tail(1).iterrows():
        deciles = json.loads(row["calibration"])
        if deciles:
            plots["calibration_as_served.png"] = served_calibration_png(deciles, row["model_version"])
    rounded = table.drop(columns=["calibration"]).round(3)
    context.add_output_metadata({
        "versions": int(table["model_version"].nunique()),
        "leads_with_outcome": int(table.loc[pooled, "leads_with_outcome"].sum()),
        "label_maturity_days": str(outcome_policy.label_maturity_days),
        "performance": MetadataValue.md(rounded.to_markdown(index=False) if len(rounded) else "no served leads yet"),
        "plots": MetadataValue.md(markdown_images(plots) if plots else "no labelled served leads yet"),
    })
    return table


@asset_check(asset=model_performance, blocking=False, description=(
    "Warns when a model version's realised precision or recall of 'not junk' is below target "
    f"({DEFAULT_TARGETS['precision']}/{DEFAULT_TARGETS['recall']}) on at least the policy's minimum of "
    "labelled leads."))
def realised_performance_meets_targets(model_performance: pd.DataFrame,
                                       outcome_policy: OutcomePolicy) -> AssetCheckResult:
    from lead_assets.core.outcomes.realised import ALL_WEEKS, below_targets

    minimum = outcome_policy.performance_min_labelled
    pooled = model_performance[model_performance["week"] == ALL_WEEKS]
    low = below_targets(model_performance, DEFAULT_TARGETS, minimum)
    judged = pooled[pooled["leads_with_outcome"] >= minimum]
    columns = ["model_version", "leads_scored", "leads_with_outcome", "auc", "precision", "recall",
               "precision_top_10pct", "calibration_error"]
    return AssetCheckResult(
        passed=low.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "min_labelled_leads": minimum,
            "targets": MetadataValue.json({k: DEFAULT_TARGETS[k] for k in ("precision", "recall")}),
            "versions_judged": len(judged),
            "versions_below_target": MetadataValue.json(low["model_version"].tolist()),
            "realised": MetadataValue.md(pooled[columns].round(3).to_markdown(index=False) if len(pooled)
                                         else "no version has served labelled leads yet"),
        },
    )


def _latest_update(instance) -> int:
    """The event-log position of the newest materialization of any day of the deps (0: none)."""
    newest = 0
    for key in DEPENDS_ON:
        records = instance.fetch_materializations(key, limit=1, ascending=False).records
        if records:
            newest = max(newest, records[0].storage_id)
    return newest


ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def _active_runs(instance, sensor_name: str, limit: int = 1) -> int:
    """Runs a sensor asked for that are still queued or running (at most ``limit`` counted)."""
    return len(instance.get_run_records(RunsFilter(statuses=ACTIVE, tags={"dagster/sensor_name": sensor_name}),
                                        limit=limit))


def _refreshing(instance) -> bool:
    """A model_performance run this sensor asked for is still queued or running."""
    return bool(_active_runs(instance, "performance_refresh"))


@sensor(
    asset_selection=AssetSelection.assets(*REFRESHED),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=ticks.every(30),
    description="Refreshes model_performance and the champion's calibration after labels or scores change (at "
                "most every 30 s, one run at a time; a change made while it runs is picked up by the next one).",
)
def performance_refresh(context: SensorEvaluationContext):
    """The cursor is the event-log position of the newest dependency update a run was asked for:
    a later update, whenever it lands, asks for another run once the current one has finished."""
    newest = _latest_update(context.instance)
    asked = int(context.cursor or 0)
    if newest <= asked:
        return SkipReason("no new labels or scores since the last refresh")
    if _refreshing(context.instance):
        return SkipReason("a model_performance run is still in progress; looking again next tick")
    context.update_cursor(str(newest))
    return RunRequest(run_key=f"performance-{newest}", asset_selection=list(REFRESHED))


def retrain_reasons(table: pd.DataFrame, champion: str, policy: OutcomePolicy) -> list[str]:
    """Why the champion should be retrained now, from its pooled realised row (empty: it should not)."""
    from lead_assets.core.outcomes.realised import ALL_WEEKS, below_targets

    row = table[(table["model_version"].astype(str) == champion) & (table["week"] == ALL_WEEKS)]
    if row.empty:
        return []
    reasons = []
    if policy.retrain_on_underperformance and not below_targets(
            row, DEFAULT_TARGETS, policy.performance_min_labelled).empty:
        reasons.append("below_target")
    arrived = row["outcomes_since_training"].iloc[0]
    if policy.retrain_min_new_outcomes and pd.notna(arrived) and arrived >= policy.retrain_min_new_outcomes:
        reasons.append("new_outcomes")
    return reasons


def latest_attempt(profiles: dict[str, dict]) -> tuple[str, int] | None:
    """The newest training (promoted or refused): its version and the ledger position it saw."""
    seen = [(int(p.get("ledger_seq") or 0), int(v) if str(v).isdigit() else 0, str(v)) for v, p in profiles.items()]
    if not seen:
        return None
    seq, _, version = max(seen)
    return version, seq


def retrain_decision(champion: str | None, table: pd.DataFrame | None, history: Callable[[], pd.DataFrame],
                     profiles: dict[str, dict], policy: OutcomePolicy) -> tuple[str | None, str]:
    """The one rule for training without a click: ``(run_key, why)``; no run_key means wait, and why.

    No champion: train once ``first_training_min_labelled`` outcomes are in force and a backtest
    month exists to judge the model on (``core.model.backtest.fold_months``). A champion: retrain
    when its realised precision or recall is below target or enough outcomes arrived since it was
    trained (:func:`retrain_reasons`). Either way, a newer training than the champion (one the gate
    refused) is tried again only once ``retrain_min_new_outcomes`` outcomes have arrived since it:
    the run key names the attempt it follows, so each retry is asked for once. ``history`` loads
    ``outcome_history`` only when the decision needs it (never for a champion that is the latest).
    """
    from lead_assets.core.model.backtest import fold_months
    from lead_assets.core.model.recipe import TrainConfig
    from lead_assets.core.leads.labels import labelled_in_force, labelled_per_month, new_outcomes_since

    attempt = latest_attempt(profiles)
    refused = attempt if attempt and attempt[0] != str(champion) else None
    events = history() if refused or champion is None else None
    since = new_outcomes_since(events, refused[1]) if refused else 0
    after = f"; {since} new outcomes since refused version {refused[0]}" if refused else ""
    if refused and (not policy.retrain_min_new_outcomes or since < policy.retrain_min_new_outcomes):
        return None, (f"version {refused[0]} was refused by the gate; {since} new outcomes since it, "
                      f"trying again at {policy.retrain_min_new_outcomes or 'never (retrain_min_new_outcomes 0)'}")
    if champion is None:
        labelled = labelled_in_force(events)
        if not policy.first_training_min_labelled:
            return None, "no champion yet, and first_training_min_labelled is 0: train from the UI or CLI"
        if labelled < policy.first_training_min_labelled:
            return None, (f"no champion yet: {labelled} labelled leads, the first training starts at "
                          f"{policy.first_training_min_labelled}")
        per_month, fold_leads = labelled_per_month(events), TrainConfig().min_backtest_leads
        if not fold_months(per_month, fold_leads):  # the training would fail: nothing to judge it on
            return None, (f"no champion yet: {labelled} labelled leads, but no labelled month after the first "
                          f"with {fold_leads} leads to judge a model on (labelled per month: "
                          f"{', '.join(f'{m} {n}' for m, n in per_month.items())})")
        return "first-training" + (f"-after-v{refused[0]}" if refused else ""), (
            f"first model: {labelled} labelled leads" + after)
    if table is None:
        return None, "model_performance has not been materialized yet"
    reasons = retrain_reasons(table, champion, policy)
    if not reasons:
        return None, f"champion version {champion} meets its targets and few outcomes arrived since training"
    key = f"retrain-v{champion}-" + (f"after-v{refused[0]}-" if refused else "") + "+".join(reasons)
    return key, f"champion version {champion}: {', '.join(reasons)}" + after


@sensor(
    job_name=freshness.retrain_job.name,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=ticks.every(60),
    description="Trains without a click (through the promotion gate): a first model once enough outcomes are in "
                "force; a retrain when the champion's realised precision or recall falls below target or enough "
                "outcomes arrived since it was trained; a refused training again after enough new outcomes.",
)
def retrain_on_outcomes(context: SensorEvaluationContext, lead_home: LeadHomeResource,
                        model_registry: ModelRegistry, outcome_policy: OutcomePolicy):
    from lead_assets.core.leads import labels

    busy = _active_runs(context.instance, "inbox_sensor", limit=100)
    if busy:  # a training started now would see half of what is landing
        return SkipReason(f"{busy} inbox run(s) queued or in progress: deciding once the files have landed")
    home = lead_home.resolve().warehouse
    path = home / f"{PERFORMANCE}.parquet"
    table = warehouse.read_parquet(path) if path.exists() else None
    key, why = retrain_decision(
        model_registry.champion_version(), table,
        lambda: warehouse.read_columns(home, "outcome_history", [*labels.NEW_OUTCOME_COLUMNS, "current", LABEL, "day"]),
        _profiles(home), outcome_policy)
    if key is None:
        return SkipReason(why)
    return RunRequest(run_key=key, tags={"lead_assets/reason": why})
