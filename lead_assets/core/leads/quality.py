"""Data-quality rules for every lead asset, run with Great Expectations 1.x on a pandas frame.

No Dagster here. Each asset has a list of :class:`Rule` (one GX expectation under a stable name
of ours); ``check_raw_leads`` and friends build the GX suite once per process, validate the frame
in an ephemeral GX context and return a :class:`QualityResult`: plain Python objects with every
expectation's outcome, unexpected counts, and a few offending rows (``lead_id`` and
``source_row`` where the frame has them).

Results are also split **by partition day**. A run may cover a range of days and the frame is
then the concatenation of those days; every offending row is attributed to the day of its
``created_date`` (the warehouse writes each row to exactly that day's file). A failure that
cannot be attributed to one of the run's days (a table-level expectation such as the column
list, a row with no usable ``created_date`` or one outside the run's days) counts against every
day of the run: a day is only reported as passing when nothing says otherwise.

Great Expectations takes about 3.5 s to import, so it is imported inside functions only, and
its context, data asset and suites are built once per process.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from lead_assets.core import clock, schema
from lead_assets.core.schema import CITY_TIER, CREATED_DATE, LABEL, LEAD_ID, OTHERS, REFERRED, SOURCE_ROW

SAMPLE_ROWS = 5  # offending rows kept per failing expectation and day
ID_COLUMNS: tuple[str, ...] = (LEAD_ID, SOURCE_ROW)
DAY = "day"  # the day column of the small derived frames (row counts per day)
OUTSIDE = "(outside the run's days)"
ROW = "row"  # a row's position in the frame a derived frame was made from
BUCKETS: tuple[str, ...] = ("hot", "warm", "cold", "junk")
SCORE, BUCKET, MODEL_VERSION = "score", "bucket", "model_version"
NUMERIC_TYPES: tuple[str, ...] = ("float64", "float32", "int64", "int32", "int16", "int8", "Float64", "Int64",
                                  "Int32", "Int16", "Int8")

# GX 1.x sends no usage statistics when this is False (1.24 has no analytics client left, but a
# deployment may pin another 1.x); set before the first import, without overriding an operator.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


# --------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True, eq=False)
class Rule:
    """One GX expectation under a stable name; ``optional`` rules are skipped when a column is absent."""

    name: str
    expectation: str  # class name in great_expectations.expectations
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    optional: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.kwargs[k] for k in ("column", "column_A", "column_B") if k in self.kwargs)


def _param(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def raw_rules() -> tuple[Rule, ...]:
    """raw_leads: columns, parseable in-partition dates, numeric non-negative counts, 0/1 flags, one row per lead."""
    rules = [
        Rule("required_columns_present", "ExpectTableColumnsToMatchSet",
             {"column_set": [LEAD_ID, *schema.required_columns()], "exact_match": False}),
        Rule("lead_id_not_null", "ExpectColumnValuesToNotBeNull", {"column": LEAD_ID}),
        Rule("lead_id_unique", "ExpectColumnValuesToBeUnique", {"column": LEAD_ID}),
        Rule("created_date_parsed", "ExpectColumnValuesToNotBeNull", {"column": CREATED_DATE}),
        Rule("created_date_is_datetime", "ExpectColumnValuesToBeInTypeList",  # any unit; not tz-aware
             {"column": CREATED_DATE, "type_list": ["datetime64[ns]"]}),
        Rule("created_date_in_partition_not_future", "ExpectColumnValuesToBeBetween",
             {"column": CREATED_DATE, "min_value": _param("created_min"), "max_value": _param("created_max")}),
    ]
    rules.append(Rule("referred_lead_is_0_or_1", "ExpectColumnValuesToBeInSet",
                      {"column": REFERRED, "value_set": [0, 1]}))
    rules.append(Rule("label_is_0_or_1", "ExpectColumnValuesToBeInSet", {"column": LABEL, "value_set": [0, 1]},
                      optional=True))
    return tuple(rules)


def count_rules() -> tuple[Rule, ...]:
    """On the long frame of every count value present (column, value, row): each is in [0, 1000].

    The 39 count columns are mostly empty (interactions are sparse), so one expectation over
    their non-null values costs less than 39 expectations (GX spends about 10 ms of bookkeeping
    per expectation, most of a check's time on a day's partition), and an offending value names
    its column. 1000 is ingest's own ceiling (``MAX_COUNT``): above it a count is a broken export.
    """
    from lead_assets.core.inbox.parsing import MAX_COUNT

    return (Rule("counts_non_negative", "ExpectColumnValuesToBeBetween",
                 {"column": "value", "min_value": 0, "max_value": MAX_COUNT}),)


def numeric_dtype_rules() -> tuple[Rule, ...]:
    """On the frame of (column, dtype) for the count columns present: every one is numeric.

    A count column that is not numeric is a schema problem of the whole partition: one
    expectation on this small frame instead of one type expectation per column.
    """
    return (Rule("counts_are_numbers", "ExpectColumnValuesToBeInSet",
                 {"column": "dtype", "value_set": list(NUMERIC_TYPES)}),)


def cleaned_rules() -> tuple[Rule, ...]:
    """cleaned_leads: no nulls in the model's columns, known tiers and levels."""
    ref = schema.reference()
    rules = [Rule(f"{c}_not_null", "ExpectColumnValuesToNotBeNull", {"column": c}) for c in schema.feature_columns()]
    rules.append(Rule("city_tier_in_1_2_3", "ExpectColumnValuesToBeInSet",
                      {"column": CITY_TIER, "value_set": [1, 2, 3]}))
    for column in schema.LEVEL_COLUMNS:
        known = sorted(ref.significant_levels[column] | {OTHERS})
        rules.append(Rule(f"{column}_known_level", "ExpectColumnValuesToBeInSet",
                          {"column": column, "value_set": known}))
    return tuple(rules)


def reconciliation_rules() -> tuple[Rule, ...]:
    """Per day: cleaned rows == raw rows (cleaning drops nothing silently)."""
    return (Rule("rows_reconcile_with_raw_leads", "ExpectColumnPairValuesToBeEqual",
                 {"column_A": "cleaned_rows", "column_B": "raw_rows"}),)


def features_rules() -> tuple[Rule, ...]:
    """lead_features: keys, the model's columns in order, the label and when it became known; nothing else."""
    from lead_assets.core.leads.features import KEY_COLUMNS

    return (Rule("columns_are_model_input_in_order", "ExpectTableColumnsToMatchOrderedList",
                 {"column_list": [*KEY_COLUMNS, *schema.feature_columns(), LABEL, schema.OUTCOME_AT]}),)


def dtype_rules() -> tuple[Rule, ...]:
    """On the frame of (column, dtype, expected_dtype): every feature column has its dtype."""
    return (Rule("feature_dtypes", "ExpectColumnPairValuesToBeEqual",
                 {"column_A": "dtype", "column_B": "expected_dtype"}),)


def scored_rules() -> tuple[Rule, ...]:
    """scored_leads: one row per lead, a 0-100 score, a known bucket, a model version."""
    return (
        Rule("scored_columns_present", "ExpectTableColumnsToMatchSet",
             {"column_set": [LEAD_ID, SCORE, BUCKET, MODEL_VERSION], "exact_match": False}),
        Rule("lead_id_not_null", "ExpectColumnValuesToNotBeNull", {"column": LEAD_ID}),
        Rule("lead_id_unique", "ExpectColumnValuesToBeUnique", {"column": LEAD_ID}),
        Rule("score_not_null", "ExpectColumnValuesToNotBeNull", {"column": SCORE}),
        Rule("score_in_0_100", "ExpectColumnValuesToBeBetween", {"column": SCORE, "min_value": 0, "max_value": 100}),
        Rule("bucket_not_null", "ExpectColumnValuesToNotBeNull", {"column": BUCKET}),
        Rule("bucket_known", "ExpectColumnValuesToBeInSet", {"column": BUCKET, "value_set": list(BUCKETS)}),
        Rule("model_version_not_null", "ExpectColumnValuesToNotBeNull", {"column": MODEL_VERSION}),
        Rule("model_version_not_empty", "ExpectColumnValuesToMatchRegex", {"column": MODEL_VERSION, "regex": r"\S"}),
    )


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Outcome:
    """One expectation's result, with its offending rows counted (and sampled) per day.

    ``row_level`` outcomes know the day of every offending row; ``unattributed`` counts the
    offending rows that belong to none of the run's days. A failed outcome that is not row-level
    (the column list, a dtype) or has unattributed rows fails every day of the run.
    """

    rule: str
    expectation: str  # GX type, e.g. expect_column_values_to_be_unique
    columns: tuple[str, ...]
    passed: bool
    skipped: bool = False
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed: str | None = None
    detail: str = ""
    unexpected_by_day: Mapping[str, int] = field(default_factory=dict)
    unattributed: int = 0
    row_level: bool = False
    samples: tuple[dict, ...] = ()

    def fails_day(self, day: str) -> bool:
        if self.passed:
            return False
        if not self.row_level or self.unattributed:
            return True
        return self.unexpected_by_day.get(day, 0) > 0

    def unexpected_on(self, day: str) -> int | None:
        """Offending rows of this day (None for a table-level expectation)."""
        return self.unexpected_by_day.get(day, 0) if self.row_level else None

    def samples_on(self, day: str) -> list[dict]:
        """Offending rows of this day, and those that belong to no day of the run."""
        return [s for s in self.samples if s.get(DAY) == day or s.get(DAY) not in self.unexpected_by_day]

    def summary(self) -> dict:
        return {
            "rule": self.rule, "expectation": self.expectation, "column": ", ".join(self.columns),
            "passed": self.passed, "skipped": self.skipped, "unexpected": self.unexpected_count,
            "unexpected_percent": None if self.unexpected_percent is None else round(self.unexpected_percent, 4),
            "observed": self.observed, "detail": self.detail,
        }


@dataclass(frozen=True)
class DayResult:
    """The result as one partition day sees it."""

    day: str
    rows: int
    passed: bool
    failures: tuple[Outcome, ...]
    evaluated: int
    stats: Mapping[str, float] = field(default_factory=dict)

    @property
    def unexpected_rows(self) -> int:
        return sum(o.unexpected_on(self.day) or 0 for o in self.failures)

    def failure_rows(self) -> list[dict]:
        """One line per failing expectation: counts on this day (None when table-level) and in the run."""
        return [{"rule": o.rule, "expectation": o.expectation, "column": ", ".join(o.columns),
                 "unexpected_this_day": o.unexpected_on(self.day), "unexpected_in_run": o.unexpected_count,
                 "unattributed_rows": o.unattributed, "detail": o.detail or o.observed or ""}
                for o in self.failures]

    def sample_rows(self, limit: int = SAMPLE_ROWS) -> list[dict]:
        rows: list[dict] = []
        for outcome in self.failures:
            rows.extend(outcome.samples_on(self.day)[:limit])
        return rows

    def describe(self) -> str:
        if self.passed:
            return f"all {self.evaluated} expectations passed on {self.rows} rows"
        parts = []
        for o in self.failures:
            count = o.unexpected_on(self.day)
            parts.append(f"{o.rule} ({count} rows)" if count else o.rule)
        return f"{len(self.failures)} of {self.evaluated} expectations failed: " + "; ".join(parts)


@dataclass(frozen=True)
class QualityResult:
    """Every expectation's outcome for one asset's frame, overall and per partition day."""

    suite: str
    rows: int
    days: tuple[str, ...]
    rows_by_day: Mapping[str, int]
    outcomes: tuple[Outcome, ...]
    seconds: float = 0.0
    stats: Mapping[str, float] = field(default_factory=dict)
    day_stats: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.passed)

    @property
    def evaluated(self) -> int:
        return sum(not o.skipped for o in self.outcomes)

    def outcome(self, rule: str) -> Outcome:
        return next(o for o in self.outcomes if o.rule == rule)

    def for_day(self, day: str) -> DayResult:
        failures = tuple(o for o in self.outcomes if o.fails_day(day))
        return DayResult(day, int(self.rows_by_day.get(day, 0)), not failures, failures, self.evaluated,
                         dict(self.day_stats.get(day, {})))

    def describe(self) -> str:
        if self.passed:
            return f"{self.suite}: all {self.evaluated} expectations passed on {self.rows} rows"
        parts = [f"{o.rule} ({o.unexpected_count} rows)" if o.unexpected_count else o.rule for o in self.failures]
        return f"{self.suite}: {len(self.failures)} of {self.evaluated} expectations failed: " + "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Great Expectations, once per process

_LOCK = threading.RLock()
_GX: dict[str, Any] = {}
_SUITES: dict[tuple, Any] = {}


def _gx() -> dict[str, Any]:
    """The ephemeral context and its one in-memory dataframe asset, created on first use."""
    with _LOCK:
        if not _GX:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.enable_analytics(False)
            # "Calculating Metrics" tqdm bars would land in every Dagster step's stderr.
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            asset = context.data_sources.add_pandas("lead_assets").add_dataframe_asset("frame")
            _GX.update(gx=gx, context=context, batch_definition=asset.add_batch_definition_whole_dataframe("whole"))
        return _GX


def _suite(name: str, rules: Sequence[Rule]):
    """The GX suite for these rules, built once per process (rule names identify it)."""
    key = (name, tuple(r.name for r in rules))
    with _LOCK:
        if key not in _SUITES:
            gx = _gx()
            import great_expectations.expectations as gxe

            suite = gx["gx"].ExpectationSuite(name=f"{name}-{len(_SUITES)}")
            for rule in rules:
                suite.add_expectation(getattr(gxe, rule.expectation)(**rule.kwargs, meta={"rule": rule.name}))
            _SUITES[key] = gx["context"].suites.add(suite)
        return _SUITES[key]


def _validate(frame: pd.DataFrame, suite, parameters: Mapping[str, Any] | None):
    """Run a suite on a frame; the same as ``Batch.validate`` without loading the batch twice.

    ``batch_definition.get_batch(...).validate(suite)`` builds the batch again inside its
    validator, and GX fingerprints (hashes) every pandas batch it builds; this is what
    ``ValidationDefinition.run`` does, minus storing every result in the context's store.
    """
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(batch_definition=_gx()["batch_definition"], batch_parameters={"dataframe": frame},
                          result_format=_result_format())
    return validator.validate_expectation_suite(suite, dict(parameters or {}))


def _result_format() -> dict:
    # COMPLETE gives every offending row's index (to attribute it to a day); it costs nothing
    # when an expectation passes. No SQL-ish "unexpected index query" for pandas frames.
    return {"result_format": "COMPLETE", "partial_unexpected_count": SAMPLE_ROWS,
            "return_unexpected_index_query": False}


def run_rules(
    frame: pd.DataFrame,
    suite: str,
    rules: Sequence[Rule],
    *,
    days: Sequence[str],
    day_of: Callable[[pd.DataFrame, np.ndarray], np.ndarray] | None,
    parameters: Mapping[str, Any] | None = None,
    sample_columns: Sequence[str] = (),
) -> list[Outcome]:
    """Validate ``frame`` against ``rules`` and attribute offending rows to ``days``.

    ``day_of(frame, positions)`` gives the day (``YYYY-MM-DD`` or None) of rows at positions;
    without it every failure is table-level. ``sample_columns`` are shown beside the ids.
    """
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
        frame = frame.reset_index(drop=True)  # GX reports index labels: make them positions
    present = set(frame.columns)
    active = [r for r in rules if not (r.optional and not set(r.columns) <= present)]
    skipped = [r for r in rules if r not in active]
    # GX's pandas engine copies the whole frame for every column expectation (it drops the
    # column's null rows first): on a 50-column frame that is most of the time. So rules are
    # validated on the column(s) they read, and schema rules (no column) on the header only.
    groups: dict[tuple[str, ...], list[Rule]] = {}
    for rule in active:
        groups.setdefault(tuple(dict.fromkeys(rule.columns)), []).append(rule)
    by_rule = {}
    for columns, group in groups.items():
        part = frame[[c for c in columns if c in present]] if columns else frame.iloc[:0]
        result = _validate(part, _suite(f"{suite}:{'+'.join(columns) or 'table'}", group), parameters)
        by_rule.update({r.expectation_config.meta.get("rule"): r for r in result.results})
    outcomes = [_outcome(rule, by_rule[rule.name], frame, days, day_of, sample_columns) for rule in active]
    outcomes += [Outcome(r.name, _snake(r.expectation), r.columns, passed=True, skipped=True,
                         detail="column absent: optional, skipped") for r in skipped]
    order = {r.name: i for i, r in enumerate(rules)}
    return sorted(outcomes, key=lambda o: order[o.rule])


def _snake(class_name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in class_name).lstrip("_")


def _exception_message(info: Any) -> str:
    """GX nests exception info per metric for suites; take the first raised message."""
    if not isinstance(info, Mapping):
        return ""
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():
        message = _exception_message(value)
        if message:
            return message
    return ""


def _outcome(rule: Rule, res, frame: pd.DataFrame, days: Sequence[str],
             day_of: Callable | None, sample_columns: Sequence[str]) -> Outcome:
    details = res.result or {}
    passed = bool(res.success)
    error = _exception_message(res.exception_info)
    missing = [c for c in rule.columns if c not in frame.columns]
    detail = f"column(s) missing: {', '.join(missing)}" if missing else (error[:300] if error else "")
    observed = details.get("observed_value")
    mismatch = (details.get("details") or {}).get("mismatched")
    if mismatch:
        detail = detail or _describe_mismatch(mismatch)
    base = dict(rule=rule.name, expectation=res.expectation_config.type, columns=rule.columns, passed=passed,
                element_count=details.get("element_count"), unexpected_count=details.get("unexpected_count"),
                unexpected_percent=details.get("unexpected_percent"),
                observed=None if observed is None else _short(observed), detail=detail)
    index = details.get("unexpected_index_list")
    row_level = index is not None and day_of is not None
    if passed or index is None:
        return Outcome(**base, row_level=row_level)
    positions = np.asarray([i if not isinstance(i, Mapping) else next(iter(i.values())) for i in index], dtype=np.int64)
    if day_of is None:  # a table-level frame (e.g. one row per column): fails every day, rows still shown
        row_days = np.full(len(positions), None, dtype=object)
        return Outcome(**base, row_level=False, unattributed=len(positions),
                       samples=tuple(_samples(rule, frame, positions, row_days, sample_columns)))
    row_days = np.asarray(day_of(frame, positions), dtype=object) if len(positions) else np.array([], dtype=object)
    wanted = set(days)
    inside = np.fromiter((d in wanted for d in row_days), dtype=bool, count=len(row_days))
    by_day = pd.Series(row_days[inside]).value_counts().to_dict() if inside.any() else {}
    samples = _samples(rule, frame, positions, row_days, sample_columns)
    return Outcome(**base, row_level=True, unexpected_by_day={str(k): int(v) for k, v in by_day.items()},
                   unattributed=int((~inside).sum()), samples=tuple(samples))


def _describe_mismatch(mismatch: Any) -> str:
    if isinstance(mismatch, Mapping):
        parts = [f"{k}: {', '.join(map(str, v))}" for k, v in mismatch.items() if v]
        return "; ".join(parts)
    if isinstance(mismatch, list):  # ordered list: [{"Expected Column Position", "Expected", "Found"}]
        return "; ".join(f"position {m.get('Expected Column Position')}: expected {m.get('Expected')!r}, "
                         f"found {m.get('Found')!r}" for m in mismatch[:10])
    return _short(mismatch)


def _short(value: Any, limit: int = 300) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _samples(rule: Rule, frame: pd.DataFrame, positions: np.ndarray, row_days: np.ndarray,
             sample_columns: Sequence[str]) -> list[dict]:
    """The first few offending rows of every day (and of no day): ids, day and the values at fault."""
    keyed = pd.DataFrame({"position": positions, DAY: pd.Series(row_days, dtype=object).fillna("(none)")})
    chosen = keyed.groupby(DAY, sort=False).head(SAMPLE_ROWS)
    columns = [c for c in dict.fromkeys([*ID_COLUMNS, *sample_columns, *rule.columns]) if c in frame.columns]
    rows = frame.iloc[chosen["position"].to_numpy()][columns]
    out = []
    for (_, key), record in zip(chosen.iterrows(), rows.to_dict(orient="records")):
        day = key[DAY]
        out.append({"rule": rule.name, DAY: None if day == "(none)" else day,
                    **{k: _plain(v) for k, v in record.items()}})
    return out


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar for metadata."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(pd.Timestamp(value))
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


# --------------------------------------------------------------------------------------------
# Days


def _as_datetime(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    return pd.to_datetime(values.astype("string"), format="ISO8601", errors="coerce")


def created_day(frame: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
    """The ``created_date`` day of rows at ``positions`` (None when absent or unparseable)."""
    if CREATED_DATE not in frame.columns:
        return np.full(len(positions), None, dtype=object)
    stamps = _as_datetime(frame[CREATED_DATE].iloc[positions])
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    days = stamps.dt.floor("D")
    labels = {d: d.strftime("%Y-%m-%d") for d in days.dropna().unique()}
    return np.asarray([labels.get(d) if not pd.isna(d) else None for d in days], dtype=object)


def day_column(frame: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
    return frame[DAY].iloc[positions].astype(object).to_numpy()


def rows_per_day(frame: pd.DataFrame, days: Iterable[str]) -> dict[str, int]:
    days = list(days)
    if CREATED_DATE not in frame.columns or not len(frame):
        return {d: 0 for d in days}
    stamps = _as_datetime(frame[CREATED_DATE])
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    counts = stamps.dt.floor("D").value_counts()
    labelled = {k.strftime("%Y-%m-%d"): int(v) for k, v in counts.items()}
    return {d: labelled.get(d, 0) for d in days}


def _result(suite: str, frame: pd.DataFrame, days: Sequence[str], outcomes: list[Outcome], started: float,
            stats: Mapping[str, float] | None = None,
            day_stats: Mapping[str, Mapping[str, float]] | None = None,
            rows_by_day: Mapping[str, int] | None = None) -> QualityResult:
    rows_by_day = rows_per_day(frame, days) if rows_by_day is None else rows_by_day
    return QualityResult(suite=suite, rows=len(frame), days=tuple(days), rows_by_day=dict(rows_by_day),
                         outcomes=tuple(outcomes), seconds=time.perf_counter() - started, stats=dict(stats or {}),
                         day_stats=dict(day_stats or {}))


def _count_values(raw: pd.DataFrame) -> pd.DataFrame:
    """Every non-null value of the numeric count columns: its column, value and row in ``raw``."""
    names, rows, values = [], [], []
    for column in schema.numeric_columns():
        if column not in raw.columns or not pd.api.types.is_numeric_dtype(raw[column]):
            continue  # absent (an optional interaction) or not numeric (counts_are_numbers says so)
        data = raw[column].to_numpy(dtype="float64", na_value=np.nan)
        at = np.flatnonzero(~np.isnan(data))
        names.append(column)
        rows.append(at)
        values.append(data[at])
    if not names:
        return pd.DataFrame({"column": pd.Series(dtype=object), "value": pd.Series(dtype="float64"),
                             ROW: pd.Series(dtype="int64")})
    column = pd.Categorical.from_codes(np.repeat(np.arange(len(names)), [len(r) for r in rows]), categories=names)
    return pd.DataFrame({"column": column, "value": np.concatenate(values), ROW: np.concatenate(rows)})


def _with_lead_ids(outcome: Outcome, raw: pd.DataFrame) -> Outcome:
    """Samples of the long count frame, shown with the lead's ids instead of its row number."""
    samples = []
    for sample in outcome.samples:
        sample = dict(sample)
        row = sample.pop(ROW)
        ids = {c: _plain(raw[c].iloc[row]) for c in ID_COLUMNS if c in raw.columns}
        samples.append({"rule": sample.pop("rule"), DAY: sample.pop(DAY), **ids, **sample})
    return replace(outcome, samples=tuple(samples))


def _dtype_frame(frame: pd.DataFrame, expected: Mapping[str, str | None]) -> pd.DataFrame:
    """One row per column: its dtype (``(missing)`` when absent) and, when given, the expected one."""
    out = pd.DataFrame({"column": list(expected),
                        "dtype": [str(frame[c].dtype) if c in frame.columns else "(missing)" for c in expected]})
    if any(v is not None for v in expected.values()):
        out["expected_dtype"] = list(expected.values())
    return out


def _with_dtype_detail(outcome: Outcome, dtypes: pd.DataFrame, wrong: pd.Series) -> Outcome:
    if outcome.passed or outcome.detail:
        return outcome
    detail = "; ".join(f"{r['column']}: {r['dtype']}"
                       + (f" (expected {r['expected_dtype']})" if "expected_dtype" in r else "")
                       for r in dtypes[wrong].to_dict(orient="records"))
    return replace(outcome, detail=_short(detail))


def _day_bounds(days: Sequence[str], now: pd.Timestamp | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First instant of the first day and the last of the last day, not after ``now`` (UTC, naive)."""
    now = pd.Timestamp(clock.now()).tz_localize(None) if now is None else pd.Timestamp(now)
    if now.tzinfo is not None:
        now = now.tz_convert("UTC").tz_localize(None)
    first = pd.Timestamp(min(days))
    last = pd.Timestamp(max(days)) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return first, min(last, now)


# --------------------------------------------------------------------------------------------
# One function per asset


def check_raw_leads(raw: pd.DataFrame, days: Sequence[str], now: pd.Timestamp | None = None) -> QualityResult:
    """raw_leads for ``days`` (the run's partitions): see :func:`raw_rules`.

    ``lead_id_duplicate_rate`` (run and per day) is the share of rows whose lead_id appears on
    another row of the run too; ingest de-duplicates, so it must be 0.
    """
    started = time.perf_counter()
    days = sorted(days)
    low, high = _day_bounds(days, now)
    outcomes = run_rules(raw, "raw_leads", raw_rules(), days=days, day_of=created_day,
                         parameters={"created_min": low, "created_max": high})
    values = _count_values(raw)
    counted = run_rules(values, "raw_leads_counts", count_rules(), days=days,
                        day_of=lambda frame, at: created_day(raw, frame[ROW].to_numpy()[at]),
                        sample_columns=("column", "value", ROW))
    outcomes += [_with_lead_ids(o, raw) for o in counted]
    dtypes = _dtype_frame(raw, {c: None for c in schema.numeric_columns() if c in raw.columns})
    numeric = run_rules(dtypes, "raw_leads_dtypes", numeric_dtype_rules(), days=days, day_of=None,
                        sample_columns=("column",))
    outcomes += [_with_dtype_detail(o, dtypes, ~dtypes["dtype"].isin(NUMERIC_TYPES)) for o in numeric]
    unique = next(o for o in outcomes if o.rule == "lead_id_unique")
    duplicates = int(unique.unexpected_count or 0)
    rows_by_day = rows_per_day(raw, days)
    day_stats = {}
    for day in days:
        on_day = int(unique.unexpected_by_day.get(day, 0))
        day_stats[day] = {"lead_id_duplicate_rows": on_day,
                          "lead_id_duplicate_rate": on_day / rows_by_day[day] if rows_by_day[day] else 0.0}
    stats = {"lead_id_duplicate_rows": duplicates, "lead_id_duplicate_rate": duplicates / len(raw) if len(raw) else 0.0}
    return _result("raw_leads", raw, days, outcomes, started, stats, day_stats, rows_by_day)


def check_cleaned_leads(cleaned: pd.DataFrame, raw: pd.DataFrame, days: Sequence[str]) -> QualityResult:
    """cleaned_leads for ``days``: :func:`cleaned_rules`, and per day cleaned rows == raw rows."""
    started = time.perf_counter()
    days = sorted(days)
    outcomes = run_rules(cleaned, "cleaned_leads", cleaned_rules(), days=days, day_of=created_day)
    raw_counts, cleaned_counts = rows_per_day(raw, days), rows_per_day(cleaned, days)
    counts = pd.DataFrame({DAY: days, "raw_rows": [raw_counts[d] for d in days],
                           "cleaned_rows": [cleaned_counts[d] for d in days]})
    # Rows outside the run's days (or undated) are counted as a day of their own, so they cannot hide.
    outside_raw, outside_cleaned = len(raw) - sum(raw_counts.values()), len(cleaned) - sum(cleaned_counts.values())
    if outside_raw or outside_cleaned:
        counts.loc[len(counts)] = [OUTSIDE, outside_raw, outside_cleaned]
    outcomes += run_rules(counts, "cleaned_leads_reconciliation", reconciliation_rules(), days=days,
                          day_of=day_column, sample_columns=(DAY,))
    day_stats = {d: {"raw_rows": raw_counts[d], "cleaned_rows": cleaned_counts[d]} for d in days}
    stats = {"raw_rows": len(raw), "cleaned_rows": len(cleaned)}
    return _result("cleaned_leads", cleaned, days, outcomes, started, stats, day_stats, cleaned_counts)


def check_lead_features(features: pd.DataFrame, days: Sequence[str]) -> QualityResult:
    """lead_features for ``days``: the model's columns in order between keys and label, the model's dtypes."""
    from lead_assets.core.leads.features import feature_dtypes

    started = time.perf_counter()
    days = sorted(days)
    outcomes = run_rules(features, "lead_features", features_rules(), days=days, day_of=None)
    dtypes = _dtype_frame(features, feature_dtypes())
    checked = run_rules(dtypes, "lead_features_dtypes", dtype_rules(), days=days, day_of=None,
                        sample_columns=("column",))
    outcomes += [_with_dtype_detail(o, dtypes, dtypes["dtype"] != dtypes["expected_dtype"]) for o in checked]
    return _result("lead_features", features, days, outcomes, started)


def check_scored_leads(scored: pd.DataFrame, days: Sequence[str]) -> QualityResult:
    """scored_leads for ``days``: see :func:`scored_rules`."""
    started = time.perf_counter()
    days = sorted(days)
    outcomes = run_rules(scored, "scored_leads", scored_rules(), days=days, day_of=created_day)
    return _result("scored_leads", scored, days, outcomes, started)
