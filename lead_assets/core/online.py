"""Online scoring: raw leads as a web form or CRM webhook sends them, scored like the batch.

One lead at a time cannot run the file ingest (``core.ingest.parse_lead_file`` types and checks
a whole file column by column: about 80 ms for one row), so :func:`type_leads` applies the
same row rules to a frame of records, with ingest's own date parser, count limit and lead-id
hash (``lead_assets_tests/core/test_online.py`` holds it to ``parse_lead_file`` row for row).
Cleaning, features, probability, bucket and reasons are the batch's own functions
(``clean_leads``, ``build_features``, ``score_leads``), so a lead scored online and in
``scored_leads`` by the same model version gets the same probability and reasons.

The junk cut-off is the one thing a single lead cannot compute: in the batch it is a quantile
of the probabilities of every lead created in the 14 days up to the lead's day
(:mod:`lead_assets.core.cutoff`). Online, the cut-off comes from, in order:

1. the request (``params: {"cutoff": 0.41}``): the caller knows better (e.g. a replay of a
   batch row, which records the cut-off it got);
2. a *published* cut-off: the latest scored day's cut-off for this model version, which
   ``lead-assets serve`` keeps current from the warehouse in the file named by
   ``LEAD_ASSETS_CUTOFF_FILE`` (a Kubernetes deployment can mount the same JSON);
3. the model's own fixed fallback threshold (what the batch uses for a thin window).

Every answer names the cut-off it used and why (``cutoff``, ``cutoff_rule``). So the batch and
the online bucket agree whenever they used the same cut-off; a lead near the cut-off may move
bucket when its day is scored in full, and the batch row is then the record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lead_assets.core import schema
from lead_assets.core.clean import clean_leads
from lead_assets.core.features import build_features
from lead_assets.core.ingest import MAX_COUNT, lead_ids, parse_created_series
from lead_assets.core.model import LeadModel
from lead_assets.core.schema import CITY, CREATED_DATE, LABEL, LEAD_ID, REFERRED
from lead_assets.core.scoring import BucketConfig, reason_details, score_leads

CUTOFF_FILE_ENV = "LEAD_ASSETS_CUTOFF_FILE"
MAX_PROBLEMS = 20  # an error message lists at most this many broken fields

OUTPUT_FIELDS: tuple[str, ...] = (
    LEAD_ID, CREATED_DATE, "probability", "score", "bucket", "cutoff", "cutoff_rule", "reasons",
    "reason_details", "unseen_levels", "unseen_columns", "model_name", "model_version",
)


class InvalidLeads(ValueError):
    """Some records break a row rule; ``problems`` names record, field, rule and detail for each."""

    def __init__(self, problems: list[dict]):
        self.problems = problems
        shown = "; ".join(
            (f"record {p['record']}: " if p.get("record") is not None else "")
            + f"{p['field']}: {p['rule']}: {p['detail']}" for p in problems[:MAX_PROBLEMS])
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        super().__init__(shown + more)


def _problem(record, field: str, rule: str, detail: str) -> dict:
    return {"record": None if record is None else int(record), "field": field, "rule": rule, "detail": detail}


def _text(values: pd.Series) -> np.ndarray:
    """Stripped text, blanks and nulls as None (as ingest reads a CSV field); non-text as its str().

    Plain Python over the values: a request holds one to a few thousand leads, where this is
    several times faster than the same steps as pandas string operations.
    """
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values.tolist()):
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            out[i] = None
        else:
            out[i] = (value if isinstance(value, str) else str(value)).strip() or None
    return out


def _numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """float64 counts and where a value was given but is not a number (booleans are not numbers)."""
    if values.dtype.kind in "fiu":
        return values.to_numpy(dtype="float64"), np.zeros(len(values), dtype=bool)
    given = values.notna().to_numpy(dtype=bool)
    objects = values.astype(object)
    bad_type = np.array([isinstance(v, bool | dict | list) for v in objects], dtype=bool)
    number = pd.to_numeric(pd.Series(_text(objects.where(~bad_type, None)), dtype=object), errors="coerce")
    number = number.to_numpy(dtype="float64")
    return number, (given & np.isnan(number)) | bad_type


def type_leads(records: pd.DataFrame, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Records (raw CodePro fields; ``lead_id`` optional) to typed leads, as ingest types a file's rows.

    Raises :class:`InvalidLeads` naming every broken rule: a missing required field, an
    unparseable or future ``created_date``, a count that is not a number, negative or absurd, a
    referral that is not 0/1, the same lead twice. Fields the schema does not know are ignored.
    """
    if not isinstance(records, pd.DataFrame):
        raise InvalidLeads([_problem(None, "(request)", "wrong_shape", "leads must be a table of records")])
    if records.empty:
        raise InvalidLeads([_problem(None, "(request)", "no_leads", "the request holds no lead records")])
    records = records.reset_index(drop=True)
    problems: list[dict] = []
    missing = [c for c in schema.required_columns() if c not in records.columns]
    problems += [_problem(None, c, "missing_field", f"{c} is required in every record") for c in missing]
    if problems:
        raise InvalidLeads(problems)

    def flag(mask, field: str, rule: str, detail):
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            problems.append(_problem(i, field, rule, detail(i) if callable(detail) else detail))

    given_date = _text(records[CREATED_DATE])
    created = parse_created_series(pd.Series(given_date, dtype=object))
    missing_date = pd.isna(given_date)
    flag(missing_date, CREATED_DATE, "missing_field", "created_date is required (YYYY-MM-DD[ HH:MM:SS])")
    flag(~missing_date & created.isna().to_numpy(), CREATED_DATE, "unparseable_date",
         lambda i: f"{given_date[i]!r} is not a date (YYYY-MM-DD, YYYY-M-D or YYYYMMDD, optional time)")
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else now
    flag((created > now).to_numpy(), CREATED_DATE, "date_in_future",
         lambda i: f"{given_date[i]!r} is in the future (after {now:%Y-%m-%d %H:%M:%S} UTC)")

    columns: dict[str, object] = {CREATED_DATE: created,
                                  CITY: np.array([c and c.lower() for c in _text(records[CITY])], dtype=object)}
    for column in schema.LEVEL_COLUMNS:
        columns[column] = _text(records[column])
    numeric = schema.numeric_columns()
    values = np.full((len(records), len(numeric)), np.nan)
    for j, column in enumerate(numeric):
        if column in records.columns:
            value, not_number = _numbers(records[column])
            flag(not_number, column, "not_a_number", lambda i, c=column: f"{c} is not a number: {records[c][i]!r}")
            values[:, j] = value
    with np.errstate(invalid="ignore"):
        for j, column in enumerate(numeric):
            flag(values[:, j] < 0, column, "negative_count", lambda i, j=j, c=column: f"{c} is negative: {values[i, j]:g}")
            flag(values[:, j] > MAX_COUNT, column, "absurd_count",
                 lambda i, j=j, c=column: f"{c} is above {MAX_COUNT:g}: {values[i, j]:g}")
    referred = values[:, numeric.index(REFERRED)]
    flag(~np.isnan(referred) & ~np.isin(referred, [0.0, 1.0]), REFERRED, "not_binary",
         lambda i: f"referred_lead must be 0 or 1, not {referred[i]:g}")
    typed = pd.concat([pd.DataFrame(columns), pd.DataFrame(values, columns=list(numeric))], axis=1)
    typed[LABEL] = pd.array([pd.NA] * len(typed), dtype="Int8")
    if problems:
        raise InvalidLeads(sorted(problems, key=lambda p: (p["record"] is not None, p["record"] or 0)))

    ids = _text(records[LEAD_ID]) if LEAD_ID in records.columns else np.full(len(typed), None, dtype=object)
    derive = pd.isna(ids)
    if derive.any():  # hashing every field costs more than the rest of typing: only where no id was given
        ids[derive] = lead_ids(typed[derive].reset_index(drop=True))  # lead_ids aligns on a 0..n-1 index
    typed.insert(0, LEAD_ID, ids.astype(str))
    duplicate = pd.Series(ids).duplicated(keep="first").to_numpy()
    if duplicate.any():
        first = {v: i for i, v in reversed(list(enumerate(ids)))}
        flag(duplicate, LEAD_ID, "duplicate_in_request", lambda i: f"same lead as record {first[ids[i]]}")
        raise InvalidLeads(problems)
    return typed


@dataclass(frozen=True)
class Cutoff:
    """The junk cut-off an online answer used, and why."""

    value: float
    rule: str


def published_cutoff(scored: pd.DataFrame, model_version: str) -> dict | None:
    """What ``lead-assets serve`` publishes: the cut-off of the latest lead ``model_version`` scored.

    ``scored``: rows of ``scored_leads`` (e.g. the latest day's partition). None when that
    version scored none of them.
    """
    mine = scored[scored["model_version"].astype(str) == str(model_version)]
    if mine.empty:
        return None
    last = mine.sort_values([CREATED_DATE, LEAD_ID]).iloc[-1]
    return {"model_name": str(last["model_name"]), "model_version": str(model_version),
            "cutoff": float(last["cutoff"]), "cutoff_rule": str(last["cutoff_rule"]),
            "day": pd.Timestamp(last[CREATED_DATE]).strftime("%Y-%m-%d")}


class CutoffFile:
    """A published cut-off read from a JSON file, re-read only when the file changes."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self._stamp: tuple[int, int] | None = None
        self._value: dict | None = None

    def read(self) -> dict | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            self._stamp, self._value = None, None
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._value = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._value = None
            self._stamp = stamp
        return self._value


def choose_cutoff(model: LeadModel, model_version: str | None, requested=None,
                  published: Mapping | None = None) -> Cutoff:
    """The request's cut-off, else the published one for this model version, else the model's fallback."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int | float) or not 0 <= requested <= 1:
            raise InvalidLeads([_problem(None, "params.cutoff", "out_of_range",
                                         f"cutoff must be a probability between 0 and 1, not {requested!r}")])
        return Cutoff(float(requested), f"cut-off {float(requested):.6g} given in the request")
    if published and model_version is not None and str(published.get("model_version")) == str(model_version):
        try:
            return Cutoff(float(published["cutoff"]),
                          f"as scored on {published.get('day')}: {published.get('cutoff_rule')}")
        except (KeyError, TypeError, ValueError):
            pass
    rule = model.cutoff_rule
    return Cutoff(float(rule.threshold), f"fixed threshold {rule.threshold:.3f}: the model's fallback "
                                         "(no published cut-off for this version)")


def bucket_config(params: Mapping | None) -> BucketConfig:
    """``hot_min_probability`` / ``warm_min_probability`` from the request, the batch's defaults otherwise."""
    params = params or {}
    default = BucketConfig()
    try:
        return BucketConfig(hot=float(params.get("hot_min_probability", default.hot)),
                            warm=float(params.get("warm_min_probability", default.warm)))
    except (TypeError, ValueError) as error:
        raise InvalidLeads([_problem(None, "params.hot_min_probability/warm_min_probability", "out_of_range",
                                     str(error))]) from error


def score_records(records: pd.DataFrame, model: LeadModel, model_name: str, model_version: str | None,
                  cutoff: Cutoff, buckets: BucketConfig | None = None, now: pd.Timestamp | None = None) -> list[dict]:
    """One answer per record, in order: the fields of :data:`OUTPUT_FIELDS`."""
    typed = type_leads(records, now=now)
    features = build_features(clean_leads(typed))
    scored = score_leads(features, model, model_name=model_name, model_version=str(model_version),
                         buckets=buckets, cutoffs=(cutoff.value, cutoff.rule))
    scored[CREATED_DATE] = scored[CREATED_DATE].dt.strftime("%Y-%m-%dT%H:%M:%S")
    scored["reason_details"] = reason_details(scored)
    scored["model_version"] = None if model_version is None else str(model_version)
    rows = scored[list(OUTPUT_FIELDS)].to_dict("records")
    for row in rows:
        row["probability"] = float(row["probability"])
        row["score"] = int(row["score"])
        row["cutoff"] = float(row["cutoff"])
        row["unseen_levels"] = bool(row["unseen_levels"])
    return rows
