"""Outcomes: labels that arrive after the lead, attached to the lead already ingested.

An outcome is an *event*: a lead id, a label (``app_complete_flag``), when it became known
and the landed file (ledger sequence number and row) that carried it. Events come from three
places: the label a lead file carried with the lead, a later labelled copy of the same lead
(a re-export), and a narrow outcomes file (``lead_id``, ``app_complete_flag``, optional
``outcome_at``). A lead's label is its latest event in landing order; every event is kept, so
the history of a label is never lost.

Only a copy whose fields equal the stored lead's may relabel it: a labelled copy that differs
is a conflict (rule ``outcome_conflict``), reported and not merged.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from lead_assets.core import schema
from lead_assets.core.schema import CITY, CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT, OUTCOME_SEQ, OUTCOME_SOURCE

EVENT_COLUMNS = (LEAD_ID, LABEL, OUTCOME_AT, "source_file", "source_sha256", "source_row", OUTCOME_SEQ)
HISTORY_COLUMNS = (LEAD_ID, "day", *EVENT_COLUMNS[1:], "via", "current")


def compared_columns() -> tuple[str, ...]:
    """The fields that make a lead the same lead: everything but the label, the id and the file."""
    return (CREATED_DATE, CITY, *schema.LEVEL_COLUMNS, *schema.numeric_columns())


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """Fields as compared: an optional interaction left out (NaN) equals 0, as in the derived id."""
    optional = set(schema.reference().interaction_columns)
    out = pd.DataFrame(index=frame.index)
    for column in compared_columns():
        values = frame[column] if column in frame.columns else pd.Series(np.nan, index=frame.index)
        if column in optional:
            values = values.astype("float64").fillna(0.0)
        elif column == CREATED_DATE:
            values = values.astype("datetime64[ns]")
        else:
            values = values.astype(object).where(values.notna(), None)
        out[column] = values
    return out


def differing_columns(copies: pd.DataFrame, stored: pd.DataFrame) -> list[list[str]]:
    """Per row pair (aligned by position), the compared fields whose values differ."""
    left = _normalised(copies.reset_index(drop=True))
    right = _normalised(stored.reset_index(drop=True))
    differs = pd.DataFrame(index=left.index)
    for column in compared_columns():
        a, b = left[column], right[column]
        both_missing = a.isna() & b.isna()
        differs[column] = ~(both_missing | (a == b).fillna(False).astype(bool))
    names = np.array(compared_columns(), dtype=object)
    return [list(names[row]) for row in differs.to_numpy(dtype=bool)]


def events_from_leads(leads: pd.DataFrame, received_at: pd.Series, via: str) -> pd.DataFrame:
    """The labels that lead rows carry, as events (rows without a label carry none)."""
    labelled = leads[leads[LABEL].notna().to_numpy()] if LABEL in leads.columns else leads.iloc[:0]
    known = labelled[OUTCOME_AT] if OUTCOME_AT in labelled.columns else pd.Series(pd.NaT, index=labelled.index)
    events = pd.DataFrame({
        LEAD_ID: labelled[LEAD_ID].to_numpy(dtype=object),
        LABEL: pd.array(labelled[LABEL], dtype="Int8"),
        OUTCOME_AT: pd.to_datetime(known).astype("datetime64[ns]").to_numpy(),
        "source_file": labelled["source_file"].to_numpy(dtype=object),
        "source_sha256": labelled["source_sha256"].to_numpy(dtype=object),
        "source_row": labelled["source_row"].to_numpy(dtype="int64"),
        OUTCOME_SEQ: labelled["_seq"].to_numpy(dtype="int64"),
    })
    events[OUTCOME_AT] = events[OUTCOME_AT].fillna(received_at.reindex(labelled.index).reset_index(drop=True))
    return events.assign(via=via)


def empty_events() -> pd.DataFrame:
    return pd.DataFrame({
        LEAD_ID: pd.Series(dtype=object), LABEL: pd.Series(dtype="Int8"),
        OUTCOME_AT: pd.Series(dtype="datetime64[ns]"), "source_file": pd.Series(dtype=object),
        "source_sha256": pd.Series(dtype=object), "source_row": pd.Series(dtype="int64"),
        OUTCOME_SEQ: pd.Series(dtype="int64"), "via": pd.Series(dtype=object),
    })


def attach(leads: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each lead's label from its latest event (landing order), and the full history.

    Leads without an event keep an empty label. Returns the leads with ``app_complete_flag``,
    ``outcome_at``, ``outcome_source`` and ``outcome_seq``, and every event of these leads
    (``current`` marks the one in force).
    """
    events = events[events[LEAD_ID].isin(set(leads[LEAD_ID])).to_numpy()]
    events = events.sort_values([OUTCOME_SEQ, "source_row"], kind="stable").reset_index(drop=True)
    current = ~events[LEAD_ID].duplicated(keep="last").to_numpy()
    latest = events[current].set_index(LEAD_ID)
    out = leads.copy()
    ids = out[LEAD_ID]
    out[LABEL] = pd.array(ids.map(latest[LABEL]), dtype="Int8") if len(latest) else pd.array(
        [pd.NA] * len(out), dtype="Int8")
    out[OUTCOME_AT] = pd.to_datetime(ids.map(latest[OUTCOME_AT])).astype("datetime64[ns]") if len(latest) else (
        pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]"))
    out[OUTCOME_SOURCE] = ids.map(latest["source_file"]).astype(object) if len(latest) else None
    out[OUTCOME_SEQ] = pd.array(ids.map(latest[OUTCOME_SEQ]) if len(latest) else [pd.NA] * len(out), dtype="Int64")
    day = ids.map(dict(zip(out[LEAD_ID], out[CREATED_DATE].dt.strftime("%Y-%m-%d"))))
    history = events.assign(day=events[LEAD_ID].map(day.set_axis(ids.to_numpy()).to_dict()), current=current)
    return out, history[list(HISTORY_COLUMNS)]


def stale_days(raw: pd.DataFrame, narrow: pd.DataFrame, narrow_seqs: set[int]) -> dict[str, int]:
    """Days whose stored labels do not show the latest narrow outcome of their leads.

    ``raw`` has ``lead_id``, ``created_date`` and ``outcome_seq`` of every ingested lead;
    ``narrow`` holds the events of the outcomes files landed now; ``narrow_seqs`` every sequence
    number an outcomes file ever had (a label from a withdrawn one is stale too).
    """
    if raw.empty:
        return {}
    stored = raw.drop_duplicates(LEAD_ID, keep="last").set_index(LEAD_ID)
    shown = stored[OUTCOME_SEQ].astype("Int64")
    latest = (narrow.sort_values([OUTCOME_SEQ, "source_row"], kind="stable").drop_duplicates(LEAD_ID, keep="last")
              .set_index(LEAD_ID)[OUTCOME_SEQ] if len(narrow) else pd.Series(dtype="int64"))
    latest = latest[latest.index.isin(stored.index)]
    newer = latest.index[(latest > shown.reindex(latest.index).fillna(-1)).to_numpy(dtype=bool)]
    live = set(narrow[OUTCOME_SEQ]) if len(narrow) else set()
    gone = stored.index[shown.isin(narrow_seqs - live).fillna(False).to_numpy(dtype=bool)]
    days = stored.loc[newer.union(gone), CREATED_DATE].dt.strftime("%Y-%m-%d")
    return {day: int(n) for day, n in days.value_counts().sort_index().items()}


def matured_labels(frame: pd.DataFrame, window_days: int | None, today: date) -> pd.Series:
    """Labels for training and performance under a maturity window (None: as recorded).

    Many CRMs export only completions. With a window, a lead older than ``window_days`` with
    no recorded completion counts as a negative; a lead younger than the window is never a
    negative (its 0 may still become a 1), only a recorded completion counts for it.
    """
    label = pd.array(frame[LABEL], dtype="Int8") if LABEL in frame.columns else pd.array(
        [pd.NA] * len(frame), dtype="Int8")
    label = pd.Series(label, index=frame.index)
    if not window_days:
        return label
    age = (pd.Timestamp(today) - frame[CREATED_DATE].dt.normalize()).dt.days
    mature = (age >= window_days).to_numpy()
    completed = (label == 1).fillna(False).to_numpy(dtype=bool)
    out = pd.Series(pd.array([pd.NA] * len(frame), dtype="Int8"), index=frame.index)
    out[mature] = 0
    out[completed] = 1
    return out
