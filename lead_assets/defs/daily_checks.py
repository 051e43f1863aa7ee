"""What every data-quality check shares: one evaluation per partition day, with useful metadata.

Why checks are partitioned and emit their own evaluations
---------------------------------------------------------
The lead assets are daily-partitioned with a single-run backfill policy, so a run (the inbox
sensor's, a UI backfill, ``--partition-range``) covers a *range* of days. A check that takes
the asset as an input reads exactly the run's partitions, which is what we want to validate; it
asks for ``DayChunks`` and judges them a chunk of days at a time (``chunked_evaluations``), so a
long range run's check holds one chunk, like its asset. But how the result is recorded matters:

* an unpartitioned check records one result per run: the UI shows the latest run's verdict
  and a failed day disappears from view when another day's run passes;
* a check with ``partitions_def`` (preview in Dagster 1.13) that returns an
  ``AssetCheckResult`` records it for ``context.partition_key`` only; in a range run (the
  sensor always sends range tags) there is none, so the result is recorded without a partition
  and every day of the range stays "planned" in the UI forever (measured in
  ``lead_assets_tests/defs/leads/test_checks.py``).

So each check is partitioned like its asset and yields one ``AssetCheckEvaluation`` per day of
the run (its own verdict, counts and offending rows, targeting that day's latest
materialization), then the check's ``Output``. Dagster's blocking logic looks at those
evaluations: if any day fails with ERROR severity the check step fails and downstream assets
of the run do not start.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    MetadataValue,
    Output,
    PreviewWarning,
    asset_check,
)

from lead_assets.core.leads.quality import DayResult, QualityResult
from lead_assets.core.store.warehouse import DayChunks
from lead_assets.defs.partitions import lead_days

MAX_MARKDOWN_ROWS = 50


def daily_check(**kwargs) -> Callable:
    """``@asset_check`` partitioned by lead day (the preview warning is expected, not news)."""

    def decorate(fn):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PreviewWarning)
            return asset_check(partitions_def=lead_days, **kwargs)(fn)

    return decorate


def chunked_evaluations(
    context: AssetCheckExecutionContext,
    chunks: DayChunks,
    check: Callable[[pd.DataFrame, list[str]], QualityResult],
    *,
    severity: AssetCheckSeverity,
    blocking: bool,
) -> Iterator:
    """``check`` on the run's days a chunk at a time (bounded memory in a range run): the
    evaluations of each chunk's days as they are known, then the check's (empty) output.

    A rule across rows (``lead_id`` unique) sees one chunk's days; the warehouse keeps each
    day whole, so a day is always judged with all of its rows.
    """
    run_days = list(context.partition_keys)
    for days, frame in chunks.chunks(run_days):
        result = check(frame, days)
        del frame
        yield from day_evaluations(context, result, days, severity=severity, blocking=blocking, run_days=run_days)
    yield Output(None)


def day_evaluations(
    context: AssetCheckExecutionContext,
    result: QualityResult,
    days: Sequence[str],
    *,
    severity: AssetCheckSeverity,
    blocking: bool,
    run_days: Sequence[str] | None = None,
) -> Iterator[AssetCheckEvaluation]:
    """One AssetCheckEvaluation per day of ``days`` (its verdict from ``result``)."""
    spec = context.check_specs[0]
    targets = latest_materializations(context.instance, spec.asset_key, days)
    for day in days:
        verdict = result.for_day(day)
        yield AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=verdict.passed,
            metadata=day_metadata(result, verdict, list(run_days or days)),
            target_materialization_data=targets.get(day),
            severity=severity,
            description=f"{day}: {verdict.describe()}",
            blocking=blocking,
            partition=day,
        )
    if not result.passed:
        context.log.warning(result.describe())


def latest_materializations(instance: DagsterInstance, asset_key: AssetKey, days: Sequence[str]) -> dict:
    """The latest materialization of each day (what the evaluation is about), in one query when possible."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    def target(record):
        return AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)

    found = {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(days)), limit=len(days)).records
    for record in records:  # newest first
        if record.partition_key in days and record.partition_key not in found:
            found[record.partition_key] = target(record)
    for day in [d for d in days if d not in found]:  # days re-materialized in other runs since
        latest = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=[day]), limit=1).records
        if latest:
            found[day] = target(latest[0])
    return found


def day_metadata(result: QualityResult, verdict: DayResult, days: Sequence[str]) -> dict:
    """What the UI shows for one day: verdict counts, the failing expectations and offending rows."""
    metadata = {
        "rows": verdict.rows,
        "expectations_evaluated": verdict.evaluated,
        "expectations_failed": len(verdict.failures),
        "failed_expectations": MetadataValue.text(", ".join(o.rule for o in verdict.failures) or "none"),
        "unexpected_rows": verdict.unexpected_rows,
        "run_partitions": days[0] if len(days) == 1 else f"{days[0]}...{days[-1]} ({len(days)} days)",
        "check_seconds": round(result.seconds, 3),
        **{k: v for k, v in verdict.stats.items()},
    }
    if verdict.failures:
        metadata["failures"] = _markdown(verdict.failure_rows())
        samples = verdict.sample_rows()
        if samples:
            metadata["offending_rows"] = _markdown(samples)
    failing = {o.rule for o in verdict.failures}
    metadata["expectations"] = _markdown([
        {"rule": o.rule, "expectation": o.expectation, "column": ", ".join(o.columns),
         "status": "skipped" if o.skipped else ("FAILED" if o.rule in failing else "passed")}
        for o in result.outcomes
    ], limit=len(result.outcomes))
    return metadata


def _markdown(rows: list[dict], limit: int = MAX_MARKDOWN_ROWS) -> MetadataValue:
    frame = pd.DataFrame(rows[:limit])
    text = frame.to_markdown(index=False) if len(frame) else "none"
    if len(rows) > limit:
        text += f"\n\n... and {len(rows) - limit} more"
    return MetadataValue.md(text)
