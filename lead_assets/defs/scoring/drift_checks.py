"""scored_leads monitoring: each day's scores against the champion's holdout profile (warns).

The profile (bucket shares, predicted-positive ratio, score histogram, unseen and ``others``
level shares) is written for every model version when it is trained, so each day is compared
with the holdout of the very model version that scored it.
"""

import json

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckSeverity,
    AssetIn,
    MetadataValue,
    Output,
)

from lead_assets.core.scoring import drift
from lead_assets.core.store.home import profile_path
from lead_assets.core.store.warehouse import DayChunks
from lead_assets.defs.daily_checks import daily_check, latest_materializations
from lead_assets.defs.resources import LeadHomeResource


@daily_check(
    asset="scored_leads",
    blocking=False,
    additional_ins={"lead_features": AssetIn()},
    description=(
        "Drift of each scored day against the scoring model's training holdout: population stability "
        "index of the score, share of leads per bucket, predicted-positive ratio, and the share of "
        "unseen and 'others' levels. Warns only."
    ),
)
def scored_leads_drift(context: AssetCheckExecutionContext, scored_leads: DayChunks,
                       lead_features: DayChunks, lead_home: LeadHomeResource):
    yield from _drift(context, scored_leads, lead_features, lead_home)
    yield Output(None)


def _drift(context, scored_leads: DayChunks, lead_features: DayChunks, lead_home: LeadHomeResource):
    """Each day of the run, a chunk of days at a time (bounded memory in a range run)."""
    home = lead_home.resolve()
    spec = context.check_specs[0]
    cache: dict[str, dict | None] = {}
    for days, scored in scored_leads.chunks(context.partition_keys):
        features = lead_features.read(days)
        targets = latest_materializations(context.instance, spec.asset_key, days)
        for day, batch, featured in _by_day(days, scored, features):
            yield _evaluation(spec, day, batch, featured, targets.get(day), home, cache)


def _by_day(days, scored: pd.DataFrame, features: pd.DataFrame):
    scored_day = scored["created_date"].dt.strftime("%Y-%m-%d") if len(scored) else pd.Series(dtype=str)
    feature_day = features["created_date"].dt.strftime("%Y-%m-%d") if len(features) else pd.Series(dtype=str)
    for day in days:
        yield (day, scored[(scored_day == day).to_numpy()] if len(scored) else scored,
               features[(feature_day == day).to_numpy()] if len(features) else features)


def _evaluation(spec, day: str, batch: pd.DataFrame, featured: pd.DataFrame, target, home, cache: dict):
    versions = sorted(batch["model_version"].unique()) if len(batch) else []
    version = versions[-1] if versions else None
    if version is not None and version not in cache:
        path = profile_path(home, version)
        cache[version] = json.loads(path.read_text()) if path.exists() else None
    reference = cache.get(version) if version else None
    if reference is None:
        passed, findings, table = True, [f"no reference profile for model version {version}"], pd.DataFrame()
    else:
        now = drift.profile(batch, reference["threshold"], drift.others_share(featured))
        comparison = drift.compare(reference["profile"], now)
        passed, findings, table = comparison.passed, comparison.findings, comparison.table
    return AssetCheckEvaluation(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        partition=day,
        target_materialization_data=target,
        description=f"{day}: " + ("; ".join(findings) if findings else "in line with the holdout"),
        metadata={
            "model_version": str(version),
            "leads": len(batch),
            "findings": MetadataValue.md("\n".join(f"- {f}" for f in findings) or "none"),
            "comparison": MetadataValue.md(table.to_markdown(index=False) if len(table) else "n/a"),
        },
    )
