"""Reading lead and outcome files: cheap sniffing for the sensor, full parsing with row-level rules.

Both read a file through the one reader (:mod:`lead_assets.core.inbox.reader`), so whatever landing
accepts, the parse reads. A file is *sniffed* (every row tokenized, only ``created_date``
typed) when it arrives, which is enough to accept or quarantine it and to know which day
partitions it touches. It is *parsed* in full inside a run, a chunk of rows at a time: every
row is either accepted (typed, with a stable ``lead_id``) or rejected with the rule it broke.
A row the reader cannot read (a stray quote, a row over 1 MiB) is a rejected row too, never a
failed run. Row numbers count the header as row 1, as a spreadsheet does.

The row rules (:func:`type_lead_rows`) are the one implementation for file rows and for the
records that online scoring receives (:mod:`lead_assets.core.scoring.online`): a JSON value is read as
the text a CSV cell holding it would have, then judged as a file row is.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from operator import itemgetter

import numpy as np
import pandas as pd
from pandas.core.util.hashing import combine_hash_arrays, hash_array
from upath import UPath

from lead_assets.core import clock, schema
from lead_assets.core.inbox.reader import (
    CHUNK_ROWS,
    Chunk,
    FileFormat,
    LeadFileError,
    has_markers,
    read_header,
    storable,
    text_chunks,
    undecodable_detail,
)
from lead_assets.core.schema import CITY, CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT, REFERRED

MAX_COUNT = 1000.0  # a lead cannot drop 1,000 courses or click 1,000 times: a broken export
MAX_LEAD_ID_CHARS = 128
_DATE = re.compile(
    r"^\s*(\d{4})(?:-(\d{1,2})-(\d{1,2})|(\d{2})(\d{2}))"  # 2021-07-20, 2021-7-2, 20210720
    r"(?:[ T](\d{1,2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?)?"  # [ T]10[:30[:15[.123]]]
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"  # optional UTC offset: converted to UTC
)
_LEAD_ID_HASH_KEY = "lead_assets_v1!!"
DATE_SPELLINGS = "YYYY-MM-DD, YYYY-M-D or YYYYMMDD, optional time"
LEAD_ID_RULE = (f"a lead_id is 1 to {MAX_LEAD_ID_CHARS} printable characters (letters of any script, digits, "
                "spaces inside, punctuation; no tabs, line breaks or other control characters)")


def parse_created(value: str) -> datetime | None:
    """The one definition of a date (``created_date``, ``outcome_at``): the sniff, the parse and online.

    Accepts ``YYYY-MM-DD``, ``YYYY-M-D`` and ``YYYYMMDD``, optionally followed by a time
    (``HH``, ``HH:MM``, ``HH:MM:SS[.f]``, separated by a space or ``T``) and a UTC offset
    (``Z``, ``+05:30``), which is converted to UTC. Anything else, or an impossible date, is None.
    """
    match = _DATE.match(value)
    if not match:
        return None
    year, month, day, compact_month, compact_day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year), int(month or compact_month), int(day or compact_day), int(hour or 0),
            int(minute or 0), int(second or 0), int((fraction or "0")[:6].ljust(6, "0")),
        )
    except ValueError:
        return None
    if offset and offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment


def parse_created_series(values: pd.Series) -> pd.Series:
    """``parse_created`` over a column, once per distinct value; NaT where it is not a date."""
    return pd.Series(_dates(values.astype(object).to_numpy()), index=values.index)


def _dates(values: np.ndarray) -> np.ndarray:
    """``parse_created`` of each text (None for anything else), once per distinct value, as datetime64[ns]."""
    codes, uniques = pd.factorize(values)
    parsed = [parse_created(v) if isinstance(v, str) else None for v in uniques]
    lookup = pd.to_datetime(pd.Series(parsed, dtype=object), errors="coerce").to_numpy(dtype="datetime64[ns]")
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    known = codes >= 0
    out[known] = lookup[codes[known]]
    return out


def is_lead_id(value: str) -> bool:
    """The one lead-id rule, for lead files, outcomes files and online requests (see ``LEAD_ID_RULE``)."""
    return 0 < len(value) <= MAX_LEAD_ID_CHARS and value.isprintable()


def normal_lead_id(value: str) -> str:
    """A given id as compared everywhere: stripped, in Unicode NFC (``ü`` typed two ways is one id)."""
    value = value.strip()
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def now_utc() -> pd.Timestamp:
    return pd.Timestamp(clock.now()).tz_localize(None)


def latest_allowed(today: date, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """Nothing (a lead's creation, an outcome) can happen after now (UTC) nor after the end of ``today``."""
    return min(now_utc() if now is None else now, pd.Timestamp(today) + pd.Timedelta(days=1))


# ------------------------------------------------------------------------------ the row rules
class RowReasons:
    """The first broken rule of every row (rule, column, detail), kept one rule at a time (vectorised)."""

    def __init__(self, rows: int):
        self.rule = np.full(rows, None, dtype=object)
        self.column = np.full(rows, None, dtype=object)
        self.detail = np.full(rows, None, dtype=object)

    def add(self, mask, rule: str, column: str, detail: str | Callable[[int], str]) -> None:
        """Rows in ``mask`` without a rule yet break ``rule``; ``detail`` may say it per row (index -> text)."""
        new = np.asarray(mask, dtype=bool) & (self.rule == None)  # noqa: E711 (elementwise)
        if not new.any():
            return
        self.rule[new] = rule
        self.column[new] = column
        if callable(detail):
            for i in np.flatnonzero(new):
                self.detail[i] = detail(i)
        else:
            self.detail[new] = detail

    def any(self) -> np.ndarray:
        return self.rule != None  # noqa: E711 (elementwise)


def _shown(value) -> str:
    text = repr(value)
    return storable(text if len(text) <= 60 else text[:57] + "...")


def _stripped(values: np.ndarray) -> np.ndarray:
    """Text stripped, blanks as None (a cell ``"  "`` is empty)."""
    return np.array([(v.strip() or None) if isinstance(v, str) else None for v in values], dtype=object)


def _text_rules(cells: dict[str, np.ndarray], reasons: RowReasons, suspect: np.ndarray | None) -> None:
    """Binary data (a NUL) and undecodable bytes (or lone surrogates) reject the row, naming the field.

    ``suspect``: rows that may hold either (non-ASCII or a NUL somewhere); None looks at every row.
    """
    n = len(reasons.rule)
    found: dict[str, dict[int, tuple[str, str]]] = {"binary_data": {}, "undecodable_bytes": {}}
    for i in (range(n) if suspect is None else np.flatnonzero(suspect)):
        for column, values in cells.items():
            value = values[i]
            if not isinstance(value, str) or (value.isascii() and "\x00" not in value):
                continue
            if "\x00" in value:
                found["binary_data"][i] = (column, f"{column} holds a NUL byte: binary data, not text")
                break
            if has_markers(value):
                found["undecodable_bytes"][i] = (column, f"{column} holds {undecodable_detail(value)}")
                break
    for rule, rows in found.items():
        for column in {c for c, _ in rows.values()}:
            mine = {i: d for i, (c, d) in rows.items() if c == column}
            mask = np.zeros(n, dtype=bool)
            mask[list(mine)] = True
            reasons.add(mask, rule, column, mine.__getitem__)


def _numbers(block: np.ndarray, decimal_comma: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """float64 of a block of text cells (NaN where empty or not a number) and where a cell was given
    but is not a number; each distinct text is converted once. ``decimal_comma``: a text with one
    comma and no point reads the comma as the decimal mark (``1,0`` is 1.0; ``1,000.5`` stays bad)."""
    flat = block.ravel()
    codes, uniques = pd.factorize(flat)
    texts = [u.strip() for u in uniques]
    if decimal_comma:
        texts = [t.replace(",", ".") if t.count(",") == 1 and "." not in t else t for t in texts]
    number = pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").to_numpy(dtype="float64")
    given = np.array([bool(t) for t in texts], dtype=bool)
    values = np.full(len(flat), np.nan)
    bad = np.zeros(len(flat), dtype=bool)
    known = codes >= 0
    values[known] = number[codes[known]]
    bad[known] = (given & np.isnan(number))[codes[known]]
    return values.reshape(block.shape), bad.reshape(block.shape)


def _date_rules(given: np.ndarray, column: str, reasons: RowReasons) -> np.ndarray:
    """A date column's values typed; an empty or unparseable value breaks ``unparseable_date``."""
    known = _dates(given)
    missing = pd.isna(given)
    reasons.add(~missing & np.isnat(known), "unparseable_date", column,
                lambda i: f"{column} {_shown(given[i])} is not a date ({DATE_SPELLINGS})")
    return known


def _lead_id_rule(given: np.ndarray, reasons: RowReasons) -> np.ndarray:
    """Given ids normalised (``normal_lead_id``); a given id that breaks the one id rule is ``bad_lead_id``."""
    ids = np.array([normal_lead_id(v) if isinstance(v, str) else None for v in given], dtype=object)
    bad = np.array([v is not None and not is_lead_id(v) for v in ids], dtype=bool)
    reasons.add(bad, "bad_lead_id", LEAD_ID, lambda i: f"lead_id {_shown(ids[i])} breaks the id rule: {LEAD_ID_RULE}")
    return ids


def _label_rule(text: np.ndarray, reasons: RowReasons, required: bool,
                decimal_comma: bool = False) -> np.ndarray:
    """app_complete_flag as 0/1 (nullable Int8); empty is allowed in a lead file, not in an outcomes file."""
    value = _numbers(text.reshape(-1, 1), decimal_comma)[0][:, 0]
    given = np.array([isinstance(v, str) and bool(v.strip()) for v in text], dtype=bool)
    if required:
        reasons.add(~given, "label_missing", LABEL, "an outcome row needs app_complete_flag (0 or 1)")
    reasons.add(given & ~np.isin(value, [0.0, 1.0]), "label_not_binary", LABEL,
                lambda i: f"app_complete_flag must be 0 or 1{'' if required else ' (or empty when unknown)'}, "
                          f"not {_shown(text[i])}")
    return pd.array(np.where(np.isin(value, [0.0, 1.0]), value, np.nan), dtype="Float64").astype("Int8")


def type_lead_rows(cells: dict[str, np.ndarray], reasons: RowReasons, *, first_day: date, today: date,
                   now: pd.Timestamp | None = None, suspect: np.ndarray | None = None,
                   numbers: np.ndarray | None = None, seen: dict | None = None,
                   duplicate_rule: str = "duplicate_in_file", unit: str = "row",
                   decimal_comma: bool = False) -> pd.DataFrame:
    """The row rules of a lead: every row typed, and the first rule each broken row breaks in ``reasons``.

    ``cells``: column -> text per row (None or blank: empty), the required columns present;
    others (interactions, label, outcome_at, lead_id) optional. ``numbers``: how each row is
    named in details (a file's row numbers; a request's record numbers). ``seen`` carries the
    ids accepted in earlier chunks of one file (id -> row), so a duplicate is found across chunks.
    ``decimal_comma``: numbers may use a comma as the decimal mark (a ``;``-separated file).
    The rules, in the order a row is judged: binary data, undecodable bytes; ``created_date``
    empty or unparseable, before ``first_day``, after now or after ``today``; counts not a
    number, negative, above ``MAX_COUNT``; referral not 0/1; label not 0/1; ``outcome_at`` not
    a date; a given ``lead_id`` that breaks the id rule; the same lead as an earlier row.
    """
    n = len(reasons.rule)
    numbers = np.arange(n) if numbers is None else np.asarray(numbers)
    _text_rules(cells, reasons, suspect)
    created_text = _stripped(cells[CREATED_DATE])
    reasons.add(pd.isna(created_text), "unparseable_date", CREATED_DATE,
                "created_date is empty: every lead needs the time it was created")
    created = _date_rules(created_text, CREATED_DATE, reasons)
    day = created.astype("datetime64[D]")
    reasons.add(day < np.datetime64(first_day), "date_before_start", CREATED_DATE,
                lambda i: f"created_date {_shown(created_text[i])} is before the first partition day {first_day}")
    latest = latest_allowed(today, now)
    reasons.add(created > latest.to_datetime64(), "date_in_future", CREATED_DATE,
                lambda i: f"created_date {_shown(created_text[i])} is in the future "
                          f"(after {latest:%Y-%m-%d %H:%M:%S} UTC)")

    typed = {CREATED_DATE: created,
             CITY: np.array([c.lower() if c is not None else None for c in _stripped(cells[CITY])], dtype=object)}
    for column in schema.LEVEL_COLUMNS:
        typed[column] = _stripped(cells[column])
    numeric = schema.numeric_columns()
    present = [c for c in numeric if c in cells]
    values = np.full((n, len(numeric)), np.nan)
    if present and n:
        block, bad = _numbers(np.column_stack([cells[c] for c in present]), decimal_comma)
        for j, column in enumerate(present):
            k = numeric.index(column)
            values[:, k] = block[:, j]
            with np.errstate(invalid="ignore"):
                reasons.add(bad[:, j], "not_a_number", column,
                            lambda i, c=column: f"{c} is not a number: {_shown(cells[c][i])}")
                reasons.add(block[:, j] < 0, "negative_count", column,
                            lambda i, c=column, j=j: f"{c} is negative: {block[i, j]:g}")
                reasons.add(block[:, j] > MAX_COUNT, "absurd_count", column,
                            lambda i, c=column, j=j: f"{c} is above {MAX_COUNT:g}: {block[i, j]:g}")
    referred = values[:, numeric.index(REFERRED)]
    reasons.add(~np.isnan(referred) & ~np.isin(referred, [0.0, 1.0]), "not_binary", REFERRED,
                lambda i: f"referred_lead must be 0 or 1, not {referred[i]:g}")
    for k, column in enumerate(numeric):
        typed[column] = values[:, k]
    extra = {LABEL: (_label_rule(cells[LABEL], reasons, False, decimal_comma) if LABEL in cells
                     else pd.array([pd.NA] * n, dtype="Int8"))}
    if OUTCOME_AT in cells:  # a labelled re-export may say when each label became known
        extra[OUTCOME_AT] = _date_rules(_stripped(cells[OUTCOME_AT]), OUTCOME_AT, reasons)
    given = _lead_id_rule(_stripped(cells[LEAD_ID]), reasons) if LEAD_ID in cells else np.full(n, None, dtype=object)
    valid = ~reasons.any()
    ids = given.copy()
    derive = valid & pd.isna(given)
    if derive.any():  # hashing every field costs more than the rest: only for rows that need it
        ids[derive] = lead_ids({c: v[derive] for c, v in typed.items()})
    _duplicates(ids, valid, numbers, reasons, seen, duplicate_rule, unit)
    return pd.DataFrame({LEAD_ID: ids, **typed, **extra})  # built once: each insert copies the frame


def _duplicates(ids: np.ndarray, valid: np.ndarray, numbers: np.ndarray, reasons: RowReasons,
                seen: dict | None, rule: str, unit: str) -> None:
    """A valid row repeating the id of an earlier valid row (this chunk or an earlier one) is a duplicate."""
    earlier = {} if seen is None else seen
    first = np.full(len(ids), -1, dtype=np.int64)
    for i in np.flatnonzero(valid):
        found = earlier.get(ids[i])
        if found is None:
            earlier[ids[i]] = int(numbers[i])
        else:
            first[i] = found
    reasons.add(first >= 0, rule, LEAD_ID, lambda i: f"same lead as {unit} {first[i]}")


SMALL_HASH = 64


def _hash_numbers(block: np.ndarray) -> np.ndarray:
    """``hash_array`` of each row of a float64 block at once (pandas' own mixing of a number's 64 bits)."""
    vals = block.view("u8").copy()
    vals ^= vals >> np.uint64(30)
    vals *= np.uint64(0xBF58476D1CE4E5B9)
    vals ^= vals >> np.uint64(27)
    vals *= np.uint64(0x94D049BB133111EB)
    vals ^= vals >> np.uint64(31)
    return vals


def _missing(value) -> bool:
    """What ``fillna`` fills: None, NaN, NA, NaT."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def lead_ids(typed: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
    """A stable id from the lead's own fields (not the label, not the file it came in).

    The same lead dropped twice, in any file, with or without its label, gets the same id. It is
    ``pd.util.hash_pandas_object`` of the fields as a frame (created_date as int64 nanoseconds,
    text with "" for empty, counts with -1 for empty), computed column by column with pandas'
    own hash functions: the same values, without building a frame (a lead scored online pays
    about 2 ms instead of 19). ``typed``: a frame or its columns as arrays.
    """
    if not len(typed[CREATED_DATE]):
        return np.array([], dtype=str)
    optional = set(schema.reference().interaction_columns)
    columns = [np.asarray(typed[CREATED_DATE], dtype="datetime64[ns]").view("int64")]
    for column in (CITY, *schema.LEVEL_COLUMNS):
        columns.append(np.array(["" if _missing(v) else str(v) for v in np.asarray(typed[column], dtype=object)],
                                dtype=object))
    numeric = schema.numeric_columns()
    block = np.empty((len(numeric), len(columns[0])), dtype="float64")
    for k, column in enumerate(numeric):
        given = typed[column]
        value = (given.to_numpy(dtype="float64", na_value=np.nan) if isinstance(given, pd.Series)
                 else np.asarray(given, dtype="float64"))
        if column in optional:  # an export that leaves the column out means 0: as empty, as before
            value = np.where(value == 0.0, np.nan, value)
        block[k] = np.where(np.isnan(value), -1.0, value)
    small = len(columns[0]) <= SMALL_HASH  # categorizing (the default) pays off only for many rows: same hashes
    hashes = [hash_array(c, hash_key=_LEAD_ID_HASH_KEY, categorize=not small) for c in columns]
    hashes.extend(_hash_numbers(block))
    hashed = combine_hash_arrays(iter(hashes), len(hashes))
    return np.char.mod("%016x", hashed.astype(np.uint64))


def json_cells(values) -> tuple[np.ndarray, np.ndarray]:
    """JSON values (a request's records) as the text a CSV cell would hold, and where one is not a
    value at all (an object or array): ``true`` reads as ``"true"``, ``3`` as ``"3"``, null/NaN as empty."""
    out = np.empty(len(values), dtype=object)
    wrong = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if isinstance(value, str):
            out[i] = value
        elif value is None or value is pd.NA or (isinstance(value, float | np.floating) and math.isnan(value)):
            out[i] = None
        elif isinstance(value, bool | np.bool_):
            out[i] = "true" if value else "false"
        elif isinstance(value, int | np.integer):
            out[i] = str(int(value))
        elif isinstance(value, float | np.floating):
            out[i] = repr(float(value))
        else:
            out[i], wrong[i] = None, True
    return out, wrong


# ---------------------------------------------------------------------------------- formats
def known_columns() -> set[str]:
    return {*schema.raw_columns(), *schema.outcome_columns()}


def detect_format(path: UPath, name: str | None = None) -> FileFormat:
    """Compression, encoding, delimiter, header and kind of a file, or a LeadFileError naming the problem."""
    name = name or path.name
    fmt = read_header(path, name, known_columns())
    if schema.is_outcome_header(fmt.columns):
        fmt.kind = "outcomes"
        return fmt
    missing = [c for c in schema.required_columns() if c not in fmt.columns]
    if missing:
        raise LeadFileError(name, "missing_columns", f"required column(s) missing: {', '.join(missing)} "
                                                     f"(an outcomes file has {LEAD_ID} and {LABEL} and no {CREATED_DATE}; "
                                                     f"read as {fmt.encoding.label}, delimiter {fmt.delimiter!r})")
    return fmt


def _cells(chunk: Chunk, fmt: FileFormat, every_column: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A chunk's records as text per named column (short rows padded with empty fields) and which rows
    carry non-empty fields beyond the header's."""
    width, n = fmt.width, len(chunk.fields)
    extra = np.zeros(n, dtype=bool)
    rows = chunk.fields
    if any(len(r) != width for r in rows):
        rows = list(rows)
        for i, r in enumerate(rows):
            if len(r) > width:
                extra[i] = any(f.strip() for f in r[width:])
                rows[i] = r[:width]
            elif len(r) < width:
                rows[i] = r + [""] * (width - len(r))
    matrix = np.empty((n, width), dtype=object)
    if n:
        matrix[:] = rows
    offset = int(fmt.index_column)
    known = known_columns()
    cells = {c: matrix[:, j + offset] for j, c in enumerate(fmt.columns) if every_column or c in known}
    return cells, extra


# ----------------------------------------------------------------------------------- sniffing
@dataclass
class Sniff:
    """What the sensor learns from one file without typing it in full."""

    name: str
    format: FileFormat
    rows: int
    day_counts: dict[str, int]
    bad_date_rows: list[int] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)
    broken_rows: int = 0

    @property
    def days(self) -> list[str]:
        return sorted(self.day_counts)


def sniff_file(path: UPath, first_day: date, today: date, name: str | None = None) -> Sniff:
    """Count rows per day from ``created_date`` alone; rows with no usable date are listed.

    A day is usable when it parses and falls between ``first_day`` and ``today`` inclusive. A
    row the reader cannot read has no day (the parse rejects it, with the same row number).
    """
    name = name or path.name
    fmt = detect_format(path, name)
    if fmt.kind == "outcomes":
        return _sniff_outcomes(path, fmt, name)
    first, last = np.datetime64(first_day), np.datetime64(today)
    position = fmt.columns.index(CREATED_DATE) + int(fmt.index_column)
    day_counts: dict[str, int] = {}
    bad: list[int] = []
    rows = broken = 0
    for chunk in text_chunks(path, fmt, name):
        rows += len(chunk)
        broken += len(chunk.broken)
        bad += [b.row for b in chunk.broken]
        try:
            created = np.array(list(map(itemgetter(position), chunk.fields)), dtype=object)
        except IndexError:  # a short row: its created_date is empty
            created = np.array([f[position] if position < len(f) else "" for f in chunk.fields], dtype=object)
        day = _dates(created).astype("datetime64[D]")  # parse_created reads " 2021-07-05 " and refuses ""
        usable = ~np.isnat(day) & (day >= first) & (day <= last)
        for key, count in zip(*np.unique(day[usable], return_counts=True)):
            key = str(key)
            day_counts[key] = day_counts.get(key, 0) + int(count)
        bad += np.asarray(chunk.rows)[~usable].tolist()
    if rows == 0:
        raise LeadFileError(name, "no_rows", "the file has a header but no lead rows")
    if not day_counts:
        raise LeadFileError(name, "no_valid_dates", _no_dates(rows, broken, first_day, today), sorted(bad)[:100])
    unknown = [c for c in fmt.columns if c not in schema.raw_columns() and c not in (LEAD_ID, OUTCOME_AT)]
    return Sniff(name, fmt, rows, day_counts, sorted(bad), unknown, broken)


def _no_dates(rows: int, broken: int, first_day: date, today: date) -> str:
    if broken == rows:
        return f"none of the {rows} rows can be read as CSV (see the rows listed): this is not a lead export"
    return (f"none of the {rows} rows has a created_date between {first_day} and {today}"
            + (f" ({broken} cannot be read at all)" if broken else ""))


def _sniff_outcomes(path: UPath, fmt: FileFormat, name: str) -> Sniff:
    """An outcomes file has no days of its own: they are the days of the leads it names, known in a run."""
    rows = broken = 0
    for chunk in text_chunks(path, fmt, name):
        rows += len(chunk)
        broken += len(chunk.broken)
    if rows == 0:
        raise LeadFileError(name, "no_rows", "the file has a header but no outcome rows")
    if broken == rows:
        raise LeadFileError(name, "no_valid_rows", f"none of the {rows} rows can be read as CSV")
    unknown = [c for c in fmt.columns if c not in schema.outcome_columns()]
    return Sniff(name, fmt, rows, {}, [], unknown, broken)


# ------------------------------------------------------------------------------------ parsing
@dataclass
class ParsedFile:
    """Every row of one file, either accepted (typed) or rejected (with its rule)."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame
    rows: int


@dataclass
class ParsedChunk:
    """One chunk of a file's rows: accepted (typed), rejected, and how many rows it held."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame
    rows: int


REJECTED_COLUMNS = ("source_file", "source_sha256", "source_row", "day", "rule", "column", "detail", "raw")


def _rejected(chunk: Chunk, cells: dict[str, np.ndarray], numbers: np.ndarray, reasons: RowReasons,
              day: np.ndarray, name: str, sha256: str) -> pd.DataFrame:
    """A chunk's rejected rows: those the rules refused (raw: their fields as JSON) and those the reader
    could not read (raw: the line, no day), in row order."""
    bad = np.flatnonzero(reasons.any())
    raw = [storable(json.dumps({c: v[i] for c, v in cells.items()}, ensure_ascii=False)) for i in bad]
    days = np.datetime_as_string(day[bad], unit="D").astype(object)
    days[np.isnat(day[bad])] = None
    frame = pd.DataFrame({
        "source_file": name, "source_sha256": sha256,
        "source_row": np.asarray(numbers, dtype="int64")[bad] if len(bad) else np.array([], dtype="int64"),
        "day": days, "rule": reasons.rule[bad], "column": reasons.column[bad],
        "detail": [storable(d) for d in reasons.detail[bad]], "raw": raw,
    }, columns=list(REJECTED_COLUMNS))
    if chunk.broken:
        unread = pd.DataFrame({
            "source_file": name, "source_sha256": sha256,
            "source_row": np.array([b.row for b in chunk.broken], dtype="int64"), "day": None,
            "rule": [b.rule for b in chunk.broken], "column": None,
            "detail": [b.detail for b in chunk.broken], "raw": [b.raw for b in chunk.broken],
        }, columns=list(REJECTED_COLUMNS))
        frame = pd.concat([frame, unread], ignore_index=True).sort_values("source_row", kind="stable")
    return frame.reset_index(drop=True)


def parse_lead_chunks(path: UPath, *, name: str, sha256: str, first_day: date, today: date,
                      fmt: FileFormat | None = None, chunk_rows: int = CHUNK_ROWS) -> Iterator[ParsedChunk]:
    """Apply the row rules to a file a chunk at a time (memory follows the chunk, not the file).

    A lead cannot be created after now (UTC) nor after the end of ``today``. A rejected row
    keeps the day it belongs to, or none when its date is missing or outside the partitions, or
    when the reader could not read it (such rows are kept per file, see ``raw_leads``).
    """
    fmt = fmt or detect_format(path, name)
    now = now_utc()
    seen: dict[str, int] = {}
    for chunk in text_chunks(path, fmt, name, chunk_rows):
        cells, extra = _cells(chunk, fmt)
        numbers = np.asarray(chunk.rows, dtype="int64")
        reasons = RowReasons(len(numbers))
        reasons.add(extra, "wrong_field_count", "", f"the row has more fields than the header's {fmt.width}")
        typed = type_lead_rows(cells, reasons, first_day=first_day, today=today, now=now,
                               suspect=np.asarray(chunk.suspect, dtype=bool), numbers=numbers, seen=seen,
                               decimal_comma=fmt.decimal_comma)
        day = typed[CREATED_DATE].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
        day = np.where((day < np.datetime64(first_day)) | (day > np.datetime64(today)), np.datetime64("NaT"), day)
        typed["source_file"] = name
        typed["source_sha256"] = sha256
        typed["source_row"] = numbers
        keep = ~reasons.any()
        accepted = typed[keep].reset_index(drop=True)
        for column in (CITY, *schema.LEVEL_COLUMNS):
            accepted[column] = _shared_strings(accepted[column].to_numpy(dtype=object))
        yield ParsedChunk(accepted, _rejected(chunk, cells, numbers, reasons, day, name, sha256), len(chunk))


def _shared_strings(values: np.ndarray) -> np.ndarray:
    """The same text as one string object (a city repeated 10,000 times is stored once in memory)."""
    codes, uniques = pd.factorize(values)
    out = np.asarray(uniques, dtype=object)[np.maximum(codes, 0)] if len(uniques) else np.full(len(values), None)
    out[codes < 0] = None
    return out


def parse_lead_file(path: UPath, *, name: str, sha256: str, first_day: date, today: date,
                    fmt: FileFormat | None = None) -> ParsedFile:
    """Every row of a lead file, accepted or rejected: ``accepted`` + ``rejected`` rows = rows read."""
    return _collect(parse_lead_chunks(path, name=name, sha256=sha256, first_day=first_day, today=today, fmt=fmt))


def _collect(chunks: Iterator[ParsedChunk]) -> ParsedFile:
    accepted, rejected, rows = [], [], 0
    for part in chunks:
        accepted.append(part.accepted)
        rejected.append(part.rejected)
        rows += part.rows
    if not accepted:
        return ParsedFile(pd.DataFrame(), pd.DataFrame(columns=list(REJECTED_COLUMNS)), 0)
    return ParsedFile(pd.concat(accepted, ignore_index=True), _concat_rejected(rejected), rows)


def _concat_rejected(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(REJECTED_COLUMNS))


def parse_outcome_chunks(path: UPath, *, name: str, sha256: str, today: date, fmt: FileFormat | None = None,
                         chunk_rows: int = CHUNK_ROWS) -> Iterator[ParsedChunk]:
    """Apply the outcome rules to a narrow file a chunk at a time.

    Accepted rows are outcome events (``lead_id``, ``app_complete_flag``, ``outcome_at`` or
    empty); which lead and day each attaches to is decided later, against the leads ingested.
    """
    fmt = fmt or detect_format(path, name)
    latest = latest_allowed(today)
    for chunk in text_chunks(path, fmt, name, chunk_rows):
        cells, extra = _cells(chunk, fmt)
        cells = {c: v for c, v in cells.items() if c in schema.outcome_columns()}
        numbers = np.asarray(chunk.rows, dtype="int64")
        n = len(numbers)
        reasons = RowReasons(n)
        reasons.add(extra, "wrong_field_count", "", f"the row has more fields than the header's {fmt.width}")
        _text_rules(cells, reasons, np.asarray(chunk.suspect, dtype=bool))
        ids = _lead_id_rule(_stripped(cells[LEAD_ID]), reasons)
        reasons.add(pd.isna(ids), "missing_lead_id", LEAD_ID, "an outcome needs the lead_id it is for")
        label = _label_rule(cells[LABEL], reasons, True, fmt.decimal_comma)
        if OUTCOME_AT in cells:
            known = _date_rules(_stripped(cells[OUTCOME_AT]), OUTCOME_AT, reasons)
            reasons.add(known > latest.to_datetime64(), "date_in_future", OUTCOME_AT,
                        lambda i: f"outcome_at {_shown(cells[OUTCOME_AT][i])} is in the future "
                                  f"(after {latest:%Y-%m-%d %H:%M:%S} UTC)")
        else:
            known = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        events = pd.DataFrame({LEAD_ID: ids, LABEL: label, OUTCOME_AT: known, "source_file": name,
                               "source_sha256": sha256, "source_row": numbers})
        keep = ~reasons.any()
        no_day = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
        yield ParsedChunk(events[keep].reset_index(drop=True),
                          _rejected(chunk, cells, numbers, reasons, no_day, name, sha256), len(chunk))


def parse_outcome_file(path: UPath, *, name: str, sha256: str, today: date,
                       fmt: FileFormat | None = None) -> ParsedFile:
    """Every row of an outcomes file, accepted or rejected: ``accepted`` + ``rejected`` rows = rows read."""
    return _collect(parse_outcome_chunks(path, name=name, sha256=sha256, today=today, fmt=fmt))


def read_raw_strings(path: UPath, fmt: FileFormat) -> pd.DataFrame:
    """The rows the reader can read, as text per column (for tools that type a file themselves)."""
    frames = [pd.DataFrame(_cells(chunk, fmt, every_column=True)[0], columns=fmt.columns)
              for chunk in text_chunks(path, fmt, path.name)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=fmt.columns, dtype=object)


def first_day_setting() -> date:
    """The first partition day: ``LEAD_ASSETS_START_DATE`` (default 2021-07-01), as the partitions use it."""
    return date.fromisoformat((os.environ.get("LEAD_ASSETS_START_DATE") or "").strip() or schema.DEFAULT_FIRST_DAY)
