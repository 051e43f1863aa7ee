"""Scores where sales work: each scored day as the rows a CRM sync imports.

One row per lead: ``lead_id``, its day, ``score``, ``bucket``, its rank within the day and whether it
is inside the day's calling capacity (``core.scoring.capacity``), the top reasons in plain words (phrases
from ``reference/reason_phrases.csv``), ``model_version`` and ``scored_at``. The same rows go to a
file per day in the outbox and to a SQL table (any SQLAlchemy URL) that sync tools read; a day
written again replaces that day's rows, and what changed (bucket, score, version) is counted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from lead_assets.core.scoring.capacity import DAY_RANK, IN_CAPACITY, rank_within_day
from lead_assets.core.schema import CREATED_DATE, LEAD_ID

DAY = "lead_day"
TOP_REASONS = "top_reasons"
EXPORT_COLUMNS = (LEAD_ID, DAY, CREATED_DATE, "score", "bucket", DAY_RANK, IN_CAPACITY, TOP_REASONS,
                  "model_version", "scored_at")
TABLE = "lead_scores"
REASONS = 3


@lru_cache(maxsize=1)
def reason_phrases() -> dict[str, str]:
    """feature -> phrase with ``{value}``, from the package's reference file."""
    text = resources.files("lead_assets.reference").joinpath("reason_phrases.csv").read_text(encoding="utf-8")
    return {row["feature"]: row["phrase"] for row in csv.DictReader(text.splitlines())}


def reasons_in_words(scored: pd.DataFrame, top: int = REASONS) -> np.ndarray:
    """Per lead, its top reasons as a sentence a rep reads: ``raises the chance: filled in a lead form
    3 time(s); lowers it: first came from source others``. A feature with no phrase keeps its name."""
    phrases = reason_phrases()
    texts = np.full(len(scored), "", dtype=object)
    columns = [(f"reason_{k}_feature", f"reason_{k}_value", f"reason_{k}_shap") for k in range(1, top + 1)]
    columns = [c for c in columns if c[0] in scored]
    arrays = [tuple(scored[c].to_numpy() for c in triple) for triple in columns]
    for i in range(len(scored)):
        up, down = [], []
        for features, values, shap in arrays:
            feature = features[i]
            if not isinstance(feature, str):
                continue
            phrase = phrases.get(feature, f"{feature} {{value}}").format(value=values[i])
            (up if float(shap[i]) >= 0 else down).append(phrase)
        parts = ([f"raises the chance: {'; '.join(up)}"] if up else []) + (
            [f"lowers it: {'; '.join(down)}"] if down else [])
        texts[i] = " | ".join(parts)
    return texts


def export_rows(scored: pd.DataFrame, capacity: int | None) -> pd.DataFrame:
    """One day's (or range's) scored leads as the CRM's rows, best first within each day."""
    ranked = rank_within_day(scored, capacity)
    rows = pd.DataFrame({
        LEAD_ID: ranked[LEAD_ID].astype(str).to_numpy(),
        DAY: pd.to_datetime(ranked[CREATED_DATE]).dt.strftime("%Y-%m-%d").to_numpy(),
        CREATED_DATE: pd.to_datetime(ranked[CREATED_DATE]).to_numpy(),
        "score": ranked["score"].astype("int64").to_numpy(),
        "bucket": ranked["bucket"].astype(str).to_numpy(),
        DAY_RANK: ranked[DAY_RANK].to_numpy(),
        IN_CAPACITY: ranked[IN_CAPACITY].to_numpy(),
        TOP_REASONS: reasons_in_words(ranked),
        "model_version": ranked["model_version"].astype(str).to_numpy(),
        "scored_at": pd.to_datetime(ranked["scored_at"], utc=True).dt.tz_convert(None).to_numpy(),
    })
    return rows.sort_values([DAY, DAY_RANK], kind="stable").reset_index(drop=True)


def to_csv_bytes(rows: pd.DataFrame) -> bytes:
    """The outbox file: plain CSV, UTF-8, ISO timestamps, the export's columns in order."""
    buffer = io.StringIO()
    rows[list(EXPORT_COLUMNS)].to_csv(buffer, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    return buffer.getvalue().encode("utf-8")


def changes(before: pd.DataFrame, after: pd.DataFrame) -> dict:
    """What a rewrite of some days changed: leads added, removed, with another bucket or score or
    version; the bucket transitions (old -> new, counts); the share of in-capacity leads that changed."""
    old = before.set_index(LEAD_ID) if len(before) else pd.DataFrame(columns=list(EXPORT_COLUMNS)).set_index(LEAD_ID)
    new = after.set_index(LEAD_ID)
    both = new.index.intersection(old.index)
    moved = old.loc[both, "bucket"].astype(str) != new.loc[both, "bucket"].astype(str)
    rescored = old.loc[both, "score"].astype("int64") != new.loc[both, "score"].astype("int64")
    versioned = old.loc[both, "model_version"].astype(str) != new.loc[both, "model_version"].astype(str)
    changed = moved | rescored
    transitions = (pd.DataFrame({"old_bucket": old.loc[both, "bucket"].astype(str),
                                 "new_bucket": new.loc[both, "bucket"].astype(str)})
                   .value_counts().rename("leads").reset_index()
                   .sort_values(["old_bucket", "new_bucket"]).reset_index(drop=True))
    inside = new.loc[both, IN_CAPACITY].astype(bool) | old.loc[both, IN_CAPACITY].astype(bool)
    swapped = inside & (new.loc[both, IN_CAPACITY].astype(bool) != old.loc[both, IN_CAPACITY].astype(bool))
    return {
        "leads": int(len(new)), "added": int(len(new.index.difference(old.index))),
        "removed": int(len(old.index.difference(new.index))),
        "bucket_changed": int(moved.sum()), "score_changed": int(rescored.sum()),
        "version_changed": int(versioned.sum()), "changed": int(changed.sum()),
        "bucket_changed_share": float(moved.mean()) if len(both) else 0.0,
        "in_capacity_changed_share": float(swapped.sum() / inside.sum()) if inside.sum() else 0.0,
        "transitions": transitions,
        "changed_leads": sorted(str(i) for i in changed[changed].index),
    }


def replace_days(engine, days: Sequence[str], rows: pd.DataFrame) -> pd.DataFrame:
    """Replace the table's rows of ``days`` with ``rows`` in one transaction; returns the rows they
    replaced. A sync reading the table sees the old day or the new one, never half of each."""
    import sqlalchemy as sa

    metadata = sa.MetaData()
    table = sa.Table(
        TABLE, metadata,
        sa.Column(LEAD_ID, sa.String(200), primary_key=True),
        sa.Column(DAY, sa.String(10), nullable=False, index=True),
        sa.Column(CREATED_DATE, sa.DateTime, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("bucket", sa.String(10), nullable=False),
        sa.Column(DAY_RANK, sa.Integer, nullable=False),
        sa.Column(IN_CAPACITY, sa.Boolean, nullable=False),
        sa.Column(TOP_REASONS, sa.Text, nullable=False),
        sa.Column("model_version", sa.String(40), nullable=False),
        sa.Column("scored_at", sa.DateTime, nullable=False),
    )
    metadata.create_all(engine, checkfirst=True)
    days = sorted(set(days))
    with engine.begin() as connection:
        found = connection.execute(sa.select(table).where(table.c[DAY].in_(days))).mappings().all()
        before = pd.DataFrame([dict(r) for r in found], columns=list(EXPORT_COLUMNS))
        connection.execute(table.delete().where(table.c[DAY].in_(days)))
        ids = rows[LEAD_ID].tolist()  # a lead exported under another day before (its day was corrected) moves
        for start in range(0, len(ids), 500):
            connection.execute(table.delete().where(table.c[LEAD_ID].in_(ids[start:start + 500])))
        records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                   for row in rows[list(EXPORT_COLUMNS)].to_dict(orient="records")]
        for record in records:
            record[CREATED_DATE] = pd.Timestamp(record[CREATED_DATE]).to_pydatetime()
            record["scored_at"] = pd.Timestamp(record["scored_at"]).to_pydatetime()
        if records:
            connection.execute(table.insert(), records)
    return before
