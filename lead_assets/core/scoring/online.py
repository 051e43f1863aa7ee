"""Online scoring: raw leads as a web form or CRM webhook sends them, scored like the batch.

A request's records go through the batch's own row rules (:func:`lead_assets.core.inbox.parsing.type_lead_rows`,
the function every file row goes through), so the two cannot drift: a JSON value is read as
the text a CSV cell holding it would have (``true`` is the text ``true``, which is not a count;
``3`` is ``"3"``; null is an empty cell) and then judged as a file row is. Only what a file
cannot send is judged here: a JSON object or array where a value belongs (``wrong_type``), a
request without the required fields (``missing_field``) or without records (``no_leads``).
Cleaning, features, probability, bucket and reasons are the batch's own functions
(``clean_leads``, ``build_features``, ``score_leads``'s ``scored_columns``), so a lead scored online and in
``scored_leads`` by the same model version gets the same probability and reasons.

The junk cut-off is the one thing a single lead cannot compute: in the batch it is a quantile
of the probabilities of every lead created in the 14 days up to the lead's day
(:mod:`lead_assets.core.model.cutoff`). Online, the cut-off comes from, in order:

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
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from lead_assets.core import schema
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.leads.features import build_features
from lead_assets.core.inbox.parsing import RowReasons, first_day_setting, json_cells, now_utc, type_lead_rows
from lead_assets.core.model.recipe import LeadModel
from lead_assets.core.schema import CREATED_DATE, LEAD_ID
from lead_assets.core.scoring.batch import BucketConfig, reason_details, scored_columns

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


def type_leads(records: pd.DataFrame | list[Mapping], now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Records (raw CodePro fields; ``lead_id`` optional) to typed leads, by the batch's row rules.

    ``records``: a frame, or the JSON records themselves (a field a record leaves out is empty,
    as in the frame built from them), which spares building a frame for one lead.

    Raises :class:`InvalidLeads` naming, for every record that breaks a rule, the record, the
    field, the rule and what is wrong (the first rule it breaks, in the order a file row is
    judged); a request without records or without a required field is refused as a whole.
    Fields the schema does not know are ignored.
    """
    columns = _columns(records)
    if not columns or not len(next(iter(columns.values()))):
        raise InvalidLeads([_problem(None, "(request)", "no_leads",
                                     "the request holds no lead records (dataframe_records is empty)")])
    missing = [c for c in schema.required_columns() if c not in columns]
    if missing:
        raise InvalidLeads([_problem(None, c, "missing_field", f"{c} is required in every record") for c in missing])
    known = _known_fields()
    reasons = RowReasons(len(next(iter(columns.values()))))
    cells = {}
    for column, values in columns.items():
        if column in known:
            cells[column], wrong = json_cells(values)
            reasons.add(wrong, "wrong_type", column,
                        lambda i, c=column: f"{c} must be a text or a number, not {type(columns[c][i]).__name__}")
    now = now_utc() if now is None else now
    typed = type_lead_rows(cells, reasons, first_day=first_day_setting(), today=now.date(), now=now,
                           duplicate_rule="duplicate_in_request", unit="record")
    broken = np.flatnonzero(reasons.any())
    if len(broken):
        raise InvalidLeads([_problem(i, reasons.column[i] or "(record)", reasons.rule[i], reasons.detail[i])
                            for i in broken])
    return typed


def _columns(records) -> dict[str, list]:
    """Field -> value per record, from a frame or from JSON records (fields in first-seen order)."""
    if isinstance(records, pd.DataFrame):
        return {column: records[column].tolist() for column in records.columns}
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise InvalidLeads([_problem(None, "(request)", "wrong_shape", "leads must be a table of records")])
    fields = dict.fromkeys(field for record in records for field in record)
    return {field: [record.get(field) for record in records] for field in fields}


@lru_cache(maxsize=1)
def _known_fields() -> frozenset[str]:
    return frozenset({LEAD_ID, *schema.required_columns(), *schema.reference().interaction_columns})


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


def published_recalibration(published: Mapping | None, model_version: str | None):
    """The recalibration ``lead-assets serve`` published for ``model_version`` (None: as trained)."""
    from lead_assets.core.model.recalibration import Recalibration

    if not published or model_version is None or str(published.get("model_version")) != str(model_version):
        return None
    values = published.get("recalibration")
    if not isinstance(values, Mapping):
        return None
    try:
        return Recalibration.from_dict(dict(values))
    except TypeError:
        return None


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
    values = scored_columns(features, model, model_name=model_name, model_version=str(model_version),
                            buckets=buckets, cutoffs=(cutoff.value, cutoff.rule))
    created = pd.DatetimeIndex(values[CREATED_DATE]).strftime("%Y-%m-%dT%H:%M:%S")
    details = reason_details(values)
    version = None if model_version is None else str(model_version)
    return [{LEAD_ID: values[LEAD_ID][i], CREATED_DATE: created[i], "probability": float(values["probability"][i]),
             "score": int(values["score"][i]), "bucket": values["bucket"][i], "cutoff": float(values["cutoff"][i]),
             "cutoff_rule": values["cutoff_rule"][i], "reasons": values["reasons"][i], "reason_details": details[i],
             "unseen_levels": bool(values["unseen_levels"][i]), "unseen_columns": values["unseen_columns"][i],
             "model_name": values["model_name"][i], "model_version": version}
            for i in range(len(created))]
