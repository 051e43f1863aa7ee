"""Reading lead files: cheap sniffing for the sensor, full parsing with row-level rules.

A file is *sniffed* (header and the ``created_date`` column only, streamed with the csv
module) when it arrives, which is enough to accept or quarantine it and to know which day
partitions it touches. It is *parsed* in full inside a run: every row is either accepted
(typed, with a stable ``lead_id``) or rejected with the rule it broke. Row numbers count the
header as row 1, as a spreadsheet does.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import IO

import numpy as np
import pandas as pd
from upath import UPath

from lead_assets.core import schema
from lead_assets.core.schema import CITY, CREATED_DATE, LABEL, LEAD_ID, REFERRED

DELIMITERS = (",", ";", "\t", "|")
MAX_COUNT = 1000.0  # a lead cannot drop 1,000 courses or click 1,000 times: a broken export
_DATE_PREFIX = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*$")
_LEAD_ID_HASH_KEY = "lead_assets_v1!!"
csv.field_size_limit(16 * 1024 * 1024)


class LeadFileError(ValueError):
    """A whole file cannot be ingested; ``rule`` names why, ``detail`` says it in plain words."""

    def __init__(self, file: str, rule: str, detail: str, rows: list[int] | None = None):
        self.file, self.rule, self.detail, self.rows = file, rule, detail, rows or []
        super().__init__(f"{file}: {rule}: {detail}")

    def as_dict(self) -> dict:
        return {"file": self.file, "rule": self.rule, "detail": self.detail, "rows": self.rows}


@dataclass
class FileFormat:
    encoding: str
    delimiter: str
    compressed: bool
    columns: list[str]
    index_column: bool


@dataclass
class Sniff:
    """What the sensor learns from one file without parsing it in full."""

    name: str
    format: FileFormat
    rows: int
    day_counts: dict[str, int]
    bad_date_rows: list[int] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)

    @property
    def days(self) -> list[str]:
        return sorted(self.day_counts)


def _open_binary(path: UPath) -> IO[bytes]:
    raw = path.open("rb")
    magic = raw.read(2)
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw


def detect_format(path: UPath, name: str | None = None) -> FileFormat:
    """Compression, encoding, delimiter and header of a lead file, or a LeadFileError."""
    name = name or path.name
    try:
        with _open_binary(path) as handle:
            head = handle.read(64 * 1024)
            compressed = isinstance(handle, gzip.GzipFile)
    except (OSError, EOFError) as exc:
        raise LeadFileError(name, "unreadable_file", f"cannot read the file: {exc}") from exc
    if not head.strip():
        raise LeadFileError(name, "empty_file", "the file is empty")
    if b"\x00" in head:
        raise LeadFileError(name, "not_a_csv", "the file holds binary data, not CSV text")
    encoding = _detect_encoding(path)
    text = head.decode(encoding, errors="replace")
    header_line = text.splitlines()[0] if text.splitlines() else ""
    delimiter = max(DELIMITERS, key=lambda d: _known_fields(header_line, d))
    columns = next(csv.reader([header_line], delimiter=delimiter))
    columns = [c.strip().lstrip("\ufeff") for c in columns]
    index_column = bool(columns) and columns[0] in ("", "Unnamed: 0")
    if index_column:
        columns = columns[1:]
    missing = [c for c in schema.required_columns() if c not in columns]
    if missing:
        raise LeadFileError(name, "missing_columns", f"required column(s) missing: {', '.join(missing)}")
    return FileFormat(encoding, delimiter, compressed, columns, index_column)


def _detect_encoding(path: UPath) -> str:
    """UTF-8 (with or without BOM) when every byte decodes; otherwise Latin-1, which always does."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with _open_binary(path) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8-sig"


def _known_fields(header_line: str, delimiter: str) -> int:
    fields = {f.strip().strip('"').lstrip("\ufeff") for f in header_line.split(delimiter)}
    return len(fields & set(schema.raw_columns()))


def _text_reader(path: UPath, fmt: FileFormat):
    handle = _open_binary(path)
    text = io.TextIOWrapper(handle, encoding=fmt.encoding, errors="replace", newline="")
    return text, csv.reader(text, delimiter=fmt.delimiter)


def sniff_file(path: UPath, first_day: date, today: date, name: str | None = None) -> Sniff:
    """Count rows per day from ``created_date`` alone; rows with no usable date are listed.

    A day is usable when it parses and falls between ``first_day`` and ``today`` inclusive.
    """
    name = name or path.name
    fmt = detect_format(path, name)
    first, last = first_day.isoformat(), today.isoformat()
    text, reader = _text_reader(path, fmt)
    day_counts: dict[str, int] = {}
    bad: list[int] = []
    valid_days: dict[str, bool] = {}
    rows = 0
    with text:
        next(reader, None)
        position = fmt.columns.index(CREATED_DATE) + int(fmt.index_column)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            rows += 1
            value = row[position] if position < len(row) else ""
            match = _DATE_PREFIX.match(value)
            day = match.group(1) if match else None
            ok = valid_days.get(day) if day else False
            if ok is None:
                ok = _is_date(day) and first <= day <= last
                valid_days[day] = ok
            if ok:
                day_counts[day] = day_counts.get(day, 0) + 1
            else:
                bad.append(rows + 1)
    if rows == 0:
        raise LeadFileError(name, "no_rows", "the file has a header but no lead rows")
    if not day_counts:
        raise LeadFileError(
            name, "no_valid_dates",
            f"none of the {rows} rows has a created_date between {first} and {last}",
            bad[:100],
        )
    unknown = [c for c in fmt.columns if c not in schema.raw_columns() and c != LEAD_ID]
    return Sniff(name, fmt, rows, day_counts, bad, unknown)


def _is_date(day: str) -> bool:
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


@dataclass
class ParsedFile:
    """Every row of one file, either accepted (typed) or rejected (with its rule)."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame
    rows: int


REJECTED_COLUMNS = ("source_file", "source_sha256", "source_row", "day", "rule", "column", "detail", "raw")


def read_raw_strings(path: UPath, fmt: FileFormat) -> pd.DataFrame:
    """The file as strings, one row per record; quoted commas and newlines survive."""
    with _open_binary(path) as handle:
        frame = pd.read_csv(
            handle, sep=fmt.delimiter, encoding=fmt.encoding, encoding_errors="replace", dtype=str,
            keep_default_na=False, skip_blank_lines=True, engine="c",
            index_col=0 if fmt.index_column else None,
        )
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    return frame.reset_index(drop=True)


def parse_lead_file(
    path: UPath, *, name: str, sha256: str, first_day: date, today: date, fmt: FileFormat | None = None
) -> ParsedFile:
    """Apply the row rules to a whole file; ``accepted`` + ``rejected`` rows = rows read.

    A lead cannot be created after now (UTC) nor after the end of ``today``.
    """
    fmt = fmt or detect_format(path, name)
    text = read_raw_strings(path, fmt)
    rows = len(text)
    source_row = np.arange(2, rows + 2)
    reasons = _RowReasons(rows)

    created = pd.to_datetime(text[CREATED_DATE].str.strip(), format="ISO8601", errors="coerce")
    reasons.add(created.isna().to_numpy(), "unparseable_date", CREATED_DATE, "created_date is not a date")
    day = created.dt.normalize()
    reasons.add((day < pd.Timestamp(first_day)).to_numpy(), "date_before_start", CREATED_DATE,
                f"created_date is before the first partition day {first_day}")
    now = min(pd.Timestamp.now(tz="UTC").tz_localize(None), pd.Timestamp(today) + pd.Timedelta(days=1))
    reasons.add((created > now).to_numpy(), "date_in_future", CREATED_DATE,
                f"created_date is in the future (after {now:%Y-%m-%d %H:%M:%S} UTC)")

    typed = pd.DataFrame({CREATED_DATE: created})
    typed[CITY] = _blank_to_na(text[CITY]).str.strip().str.lower()
    for column in schema.LEVEL_COLUMNS:
        typed[column] = _blank_to_na(text[column]).str.strip()
    for column in schema.numeric_columns():
        raw = _blank_to_na(text[column]) if column in text.columns else pd.Series(pd.NA, index=text.index, dtype="string")
        value = _to_float(raw)
        reasons.add((raw.notna() & value.isna()).to_numpy(dtype=bool), "not_a_number", column, f"{column} is not a number")
        reasons.add((value < 0).to_numpy(), "negative_count", column, f"{column} is negative")
        reasons.add((value > MAX_COUNT).to_numpy(), "absurd_count", column, f"{column} is above {MAX_COUNT:g}")
        typed[column] = value.astype("float64")
    reasons.add((typed[REFERRED].notna() & ~typed[REFERRED].isin([0.0, 1.0])).to_numpy(),
                "not_binary", REFERRED, "referred_lead must be 0 or 1")
    if LABEL in text.columns:
        label_raw = _blank_to_na(text[LABEL])
        label = _to_float(label_raw)
        reasons.add((label_raw.notna() & ~label.isin([0.0, 1.0])).to_numpy(dtype=bool), "label_not_binary", LABEL,
                    "app_complete_flag must be 0 or 1 (or empty when unknown)")
        typed[LABEL] = pd.array(label.where(label.isin([0.0, 1.0])), dtype="Float64").astype("Int8")
    else:
        typed[LABEL] = pd.array([pd.NA] * rows, dtype="Int8")

    given = _blank_to_na(text[LEAD_ID]).str.strip() if LEAD_ID in text.columns else None
    derived = lead_ids(typed)
    typed.insert(0, LEAD_ID, derived if given is None else given.fillna(pd.Series(derived, index=text.index)).astype(str))
    valid = ~reasons.any()
    duplicate = typed[LEAD_ID].duplicated(keep="first").to_numpy() & valid
    if duplicate.any():
        first_row = pd.Series(source_row, index=typed.index).groupby(typed[LEAD_ID]).transform("first")
        reasons.add_detail(duplicate, "duplicate_in_file", LEAD_ID,
                           "same lead as row " + first_row.astype(str).to_numpy())

    typed["source_file"] = name
    typed["source_sha256"] = sha256
    typed["source_row"] = source_row
    keep = ~reasons.any()
    rejected = reasons.frame(text, name, sha256, source_row, day)
    return ParsedFile(typed[keep].reset_index(drop=True), rejected, rows)


def lead_ids(typed: pd.DataFrame) -> np.ndarray:
    """A stable id from the lead's own fields (not the label, not the file it came in).

    The same lead dropped twice, in any file, with or without its label, gets the same id.
    """
    created = typed[CREATED_DATE].to_numpy(dtype="datetime64[ns]").view("int64")
    parts = pd.DataFrame({CREATED_DATE: created})
    parts[CITY] = typed[CITY].fillna("").astype(str)
    for column in schema.LEVEL_COLUMNS:
        parts[column] = typed[column].fillna("").astype(str)
    for column in schema.numeric_columns():
        parts[column] = typed[column].fillna(-1.0).astype("float64")
    hashed = pd.util.hash_pandas_object(parts, index=False, hash_key=_LEAD_ID_HASH_KEY).to_numpy()
    return np.char.mod("%016x", hashed.astype(np.uint64)) if len(hashed) else np.array([], dtype=str)


def _to_float(values: pd.Series) -> pd.Series:
    """Strings to float64 (NaN where empty or not a number)."""
    return pd.to_numeric(values.str.strip().astype(object), errors="coerce").astype("float64")


def _blank_to_na(values: pd.Series) -> pd.Series:
    text = values.astype("string")
    return text.mask(text.str.strip() == "")


class _RowReasons:
    """The first broken rule of every row, kept in one pass per rule (vectorised)."""

    def __init__(self, rows: int):
        self.rule = np.full(rows, None, dtype=object)
        self.column = np.full(rows, None, dtype=object)
        self.detail = np.full(rows, None, dtype=object)

    def add(self, mask: np.ndarray, rule: str, column: str, detail: str) -> None:
        self.add_detail(mask, rule, column, np.full(len(self.rule), detail, dtype=object))

    def add_detail(self, mask: np.ndarray, rule: str, column: str, detail: np.ndarray) -> None:
        new = np.asarray(mask, dtype=bool) & (self.rule == None)  # noqa: E711 (elementwise)
        self.rule[new] = rule
        self.column[new] = column
        self.detail[new] = np.asarray(detail, dtype=object)[new]

    def any(self) -> np.ndarray:
        return self.rule != None  # noqa: E711 (elementwise)

    def frame(self, text: pd.DataFrame, name: str, sha256: str, source_row: np.ndarray,
              day: pd.Series) -> pd.DataFrame:
        bad = self.any()
        raw = [json.dumps(r, ensure_ascii=False) for r in text[bad].to_dict(orient="records")]
        return pd.DataFrame({
            "source_file": name,
            "source_sha256": sha256,
            "source_row": source_row[bad],
            "day": day[bad].dt.strftime("%Y-%m-%d").astype(object).where(day[bad].notna(), None).to_numpy(),
            "rule": self.rule[bad],
            "column": self.column[bad],
            "detail": self.detail[bad],
            "raw": raw,
        }, columns=list(REJECTED_COLUMNS))
