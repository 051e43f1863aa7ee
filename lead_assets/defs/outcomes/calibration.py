"""champion_calibration: the champion's probabilities refit on the outcomes of leads it was not
trained on (``core.model.recalibration``), so that what sales are shown follows the outcomes
between two trainings. ``performance_refresh`` materializes it with ``model_performance``
whenever labels or scores change; ``scored_leads`` and ``lead-assets serve`` score through the
latest refit of the champion's version."""

import json

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, MetadataValue, asset

from lead_assets.core import clock
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID
from lead_assets.core.store import warehouse
from lead_assets.core.store.home import profile_path
from lead_assets.defs.policy import OutcomePolicy
from lead_assets.defs.resources import LeadHomeResource, ModelRegistry

CALIBRATION = "champion_calibration"


def _trained_until(home, version: str) -> str | None:
    path = profile_path(home, version)
    return json.loads(path.read_text()).get("trained_until") if path.exists() else None


@asset(
    deps=[AssetKey("lead_features"), AssetKey("champion_model")],
    group_name="scoring",
    io_manager_key="json_io_manager",
    kinds={"catboost", "json"},
    description="The champion's probabilities refit (Platt) on the latest outcomes of leads it was not trained on, "
                "once enough have arrived; every refit is kept per version and scoring serves the latest.",
)
def champion_calibration(context: AssetExecutionContext, lead_home: LeadHomeResource,
                         model_registry: ModelRegistry, outcome_policy: OutcomePolicy) -> dict:
    from lead_assets.core.leads import labels
    from lead_assets.core.model import recalibration

    home = lead_home.resolve()
    champion = model_registry.load_champion()
    if champion is None:
        return _report(context, {"status": "no champion yet"}, [])
    model, version = champion
    root = home.warehouse
    trained_until = _trained_until(home, str(version))
    known = warehouse.read_columns(root, "lead_features", [LEAD_ID, CREATED_DATE, LABEL])
    known[LABEL] = labels.matured_labels(known, outcome_policy.label_maturity_days, lead_home.today())
    sample = recalibration.matured_sample(known, trained_until, outcome_policy.recalibration_window_days)
    fits = recalibration.history(root, str(version))
    base = {"model_version": str(version), "trained_until": trained_until, "outcomes_in_sample": len(sample)}
    if not outcome_policy.recalibration_min_outcomes:
        return _report(context, {**base, "status": "off (recalibration_min_outcomes 0)"}, fits)
    since = sample[CREATED_DATE].min().strftime("%Y-%m-%d") if len(sample) else ""
    until = sample[CREATED_DATE].max().strftime("%Y-%m-%d") if len(sample) else ""
    positives = int(sample[LABEL].astype(int).sum()) if len(sample) else 0
    if recalibration.same_sample(fits[-1] if fits else None, len(sample), positives, since, until):
        return _report(context, {**base, "status": f"unchanged: {fits[-1].name} used these outcomes"}, fits)
    waiting = recalibration.waiting_reason(str(version), len(sample), positives,
                                           outcome_policy.recalibration_min_outcomes)
    if waiting:
        return _report(context, {**base, "status": waiting}, fits)
    days = sorted(sample[CREATED_DATE].dt.strftime("%Y-%m-%d").unique())
    features = warehouse.read_partitions(root, "lead_features", days)
    label = sample.drop_duplicates(LEAD_ID, keep="last").set_index(LEAD_ID)[LABEL]
    features = features[features[LEAD_ID].isin(label.index).to_numpy()]
    probability = model.predict_proba(features)  # the version's own calibration, never a refit of a refit
    fitted_at = pd.Timestamp(clock.now()).strftime("%Y-%m-%dT%H:%M:%S")
    refit = recalibration.fit(str(version), probability, features[LEAD_ID].map(label).astype(int).to_numpy(),
                              features[CREATED_DATE], fitted_at, outcome_policy.recalibration_min_outcomes)
    if isinstance(refit, str):
        return _report(context, {**base, "status": refit}, fits)
    recalibration.record(root, refit)
    context.log.info(f"version {version} recalibrated on {refit.outcomes} outcomes ({refit.since}..{refit.until}): "
                     f"calibration error {refit.calibration_error_before:.3f} -> {refit.calibration_error_after:.3f}")
    return _report(context, {**base, "status": f"refit: {refit.name}", **refit.as_dict()}, [*fits, refit])


def _report(context: AssetExecutionContext, summary: dict, fits: list) -> dict:
    table = pd.DataFrame([f.as_dict() for f in fits])
    context.add_output_metadata({
        "status": str(summary.get("status", "")),
        "model_version": str(summary.get("model_version", "")),
        "outcomes_in_sample": int(summary.get("outcomes_in_sample", 0)),
        "refits": MetadataValue.md(table.round(4).to_markdown(index=False) if len(table)
                                   else "no refit of this version yet: it serves its training's calibration"),
    })
    return summary
