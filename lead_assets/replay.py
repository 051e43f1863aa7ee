"""``lead-assets replay``: a labelled history played through a fresh data home, nobody clicking.

Each step sets the platform's clock (``LEAD_ASSETS_NOW``, ``core.clock``) to the step's moment,
drops that step's leads (without labels) and outcomes (a narrow file) in the inbox, then does
what Dagster's sensor daemon does until nothing more is asked for: it evaluates every running
sensor of the code location (the same definitions, resources and cursors a daemon keeps; a run
key a sensor already used is not run twice) and executes each run request in process against
one Dagster instance. No rule is implemented here: when to train, whether the gate promotes,
when to retrain and rescore are the sensors', assets' and checks' own decisions. Automation
condition sensors (``champion_promotion``) are left out: they promote a training launched by
hand, and every training of a replay is a ``retrain_lead_scoring_model`` run, which promotes in
the same run. The report (``core.outcomes.playback``) judges what sales were shown on arrival.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from lead_assets.core import clock
from lead_assets.core.outcomes import playback as plan_and_report
from lead_assets.core.schema import CREATED_DATE, LEAD_ID

MAX_ROUNDS = 12  # rounds of sensor evaluations per step before the replay calls it a loop
SENSOR_ORDER = ("inbox_sensor", "retrain_on_outcomes", "rescore_on_champion_change", "performance_refresh")
LOCATIONS = ("LEAD_ASSETS_INBOX", "LEAD_ASSETS_LANDING", "LEAD_ASSETS_QUARANTINE", "LEAD_ASSETS_LEDGER",
             "LEAD_ASSETS_WAREHOUSE")


@dataclass
class ReplayResult:
    months: pd.DataFrame
    trainings: pd.DataFrame
    decisions: pd.DataFrame
    failed_runs: list[dict]
    seconds: float
    report: Path
    summary: dict = field(default_factory=dict)
    refits: pd.DataFrame = field(default_factory=pd.DataFrame)  # every recalibration champion_calibration made


def _apply(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def _environment(values: dict[str, str | None]):
    """The replay's home and clock for the duration of the replay; the caller's given back after."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)


@contextlib.contextmanager
def _tracking_uri(uri: str):
    """mlflow's process-wide tracking URI (it wins over the environment) for the replay, then the
    caller's again (``_environment``, outside it, gives back the environment variable)."""
    import mlflow.tracking._tracking_service.utils as tracking

    saved = getattr(tracking, "_tracking_uri", None)
    tracking.set_tracking_uri(uri)
    try:
        yield
    finally:
        tracking.set_tracking_uri(saved)


def _drop(home, name: str, frame: pd.DataFrame) -> None:
    """Written beside the inbox and moved in whole, as an export job does; dated in the past so
    the inbox's settle rule (a file untouched for settle_seconds) holds on the first look."""
    staging = Path(str(home.root)) / "replay_staging"
    staging.mkdir(parents=True, exist_ok=True)
    frame.to_csv(staging / name, index=False)
    past = time.time() - 60
    os.utime(staging / name, (past, past))
    os.replace(staging / name, Path(str(home.inbox)) / name)


class Daemon:
    """The sensor daemon's part of a tick, in process: evaluate, dedupe run keys, execute."""

    def __init__(self, defs, instance, resources: dict):
        self.defs, self.instance, self.resources = defs, instance, resources
        sensors = {s.name: s for s in defs.sensors}
        self.sensors = [sensors[name] for name in SENSOR_ORDER if name in sensors]
        self.repository = defs.get_repository_def()
        self.cursors: dict[str, str | None] = {}
        self.used_keys: set[tuple[str, str]] = set()

    def evaluate(self, sensor):
        from dagster import build_sensor_context

        with build_sensor_context(instance=self.instance, cursor=self.cursors.get(sensor.name),
                                  sensor_name=sensor.name, resources=self.resources,
                                  repository_def=self.repository) as context:
            data = sensor.evaluate_tick(context)
        self.cursors[sensor.name] = data.cursor
        return data

    def job_for(self, sensor, request):
        """An asset selection runs in the location's asset job (as the daemon's anonymous job
        does); a job target runs that job."""
        if request.asset_selection is not None:
            return self.defs.resolve_implicit_global_asset_job_def()
        name = request.job_name
        if not name:
            with contextlib.suppress(Exception):
                name = sensor.job_name
        return self.defs.get_job_def(name)

    def execute(self, sensor, request):
        tags = {**request.tags, "dagster/run_key": request.run_key or ""}
        job = self.job_for(sensor, request)
        return job.execute_in_process(instance=self.instance, asset_selection=request.asset_selection,
                                      tags=tags, raise_on_error=False)


def _training(result, registry_before: str | None, registry_after: str | None) -> dict | None:
    from lead_assets.core.model.judging import promotion_verdict

    nodes = {node.name for node in result.job_def.nodes_in_topological_order}
    if "lead_scoring_model" not in nodes:
        return None
    try:
        info = result.output_for_node("lead_scoring_model")
    except Exception:  # noqa: BLE001 - the training itself failed: reported as a failed run
        return None
    verdict = promotion_verdict(info)
    metrics = info.get("metrics", {})
    return {"version": str(info["version"]), "promoted": registry_after == str(info["version"]) != registry_before,
            "verdict": "pass" if verdict.passed else "refuse",
            "reasons": "; ".join(verdict.reasons) or "all targets met",
            "auc": metrics.get("auc"), "precision": metrics.get("precision"), "recall": metrics.get("recall"),
            "champion_before": registry_before}


def run_replay(data: Path, out: Path, *, step_days: int = 15, label_delay_days: int = 14,
               say: Callable[[str], None] = print) -> ReplayResult:
    """Replay ``data`` into ``out/home`` (refused when it already holds a home) and write the report."""
    out = Path(out).resolve()
    home_root = out / "home"
    if home_root.exists() and any(home_root.iterdir()):
        raise FileExistsError(f"{home_root} already holds a data home: a replay starts from a fresh one "
                              "(remove it or pick another --out)")
    history = plan_and_report.read_history(Path(data))
    steps = list(plan_and_report.plan(history, step_days, label_delay_days))
    # the replay's own tracking store and registry, never the caller's MLFLOW_TRACKING_URI (a
    # production registry must not receive a replay's models)
    tracking = f"sqlite:///{home_root / 'mlflow' / 'mlflow.db'}"
    env = {"LEAD_ASSETS_HOME": str(home_root), "MLFLOW_TRACKING_URI": tracking, clock.NOW_ENV: None,
           "LEAD_ASSETS_TICK_WATCH_SECONDS": "0", **dict.fromkeys(LOCATIONS)}
    started = time.perf_counter()
    with _environment(env), _tracking_uri(tracking):
        return _replay(history, steps, Path(data), out, home_root, step_days, label_delay_days, say, started)


def _replay(history, steps, data, out, home_root, step_days, label_delay_days, say, started) -> ReplayResult:
    from dagster import DagsterInstance

    from lead_assets.core.release import registry

    from lead_assets.core.scoring import shown
    from lead_assets.core.store.home import LeadHome
    from lead_assets.definitions import defs
    from lead_assets.defs.resources import LeadHomeResource, resources_for

    home = LeadHome.resolve(str(home_root)).ensure()
    lead_home = LeadHomeResource(home=str(home_root))
    model_name = resources_for(lead_home)["model_registry"].model_name
    decisions, trainings, failed = [], [], []
    (out / "dagster").mkdir(parents=True, exist_ok=True)
    # the instance opens later as DAGSTER_HOME for `dg dev` (every run of the replay in the UI)
    (out / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.local_temp(tempdir=str(out / "dagster"),
                                    overrides={"telemetry": {"enabled": False}}) as instance:
        sensor_resources = {k: v for k, v in resources_for(lead_home).items()
                            if k in ("lead_home", "model_registry", "outcome_policy")}  # what sensors take
        daemon = Daemon(defs, instance, sensor_resources)
        for step in steps:
            step_started = time.perf_counter()
            os.environ[clock.NOW_ENV] = step.now.isoformat()
            stamp = step.now.strftime("%Y-%m-%d")
            if len(step.leads):
                _drop(home, f"leads_{stamp}.csv", step.leads)
            if len(step.outcomes):
                _drop(home, f"outcomes_{stamp}.csv", step.outcomes)
            ran = []
            for _ in range(MAX_ROUNDS):
                asked = 0
                for sensor in daemon.sensors:
                    data_ = daemon.evaluate(sensor)
                    if not data_.run_requests:
                        decisions.append({"step": step.number, "now": step.now, "sensor": sensor.name,
                                          "decision": "skip", "detail": data_.skip_message or ""})
                    for request in data_.run_requests:
                        key = (sensor.name, request.run_key or "")
                        if request.run_key and key in daemon.used_keys:
                            decisions.append({"step": step.number, "now": step.now, "sensor": sensor.name,
                                              "decision": "skip", "detail": f"run key {request.run_key} already run"})
                            continue
                        daemon.used_keys.add(key)
                        asked += 1
                        reason = request.tags.get("lead_assets/reason", "")
                        decisions.append({"step": step.number, "now": step.now, "sensor": sensor.name,
                                          "decision": "run", "detail": request.run_key or "",
                                          "reason": reason})
                        # each run a second after the one before it: what the ingest run served is
                        # what sales saw on arrival; a rescore later in the step is not
                        os.environ[clock.NOW_ENV] = (step.now + pd.Timedelta(seconds=len(ran))).isoformat()
                        before = registry_champion(registry, model_name, home)
                        result = daemon.execute(sensor, request)
                        after = registry_champion(registry, model_name, home)
                        training = _training(result, before, after)
                        if training:
                            trainings.append({"step": step.number, "now": step.now, "run_key": request.run_key,
                                              "why": reason, **training})
                            say(f"  training v{training['version']}: {training['verdict']}"
                                + (" -> champion" if training["promoted"] else "") + f" ({training['reasons']})")
                        elif not result.success:
                            failed.append({"step": step.number, "sensor": sensor.name, "run_key": request.run_key,
                                           "run_id": result.run_id})
                        ran.append(request.run_key or sensor.name)
                if not asked:
                    break
            else:
                raise RuntimeError(f"step {step.number} ({step.now}): sensors still asking for runs after "
                                   f"{MAX_ROUNDS} rounds: {ran[-8:]}")
            say(f"[{datetime.now():%H:%M:%S}] step {step.number}/{len(steps)} {step.now:%Y-%m-%d}: "
                f"+{len(step.leads):,} leads, +{len(step.outcomes):,} outcomes; {len(ran)} run(s); "
                f"champion {registry_champion(registry, model_name, home) or 'none'}; "
                f"{time.perf_counter() - step_started:.1f} s")
        os.environ.pop(clock.NOW_ENV, None)
        on_arrival = plan_and_report.shown_on_arrival(plan_and_report.arrivals(history, step_days),
                                                      shown.read(home.warehouse))
        refits = _refits(home.warehouse)
        promoted = [t for t in trainings if t["promoted"]]
        frozen = _frozen_scores(home, registry, model_name, promoted[0]["version"]) if promoted else None
    months = plan_and_report.monthly(on_arrival, frozen)
    result = ReplayResult(months, pd.DataFrame(trainings), pd.DataFrame(decisions), failed,
                          time.perf_counter() - started, out / "replay_report.md", refits=refits)
    result.summary = summarise(result, promoted[0]["version"] if promoted else None)
    write_report(result, data, step_days, label_delay_days)
    return result


def _refits(root) -> pd.DataFrame:
    """Every recalibration of every version (``core.model.recalibration``), in the order they were made."""
    from lead_assets.core.model import recalibration

    folder = root / recalibration.FOLDER
    versions = [p.stem[1:] for p in folder.iterdir() if p.name.endswith(".json")] if folder.exists() else []
    rows = [r.as_dict() for v in versions for r in recalibration.history(root, v)]
    return pd.DataFrame(rows).sort_values("fitted_at", kind="stable").reset_index(drop=True) if rows else pd.DataFrame()


def registry_champion(registry, model_name: str, home) -> str | None:
    import mlflow

    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    return registry.champion_version(model_name)


def _frozen_scores(home, registry, model_name: str, version: str) -> pd.DataFrame:
    """Every lead scored by one version, with the cut-off its trailing window gives (what it would
    have shown had nobody retrained)."""
    from lead_assets.core.store import warehouse
    from lead_assets.core.scoring.batch import lead_cutoffs

    model = registry.load_version(model_name, version)
    days = warehouse.existing_partitions(home.warehouse, "lead_features")
    features = warehouse.read_partitions(home.warehouse, "lead_features", days)
    features = features.sort_values(CREATED_DATE, kind="stable").reset_index(drop=True)
    probability = model.predict_proba(features)
    cutoff, _ = lead_cutoffs(model, features, probability)
    return pd.DataFrame({LEAD_ID: features[LEAD_ID].to_numpy(), "probability": probability, "cutoff": cutoff})


def summarise(result: ReplayResult, frozen_version: str | None) -> dict:
    """The issue's bars, from September 2021 (scored on arrival, held) and December (beats frozen)."""
    months = result.months
    held = plan_and_report.month_verdicts(months)
    from_september = months["month"] >= "2021-09"
    from_december = months["month"] >= "2021-12"
    summary = {
        "seconds": round(result.seconds, 1),
        "trainings": len(result.trainings),
        "promotions": int(result.trainings["promoted"].sum()) if len(result.trainings) else 0,
        "failed_runs": len(result.failed_runs),
        "frozen_version": frozen_version,
        "scored_on_arrival_from_september": float(
            (months.loc[from_september, "scored_on_arrival"] * months.loc[from_september, "leads"]).sum()
            / max(months.loc[from_september, "leads"].sum(), 1)),
        "months_held_from_september": f"{int(held[from_september].sum())} of {int(from_september.sum())}",
        "months_calibrated_from_september": f"{int((months.loc[from_september, 'calibration_error'] <= 0.03).sum())}"
                                            f" of {int(from_september.sum())}",
    }
    if "frozen_auc" in months:
        beats = months.loc[from_december, "auc"] > months.loc[from_december, "frozen_auc"]
        summary["months_beating_frozen_auc_from_december"] = f"{int(beats.sum())} of {int(from_december.sum())}"
    return summary


def write_report(result: ReplayResult, data: Path, step_days: int, label_delay_days: int) -> None:
    from lead_assets.core.model.plots import replay_png

    out = result.report.parent
    result.months.to_csv(out / "replay_months.csv", index=False)
    result.trainings.to_csv(out / "replay_trainings.csv", index=False)
    result.decisions.to_csv(out / "replay_decisions.csv", index=False)
    result.refits.to_csv(out / "replay_recalibrations.csv", index=False)
    (out / "replay.png").write_bytes(replay_png(result.months, plan_and_report.TARGETS))
    runs = result.decisions[result.decisions["decision"] == "run"] if len(result.decisions) else result.decisions
    trainings = (result.trainings.drop(columns=["champion_before"]).round(3).to_markdown(index=False)
                 if len(result.trainings) else "no training was started")
    lines = [
        "# Replay report", "",
        f"`lead-assets replay --data {data.name} --step {step_days}d --label-delay {label_delay_days}` "
        f"(defaults, nobody clicking): {result.summary['seconds']:.0f} s.", "",
        "## Summary", "", pd.Series(result.summary).rename("value").to_frame().to_markdown(), "",
        "## What sales were shown, per month of lead creation", "",
        "Scores as served on arrival (a lead's first score, at the step it arrived); precision and recall of "
        "'not junk'; `best_precision_at_target_recall`: the best any cut-off on the month's served scores "
        "reached at recall 0.75; `calibration_error_if_calibrated`: what chance alone leaves on the month's leads "
        "(outcomes drawn from the served probabilities); `frozen_*`: the first promoted model left alone on the "
        "same leads.", "",
        result.months.round(3).to_markdown(index=False), "", "![replay](replay.png)", "",
        "## Trainings and the gate's verdicts", "", trainings, "",
        "## Recalibrations", "",
        "Each refit of a champion's probabilities on the outcomes of leads it was not trained on "
        "(`champion_calibration`); leads arriving after a refit were scored through it.", "",
        (result.refits.round(3).to_markdown(index=False) if len(result.refits) else "no champion was recalibrated"),
        "",
        "## Runs the sensors asked for", "",
        (runs.groupby("sensor").size().rename("runs").to_frame().to_markdown() if len(runs) else "none"), "",
        f"Every sensor decision, skips with their reasons included: `replay_decisions.csv`. Failed runs: "
        f"{json.dumps(result.failed_runs) if result.failed_runs else 'none'}.", "",
    ]
    result.report.write_text("\n".join(lines))
