"""Outcomes: labels that arrive after the lead, attached to the lead already ingested.

An outcome is an *event*: a lead id, a label (``app_complete_flag``), when it became known
(``outcome_at``; when the file was received if it does not say) and the landed file (ledger
sequence number and row) that carried it. Events come from three places: the label a lead file
carried with the lead, a later labelled copy of the same lead (a re-export), and a narrow
outcomes file (``lead_id``, ``app_complete_flag``, optional ``outcome_at``).

The rules, all in :func:`resolve` (``raw_leads`` and ``lead_outcomes`` both call it):

- **The later outcome_at wins.** A lead's label is the label of its event with the latest
  ``outcome_at``; equal times go to the later landed file, then the later row. Two rows of one
  file that disagree are settled by their ``outcome_at``, not by their order.
- **An outcome dated before its lead was created is refused**: a rejected row (rule
  ``outcome_before_lead``) in the lead's day, never the label.
- **The event shown** with a lead (``outcome_at``, ``outcome_source``, ``outcome_seq``) is the
  one since which its label has been what it is: a repeat of the label in force changes nothing.
- **A new outcome** (``label_changed``) is an event that sets a label where none was in force or
  changes the one in force, judged file by file in the order they applied to the lead
  (``attached_seq``: the later of the outcome's file and the lead's file, so an outcome that
  waited for its lead counts when the lead arrives). A file that repeats the label in force (a
  CRM exporting every outcome daily, a file re-saved with other line endings) adds none; a file
  that says two things about one lead counts once, for what it leaves in force.
- Every event is kept in ``outcome_history`` with ``current`` and ``label_changed``; withdrawing
  a file takes its events away and the labels are worked out again without them.

Only a copy whose fields equal the stored lead's may relabel it: a labelled copy that differs
is a conflict (rule ``outcome_conflict``), reported and not merged.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd

from lead_assets.core import schema
from lead_assets.core.schema import CITY, CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT, OUTCOME_SEQ, OUTCOME_SOURCE

LABEL_CHANGED = "label_changed"
ATTACHED_SEQ = "attached_seq"
EVENT_COLUMNS = (LEAD_ID, LABEL, OUTCOME_AT, "source_file", "source_sha256", "source_row", OUTCOME_SEQ)
HISTORY_COLUMNS = (LEAD_ID, "day", *EVENT_COLUMNS[1:], "via", "current", LABEL_CHANGED, ATTACHED_SEQ)
# What new_outcomes_since reads of outcome_history (read these columns, not only outcome_seq).
NEW_OUTCOME_COLUMNS = (OUTCOME_SEQ, LABEL_CHANGED, ATTACHED_SEQ)
OUTCOMES_FILE = "outcomes_file"


def new_outcomes_since(history: pd.DataFrame, seq: int) -> int:
    """The one count of new outcomes (label set or changed) that applied after ledger position ``seq``.

    Used by ``model_performance.outcomes_since_training`` and the retrain decision. A history
    written before ``label_changed`` existed counts every event, by its ``outcome_seq``.
    """
    if history is None or not len(history):
        return 0
    position = pd.to_numeric(history[OUTCOME_SEQ], errors="coerce")
    if ATTACHED_SEQ in history.columns:
        position = pd.to_numeric(history[ATTACHED_SEQ], errors="coerce").fillna(position)
    new = (history[LABEL_CHANGED] if LABEL_CHANGED in history.columns
           else pd.Series(pd.NA, index=history.index, dtype="boolean"))
    new = new.astype("boolean").fillna(True).to_numpy(dtype=bool)
    return int((new & (position > seq).to_numpy(dtype=bool)).sum())


def _in_force(history: pd.DataFrame) -> np.ndarray:
    current = history["current"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    return current & history[LABEL].notna().to_numpy()


def labelled_in_force(history: pd.DataFrame) -> int:
    """Leads whose label in force is known: the events ``current`` with a label (reads ``current``
    and ``app_complete_flag`` of ``outcome_history``)."""
    if history is None or not len(history) or "current" not in history.columns:
        return 0
    return int(_in_force(history).sum())


def labelled_per_month(history: pd.DataFrame) -> pd.Series:
    """:func:`labelled_in_force` by month of lead creation (``YYYY-MM``; also reads ``day``)."""
    if history is None or not len(history) or "current" not in history.columns:
        return pd.Series(dtype="int64")
    days = history.loc[_in_force(history), "day"].astype(str)
    return days.str[:7].value_counts().sort_index()


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


def _rejected_rows(refused: pd.DataFrame, created: pd.Series) -> pd.DataFrame:
    """Events dated before their lead as rejected rows in the lead's day (``rejected_leads``)."""
    from lead_assets.core.inbox.parsing import REJECTED_COLUMNS

    when = created.to_numpy(dtype="datetime64[ns]")
    detail = [f"outcome_at {pd.Timestamp(at):%Y-%m-%d %H:%M:%S} is before lead {lid} was created "
              f"({pd.Timestamp(c):%Y-%m-%d %H:%M:%S}): an outcome cannot come first; not applied"
              for lid, at, c in zip(refused[LEAD_ID], refused[OUTCOME_AT], when)]
    raw = [json.dumps({LEAD_ID: lid, LABEL: int(label), OUTCOME_AT: f"{pd.Timestamp(at):%Y-%m-%d %H:%M:%S}"},
                      ensure_ascii=False)
           for lid, label, at in zip(refused[LEAD_ID], refused[LABEL], refused[OUTCOME_AT])]
    return pd.DataFrame({
        "source_file": refused["source_file"].to_numpy(dtype=object),
        "source_sha256": refused["source_sha256"].to_numpy(dtype=object),
        "source_row": refused["source_row"].to_numpy(dtype="int64"),
        "day": pd.Series(when).dt.strftime("%Y-%m-%d").to_numpy(dtype=object),
        "rule": "outcome_before_lead", "column": OUTCOME_AT, "detail": detail, "raw": raw,
    }, columns=list(REJECTED_COLUMNS))


def resolve(events: pd.DataFrame, leads: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rules of the module docstring over every event of ``leads``.

    ``events``: ``EVENT_COLUMNS`` and ``via`` (``outcome_at`` filled); ``leads``: ``lead_id``,
    ``created_date`` and ``lead_seq`` (the ledger position of the lead's file). Returns the
    history (every event that applies, with ``day``, ``current``, ``label_changed`` and
    ``attached_seq``) and the events refused as ``outcome_before_lead``, as rejected rows.
    """
    from lead_assets.core.inbox.parsing import REJECTED_COLUMNS

    known = leads.drop_duplicates(LEAD_ID).set_index(LEAD_ID)
    ev = events[events[LEAD_ID].isin(known.index).to_numpy()]
    created = known[CREATED_DATE].reindex(ev[LEAD_ID]).to_numpy(dtype="datetime64[ns]")
    before = ev[OUTCOME_AT].to_numpy(dtype="datetime64[ns]") < created
    refused = _rejected_rows(ev[before], pd.Series(created[before])) if before.any() else pd.DataFrame(
        columns=list(REJECTED_COLUMNS))
    ev = ev[~before].copy()
    seqs = known["lead_seq"].reindex(ev[LEAD_ID]).to_numpy(dtype="float64")
    ev[ATTACHED_SEQ] = np.fmax(ev[OUTCOME_SEQ].to_numpy(dtype="float64"), seqs).astype("int64")
    ev = ev.sort_values([LEAD_ID, OUTCOME_AT, OUTCOME_SEQ, "source_row"], kind="stable").reset_index(drop=True)
    n = len(ev)
    current = np.zeros(n, dtype=bool)
    changed = np.zeros(n, dtype=bool)
    if n:
        group = pd.factorize(ev[LEAD_ID])[0]  # contiguous: sorted by lead first
        label = ev[LABEL].to_numpy(dtype="int8")
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        ends = np.r_[starts[1:], n] - 1
        final = label[ends][group]
        differs = np.where(label != final, np.arange(n), -1)
        last_differs = np.maximum.reduceat(differs, starts)
        current[np.maximum(last_differs + 1, starts)] = True  # the first event of the final streak
        position = pd.Series(np.arange(n))
        winners = position.groupby([group, ev[ATTACHED_SEQ].to_numpy()]).max()  # each file's say, in applied order
        in_force = winners.groupby(level=0).cummax()
        after = pd.Series(label[in_force.to_numpy()], index=winners.index)
        before_label = after.groupby(level=0).shift(1)
        new = (before_label.isna() | (before_label != after)).to_numpy(dtype=bool)
        changed[winners.to_numpy()[new]] = True
    day = known[CREATED_DATE].reindex(ev[LEAD_ID]).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    history = ev.assign(day=day, current=current, **{LABEL_CHANGED: changed})
    return history[list(HISTORY_COLUMNS)], refused


def attach(leads: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Each lead's label from its events (``resolve``), the history, and the refused events.

    ``leads`` carries ``lead_seq``. Leads without an event keep an empty label. Returns the
    leads with ``app_complete_flag``, ``outcome_at``, ``outcome_source`` and ``outcome_seq``.
    """
    history, refused = resolve(events, leads)
    latest = history[history["current"].to_numpy(dtype=bool)].set_index(LEAD_ID)
    out = leads.copy()
    ids = out[LEAD_ID]
    out[LABEL] = pd.array(ids.map(latest[LABEL]), dtype="Int8") if len(latest) else pd.array(
        [pd.NA] * len(out), dtype="Int8")
    out[OUTCOME_AT] = pd.to_datetime(ids.map(latest[OUTCOME_AT])).astype("datetime64[ns]") if len(latest) else (
        pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]"))
    out[OUTCOME_SOURCE] = ids.map(latest["source_file"]).astype(object) if len(latest) else None
    out[OUTCOME_SEQ] = pd.array(ids.map(latest[OUTCOME_SEQ]) if len(latest) else [pd.NA] * len(out), dtype="Int64")
    return out, history, refused


def in_force(history: pd.DataFrame) -> pd.DataFrame:
    """Per lead, the event shown with it: label, outcome_at and outcome_seq (``current`` events)."""
    shown = history[history["current"].to_numpy(dtype=bool)]
    return shown.set_index(LEAD_ID)[[LABEL, OUTCOME_AT, OUTCOME_SEQ]]


def judge(narrow: pd.DataFrame, ingested: pd.DataFrame, lead_events: pd.DataFrame, recorded: pd.DataFrame,
          live: set[str]) -> tuple[np.ndarray, dict[str, int]]:
    """What each outcomes-file event does, and the days whose stored leads no longer show their outcomes.

    ``narrow``: the events of every landed outcomes file (``EVENT_COLUMNS``, ``via``);
    ``ingested``: every ingested lead (``lead_id``, ``created_date``, ``lead_seq``, and the
    stored ``app_complete_flag``, ``outcome_at``, ``outcome_seq``); ``lead_events``: the events
    lead files carried (from ``outcome_history``); ``recorded``: the outcomes-file events already
    in ``outcome_history`` or refused in ``rejected_leads`` (``lead_id``, ``source_sha256``,
    ``source_row``, ``day``); ``live``: the sha256 of every landed outcomes file.

    Returns each narrow event's status (``attached``: it set or changed its lead's label;
    ``unchanged``: it did not; ``rejected``: dated before its lead; ``pending``: no such lead
    yet) and the days to re-run: where the event shown would change, where a refused event is
    not recorded yet, and where a withdrawn file's events are still recorded.
    """
    status = np.full(len(narrow), "pending", dtype=object)
    ids = set(ingested[LEAD_ID])
    mine = narrow[LEAD_ID].isin(ids).to_numpy()
    stale: set[str] = set()
    keys = _keys(narrow)
    if mine.any():
        touched = set(narrow.loc[mine, LEAD_ID])
        leads = ingested[ingested[LEAD_ID].isin(touched).to_numpy()]
        events = pd.concat([lead_events[lead_events[LEAD_ID].isin(touched).to_numpy()], narrow[mine]],
                           ignore_index=True)
        history, refused = resolve(events, leads)
        changed = dict(zip(_keys(history), history[LABEL_CHANGED]))
        refused_keys = set(_keys(refused))
        for i in np.flatnonzero(mine):
            status[i] = "rejected" if keys[i] in refused_keys else ("attached" if changed.get(keys[i]) else "unchanged")
        shown = in_force(history)
        stored = leads.set_index(LEAD_ID)
        now = shown.reindex(stored.index)
        differs = ~(_same(now[LABEL], stored[LABEL]) & _same(now[OUTCOME_SEQ], stored[OUTCOME_SEQ])
                    & _same(now[OUTCOME_AT], stored[OUTCOME_AT]))
        stale |= set(stored.loc[differs, CREATED_DATE].dt.strftime("%Y-%m-%d"))
        stale |= set(refused.loc[~np.isin(_keys(refused), _keys(recorded)), "day"])
    gone = recorded[~recorded["source_sha256"].isin(live).to_numpy()]
    stale |= set(gone["day"].dropna())
    days = ingested[CREATED_DATE].dt.strftime("%Y-%m-%d")
    counts = days[days.isin(stale)].value_counts().sort_index()
    return status, {day: int(n) for day, n in counts.items()}


def _keys(frame: pd.DataFrame) -> np.ndarray:
    """An event's identity: the file (sha256) and row that carried it."""
    rows = pd.to_numeric(frame["source_row"]).astype("int64").astype(str)
    return (frame["source_sha256"].astype(str) + ":" + rows).to_numpy(dtype=object)


def _same(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Equal, or both missing (labels, sequence numbers, times)."""
    left, right = a.astype(object).to_numpy(), b.astype(object).to_numpy()
    missing_left, missing_right = pd.isna(left), pd.isna(right)
    out = missing_left & missing_right
    both = ~missing_left & ~missing_right
    out[both] = [x == y for x, y in zip(left[both], right[both])]
    return out


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
