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
import os
import re
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import IO

import numpy as np
import pandas as pd
from upath import UPath

from lead_assets.core import schema
from lead_assets.core.schema import CITY, CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT, REFERRED

DELIMITERS = (",", ";", "\t", "|")
MAX_COUNT = 1000.0  # a lead cannot drop 1,000 courses or click 1,000 times: a broken export
MAX_FIELD_BYTES = 16 * 1024 * 1024  # no lead field is 16 MiB: a broken quote swallowed the file
DEFAULT_MAX_INFLATED_BYTES = 1 << 30  # a file that decompresses past this is refused (gzip bomb)
_DATE = re.compile(
    r"^\s*(\d{4})(?:-(\d{1,2})-(\d{1,2})|(\d{2})(\d{2}))"  # 2021-07-20, 2021-7-2, 20210720
    r"(?:[ T](\d{1,2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?)?"  # [ T]10[:30[:15[.123]]]
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"  # optional UTC offset: converted to UTC
)
_LEAD_ID_HASH_KEY = "lead_assets_v1!!"
# A lead id a CRM could have issued, or one ingest derived: no spaces, quotes or control characters.
LEAD_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+#-]{0,127}$")
csv.field_size_limit(MAX_FIELD_BYTES)


def max_inflated_bytes() -> int:
    """The largest (decompressed) file accepted: ``LEAD_ASSETS_MAX_INFLATED_BYTES``, default 1 GiB."""
    value = os.environ.get("LEAD_ASSETS_MAX_INFLATED_BYTES", "").strip()
    return int(value) if value else DEFAULT_MAX_INFLATED_BYTES


def parse_created(value: str) -> datetime | None:
    """The one definition of a ``created_date``: the sniff and the full parse both use it.

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
    distinct = pd.unique(values.astype(object).to_numpy())
    lookup = {v: parse_created(v) if isinstance(v, str) else None for v in distinct}
    parsed = values.astype(object).map(lookup)
    return pd.to_datetime(parsed.where(parsed.notna(), None), errors="coerce").astype("datetime64[ns]")


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
    inflated_bytes: int = 0
    kind: str = "leads"  # leads | outcomes (lead_id and app_complete_flag, no created_date)


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
    except (EOFError, zlib.error) as exc:
        raise LeadFileError(name, "truncated_file",
                            f"the compressed file ends early or is corrupt ({exc}); send it again") from exc
    except OSError as exc:
        raise LeadFileError(name, "unreadable_file", f"cannot read the file: {exc}") from exc
    if not head.strip():
        raise LeadFileError(name, "empty_file", "the file is empty")
    if b"\x00" in head:
        raise LeadFileError(name, "not_a_csv", "the file holds binary data, not CSV text")
    encoding, inflated = _detect_encoding(path, name)
    text = head.decode(encoding, errors="replace")
    header_line = text.splitlines()[0] if text.splitlines() else ""
    delimiter = max(DELIMITERS, key=lambda d: _known_fields(header_line, d))
    columns = next(csv.reader([header_line], delimiter=delimiter))
    columns = [c.strip().lstrip("\ufeff") for c in columns]
    index_column = bool(columns) and columns[0] in ("", "Unnamed: 0")
    if index_column:
        columns = columns[1:]
    if schema.is_outcome_header(columns):
        return FileFormat(encoding, delimiter, compressed, columns, index_column, inflated, kind="outcomes")
    missing = [c for c in schema.required_columns() if c not in columns]
    if missing:
        raise LeadFileError(name, "missing_columns", f"required column(s) missing: {', '.join(missing)} "
                                                     f"(an outcomes file has {LEAD_ID} and {LABEL} and no {CREATED_DATE})")
    return FileFormat(encoding, delimiter, compressed, columns, index_column, inflated)


def _detect_encoding(path: UPath, name: str) -> tuple[str, int]:
    """UTF-8 (with or without BOM) when every byte decodes; otherwise Latin-1, which always does.

    This is the one pass over the whole (decompressed) content, so it also refuses a file that
    inflates past ``max_inflated_bytes()`` and a compressed file that ends early.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    limit, inflated, utf8 = max_inflated_bytes(), 0, True
    try:
        with _open_binary(path) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                inflated += len(chunk)
                if inflated > limit:
                    raise LeadFileError(
                        name, "too_large",
                        f"the file holds more than {limit:,} bytes once decompressed "
                        f"(LEAD_ASSETS_MAX_INFLATED_BYTES); split it or raise the limit")
                if utf8:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        utf8 = False
            if utf8:
                decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        utf8 = False
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise LeadFileError(name, "truncated_file",
                            f"the compressed file ends early or is corrupt ({exc}); send it again") from exc
    return ("utf-8-sig" if utf8 else "latin-1"), inflated


def _known_fields(header_line: str, delimiter: str) -> int:
    fields = {f.strip().strip('"').lstrip("\ufeff") for f in header_line.split(delimiter)}
    return len(fields & {*schema.raw_columns(), *schema.outcome_columns()})


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
    if fmt.kind == "outcomes":
        return _sniff_outcomes(path, fmt, name)
    first, last = first_day.isoformat(), today.isoformat()
    text, reader = _text_reader(path, fmt)
    day_counts: dict[str, int] = {}
    bad: list[int] = []
    valid_days: dict[str, bool] = {}
    rows = 0
    try:
        with text:
            next(reader, None)
            position = fmt.columns.index(CREATED_DATE) + int(fmt.index_column)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                rows += 1
                moment = parse_created(row[position]) if position < len(row) else None
                day = moment.date().isoformat() if moment else None
                ok = valid_days.get(day) if day else False
                if ok is None:
                    ok = first <= day <= last
                    valid_days[day] = ok
                if ok:
                    day_counts[day] = day_counts.get(day, 0) + 1
                else:
                    bad.append(rows + 1)
    except csv.Error as exc:
        raise LeadFileError(name, "malformed_csv", f"row {rows + 2} cannot be read as CSV: {exc}",
                            [rows + 2]) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise LeadFileError(name, "truncated_file",
                            f"the compressed file ends early or is corrupt ({exc}); send it again") from exc
    if rows == 0:
        raise LeadFileError(name, "no_rows", "the file has a header but no lead rows")
    if not day_counts:
        raise LeadFileError(
            name, "no_valid_dates",
            f"none of the {rows} rows has a created_date between {first} and {last}",
            bad[:100],
        )
    unknown = [c for c in fmt.columns if c not in schema.raw_columns() and c not in (LEAD_ID, OUTCOME_AT)]
    return Sniff(name, fmt, rows, day_counts, bad, unknown)


def _sniff_outcomes(path: UPath, fmt: FileFormat, name: str) -> Sniff:
    """An outcomes file has no days of its own: they are the days of the leads it names, known in a run."""
    text, reader = _text_reader(path, fmt)
    rows = 0
    try:
        with text:
            next(reader, None)
            rows = sum(1 for row in reader if row and not (len(row) == 1 and not row[0].strip()))
    except csv.Error as exc:
        raise LeadFileError(name, "malformed_csv", f"cannot be read as CSV: {exc}") from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise LeadFileError(name, "truncated_file",
                            f"the compressed file ends early or is corrupt ({exc}); send it again") from exc
    if rows == 0:
        raise LeadFileError(name, "no_rows", "the file has a header but no outcome rows")
    unknown = [c for c in fmt.columns if c not in schema.outcome_columns()]
    return Sniff(name, fmt, rows, {}, [], unknown)


@dataclass
class ParsedFile:
    """Every row of one file, either accepted (typed) or rejected (with its rule)."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame
    rows: int


REJECTED_COLUMNS = ("source_file", "source_sha256", "source_row", "day", "rule", "column", "detail", "raw")


def read_raw_strings(path: UPath, fmt: FileFormat) -> pd.DataFrame:
    """The file as strings, one row per record (fields beyond the header are dropped)."""
    return read_raw_rows(path, fmt)[0]


def read_raw_rows(path: UPath, fmt: FileFormat, name: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The file as strings, one row per record, and how many fields each row has beyond the header.

    The C parser refuses a file with one long row, so it reads into more columns than the
    header names (widening once per ``saw N fields`` it reports): a row with extra non-empty
    fields becomes a rejected row, never a failed run. Quoted commas and newlines survive.
    """
    name = name or path.name
    width = len(fmt.columns) + int(fmt.index_column)
    extra = 4
    for _ in range(4):
        names = [f"_{i}" for i in range(width + extra)]
        try:
            with _open_binary(path) as handle:
                frame = pd.read_csv(
                    handle, sep=fmt.delimiter, encoding=fmt.encoding, encoding_errors="replace", dtype=str,
                    keep_default_na=False, skip_blank_lines=True, engine="c", header=None, skiprows=1,
                    names=names,
                )
            break
        except pd.errors.ParserError as exc:
            seen = re.search(r"saw (\d+)", str(exc))
            if not seen:
                raise LeadFileError(name, "malformed_csv", f"cannot be read as CSV: {exc}") from exc
            extra = int(seen.group(1)) - width
    else:
        raise LeadFileError(name, "malformed_csv", "rows keep growing wider than the header")
    spill = frame[names[width:]]
    extra_fields = (spill != "").sum(axis=1).to_numpy()
    frame = frame[names[int(fmt.index_column):width]]
    frame.columns = fmt.columns
    return frame.reset_index(drop=True), extra_fields


def _rows_of(path: UPath, fmt: FileFormat, name: str) -> tuple[pd.DataFrame, int, np.ndarray, _RowReasons]:
    """A file's rows as text, their count and row numbers, and the rule every file shares: no extra fields."""
    text, extra_fields = read_raw_rows(path, fmt, name)
    rows = len(text)
    reasons = _RowReasons(rows)
    reasons.add(extra_fields > 0, "wrong_field_count", "",
                f"the row has more fields than the header's {len(fmt.columns) + int(fmt.index_column)}")
    return text, rows, np.arange(2, rows + 2), reasons


def _outcome_at(text: pd.DataFrame, reasons: _RowReasons) -> pd.Series:
    """When each label became known (NaT where empty); a value that is not a date breaks a rule."""
    given = _blank_to_na(text[OUTCOME_AT])
    known = parse_created_series(given.astype(object).where(given.notna(), None))
    reasons.add((given.notna() & known.isna()).to_numpy(dtype=bool), "unparseable_date", OUTCOME_AT,
                "outcome_at is not a date (YYYY-MM-DD, YYYY-M-D or YYYYMMDD, optional time)")
    return known


def parse_lead_file(
    path: UPath, *, name: str, sha256: str, first_day: date, today: date, fmt: FileFormat | None = None
) -> ParsedFile:
    """Apply the row rules to a whole file; ``accepted`` + ``rejected`` rows = rows read.

    A lead cannot be created after now (UTC) nor after the end of ``today``. A rejected row
    keeps the day it belongs to, or none when its date is missing or outside the partitions
    (such rows are kept per file, see ``raw_leads``).
    """
    fmt = fmt or detect_format(path, name)
    text, rows, source_row, reasons = _rows_of(path, fmt, name)
    created = parse_created_series(text[CREATED_DATE])
    reasons.add(created.isna().to_numpy(), "unparseable_date", CREATED_DATE,
                "created_date is not a date (YYYY-MM-DD, YYYY-M-D or YYYYMMDD, optional time)")
    day = created.dt.normalize()
    early = (day < pd.Timestamp(first_day)).to_numpy()
    reasons.add(early, "date_before_start", CREATED_DATE,
                f"created_date is before the first partition day {first_day}")
    now = min(pd.Timestamp.now(tz="UTC").tz_localize(None), pd.Timestamp(today) + pd.Timedelta(days=1))
    late = (created > now).to_numpy()
    reasons.add(late, "date_in_future", CREATED_DATE,
                f"created_date is in the future (after {now:%Y-%m-%d %H:%M:%S} UTC)")
    day = day.mask(early | (day > pd.Timestamp(today)).to_numpy())

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

    if OUTCOME_AT in text.columns:  # a labelled re-export may say when each label became known
        typed[OUTCOME_AT] = _outcome_at(text, reasons)
    given = _blank_to_na(text[LEAD_ID]).str.strip() if LEAD_ID in text.columns else None
    derived = lead_ids(typed)
    typed.insert(0, LEAD_ID, derived if given is None else given.fillna(pd.Series(derived, index=text.index)).astype(str))
    valid = ~reasons.any()
    ids = typed[LEAD_ID].where(valid)  # a rejected row is not a copy that a corrected one repeats
    duplicate = ids.duplicated(keep="first").to_numpy() & valid
    if duplicate.any():
        first_row = pd.Series(source_row, index=typed.index).where(valid).groupby(ids).transform("first")
        reasons.add_detail(duplicate, "duplicate_in_file", LEAD_ID,
                           "same lead as row " + first_row.fillna(0).astype("int64").astype(str).to_numpy())

    typed["source_file"] = name
    typed["source_sha256"] = sha256
    typed["source_row"] = source_row
    keep = ~reasons.any()
    rejected = reasons.frame(text, name, sha256, source_row, day)
    return ParsedFile(typed[keep].reset_index(drop=True), rejected, rows)


def parse_outcome_file(path: UPath, *, name: str, sha256: str, today: date,
                       fmt: FileFormat | None = None) -> ParsedFile:
    """Apply the outcome rules to a narrow file; ``accepted`` + ``rejected`` rows = rows read.

    Accepted rows are outcome events (``lead_id``, ``app_complete_flag``, ``outcome_at`` or
    empty); which lead and day each attaches to is decided later, against the leads ingested.
    """
    fmt = fmt or detect_format(path, name)
    text, rows, source_row, reasons = _rows_of(path, fmt, name)
    ids = _blank_to_na(text[LEAD_ID]).str.strip()
    reasons.add(ids.isna().to_numpy(dtype=bool), "missing_lead_id", LEAD_ID, "an outcome needs the lead_id it is for")
    well_formed = ids.fillna("").map(lambda v: bool(LEAD_ID_PATTERN.match(v))).to_numpy(dtype=bool)
    reasons.add(~well_formed, "bad_lead_id", LEAD_ID,
                "lead_id must be 1-128 letters, digits or _.:@/+#- (starting with a letter or digit)")
    label_raw = _blank_to_na(text[LABEL])
    label = _to_float(label_raw)
    reasons.add(label_raw.isna().to_numpy(dtype=bool), "label_missing", LABEL,
                "an outcome row needs app_complete_flag (0 or 1)")
    reasons.add(~label.isin([0.0, 1.0]).to_numpy(dtype=bool), "label_not_binary", LABEL,
                "app_complete_flag must be 0 or 1")
    if OUTCOME_AT in text.columns:
        known = _outcome_at(text, reasons)
        now = min(pd.Timestamp.now(tz="UTC").tz_localize(None), pd.Timestamp(today) + pd.Timedelta(days=1))
        reasons.add((known > now).to_numpy(), "date_in_future", OUTCOME_AT,
                    f"outcome_at is in the future (after {now:%Y-%m-%d %H:%M:%S} UTC)")
    else:
        known = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    events = pd.DataFrame({
        LEAD_ID: ids.astype(object),
        LABEL: pd.array(label.where(label.isin([0.0, 1.0])), dtype="Float64").astype("Int8"),
        OUTCOME_AT: known.astype("datetime64[ns]"),
        "source_file": name,
        "source_sha256": sha256,
        "source_row": source_row,
    })
    keep = ~reasons.any()
    no_day = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    rejected = reasons.frame(text, name, sha256, source_row, no_day)
    return ParsedFile(events[keep].reset_index(drop=True), rejected, rows)


def lead_ids(typed: pd.DataFrame) -> np.ndarray:
    """A stable id from the lead's own fields (not the label, not the file it came in).

    The same lead dropped twice, in any file, with or without its label, gets the same id.
    """
    created = typed[CREATED_DATE].to_numpy(dtype="datetime64[ns]").view("int64")
    optional = set(schema.reference().interaction_columns)
    parts = pd.DataFrame({CREATED_DATE: created})
    parts[CITY] = typed[CITY].fillna("").astype(str)
    for column in schema.LEVEL_COLUMNS:
        parts[column] = typed[column].fillna("").astype(str)
    for column in schema.numeric_columns():
        value = typed[column].astype("float64")
        if column in optional:  # an export that leaves the column out means 0: as empty, as before
            value = value.mask(value == 0.0)
        parts[column] = value.fillna(-1.0)
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
