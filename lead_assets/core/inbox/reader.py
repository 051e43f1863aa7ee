"""The one reader of inbox files: bytes to text to records, each record either read or broken.

Landing (the sniff) and the full parse both read a file through :func:`read_chunks`, so a file
that landing accepts is a file the parse reads, by construction: there is no second tokenizer.

**Text.** A file may be gzip-compressed. Its encoding is, in order:

1. the byte-order mark when there is one: UTF-8, UTF-16 (LE or BE: a spreadsheet's "Unicode
   text", usually tab-separated) or UTF-32; the mark never reaches the first column name;
2. UTF-16 without a mark when every other byte of the start is zero;
3. UTF-8 when every byte decodes, or when the file holds valid multi-byte UTF-8 as well as a
   few bytes that are not (a UTF-8 export with some broken rows);
4. otherwise cp1252 (Windows' Western encoding, a superset of Latin-1's letters); the five bytes
   cp1252 leaves undefined read as Latin-1.

Bytes that do not decode in the file's encoding become marker characters (lone surrogates), and
the row holding them is rejected by the row rule ``undecodable_bytes``: the rest of the file is
read. A file whose *header* holds binary data or undecodable bytes, or that is a known binary
format (a workbook, a PDF, a Parquet file, an archive), is not read at all.

**Records.** RFC 4180 CSV through Python's ``csv`` module (strict about quotes), recovering at
line boundaries so that one broken row costs one row, never the rest of the file:

- a record starts on a new line; blank lines are not rows;
- a quoted field may hold delimiters, doubled quotes and line breaks; a record that runs over
  several lines is kept only if it ends with exactly the header's fields (empty fields beyond
  them are tolerated, as on any row) and none of its fields holding a line break also holds a
  whole row's worth of delimiters (two stray quotes in one column, rows apart, would otherwise
  make one "record" of the rows between them);
- otherwise (a quote that never closes, one whose "closing" quote is another row's stray
  quote, text after a closing quote) only the line the record started on is a broken row
  (``unclosed_quote`` or ``malformed_csv``) and reading resumes at the next line;
- a record longer than :data:`MAX_ROW_CHARS` is a broken row (``row_too_large``), skipped
  without holding more than that in memory.

Row numbers count records, the header being row 1 (as a spreadsheet shows them); a broken row's
detail also names its line in the file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from upath import UPath

MAX_ROW_CHARS = 1 << 20  # no lead row is 1 MiB: a field this long is a broken export
MAX_RAW_CHARS = 2000  # a broken row keeps this much of its text in rejected_leads
CHUNK_ROWS = 20_000  # records per chunk: the reader's memory follows this, not the file
HEAD_BYTES = 64 * 1024
DEFAULT_MAX_INFLATED_BYTES = 1 << 30  # a file that decompresses past this is refused (gzip bomb)
UNDECODABLE = "lead_assets.undecodable"  # error handler: a byte that does not decode -> U+DC00 + byte
LATIN1 = "lead_assets.latin1"  # error handler: the bytes cp1252 leaves undefined read as Latin-1
_MARKERS = re.compile("[\ud800-\udfff]")  # lone surrogates: never the result of a valid decode
_VALID_NON_ASCII = re.compile("[\u0080-\ud7ff\ue000-\U0010ffff]")
csv.field_size_limit(max(csv.field_size_limit(), 4 * MAX_ROW_CHARS))  # our row limit comes first

BINARY_SIGNATURES = (
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook is one): save the sheet as CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls): save the sheet as CSV"),
    (b"%PDF", "a PDF document"),
    (b"PAR1", "a Parquet file"),
    (b"\x1f\x8b", "compressed twice (a gzip file inside the gzip file)"),
    (b"BZh", "a bzip2-compressed file: only gzip is read"),
    (b"\xfd7zXZ\x00", "an xz-compressed file: only gzip is read"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file: only gzip is read"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def _undecodable(error: UnicodeError):
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "".join(chr(0xDC00 + b) for b in error.object[error.start:error.end]), error.end


def _latin1(error: UnicodeError):
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start:error.end].decode("latin-1"), error.end


codecs.register_error(UNDECODABLE, _undecodable)
codecs.register_error(LATIN1, _latin1)


class LeadFileError(ValueError):
    """A whole file cannot be ingested; ``rule`` names why, ``detail`` says it in plain words."""

    def __init__(self, file: str, rule: str, detail: str, rows: list[int] | None = None):
        self.file, self.rule, self.detail, self.rows = file, rule, detail, rows or []
        super().__init__(f"{file}: {rule}: {detail}")

    def as_dict(self) -> dict:
        return {"file": self.file, "rule": self.rule, "detail": self.detail, "rows": self.rows}


def max_inflated_bytes() -> int:
    """The largest (decompressed) file accepted: ``LEAD_ASSETS_MAX_INFLATED_BYTES``, default 1 GiB."""
    value = os.environ.get("LEAD_ASSETS_MAX_INFLATED_BYTES", "").strip()
    return int(value) if value else DEFAULT_MAX_INFLATED_BYTES


@dataclass(frozen=True)
class Encoding:
    """How a file's bytes become text: the codec, and what a byte that does not decode becomes."""

    codec: str
    errors: str = UNDECODABLE

    @property
    def label(self) -> str:
        return {"utf-8-sig": "utf-8 with BOM", "utf-16": "utf-16 with BOM", "utf-32": "utf-32 with BOM",
                "cp1252": "cp1252 (Windows Western / Latin-1)"}.get(self.codec, self.codec)


def open_binary(path: UPath) -> IO[bytes]:
    raw = path.open("rb")
    magic = raw.read(2)
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw


def open_text(path: UPath, encoding: Encoding) -> io.TextIOWrapper:
    """The file as text: universal line ends kept as they are (``newline=""``), as csv needs."""
    return io.TextIOWrapper(open_binary(path), encoding=encoding.codec, errors=encoding.errors, newline="")


def _truncated(name: str, exc: Exception) -> LeadFileError:
    return LeadFileError(name, "truncated_file", f"the compressed file ends early or is corrupt ({exc}); send it again")


def read_head(path: UPath, name: str) -> tuple[bytes, bool]:
    """The first bytes of the (decompressed) content and whether the file is gzip-compressed."""
    try:
        with open_binary(path) as handle:
            return handle.read(HEAD_BYTES), isinstance(handle, gzip.GzipFile)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _truncated(name, exc) from exc
    except OSError as exc:
        raise LeadFileError(name, "unreadable_file", f"cannot read the file: {exc}") from exc


def _utf16_without_bom(head: bytes) -> str | None:
    sample = head[:4096] if len(head) % 2 == 0 else head[:4096][:-1]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def detect_encoding(path: UPath, head: bytes, name: str) -> tuple[Encoding, int]:
    """The file's encoding (module docstring) and its decompressed size.

    This is the one pass over the whole content, so it also refuses a file that inflates past
    ``max_inflated_bytes()`` and a compressed file that ends early.
    """
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return Encoding(codec), _scan(path, name, utf8=False)[0]
    wide = _utf16_without_bom(head)
    if wide:
        return Encoding(wide), _scan(path, name, utf8=False)[0]
    inflated, invalid, valid = _scan(path, name, utf8=True)
    return (Encoding("cp1252", LATIN1) if invalid and not valid else Encoding("utf-8")), inflated


def _scan(path: UPath, name: str, utf8: bool) -> tuple[int, bool, bool]:
    """Decompressed size, and (``utf8``) whether any byte is not UTF-8 and any multi-byte character is."""
    limit, inflated, invalid, valid = max_inflated_bytes(), 0, False, False
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    try:
        with open_binary(path) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                inflated += len(chunk)
                if inflated > limit:
                    raise LeadFileError(
                        name, "too_large",
                        f"the file holds more than {limit:,} bytes once decompressed "
                        f"(LEAD_ASSETS_MAX_INFLATED_BYTES); split it or raise the limit")
                if utf8 and not chunk.isascii():
                    text = decoder.decode(chunk)
                    invalid = invalid or bool(_MARKERS.search(text))
                    valid = valid or bool(_VALID_NON_ASCII.search(text))
            if utf8:
                invalid = invalid or bool(_MARKERS.search(decoder.decode(b"", final=True)))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _truncated(name, exc) from exc
    return inflated, invalid, valid


def refuse_binary(head: bytes, name: str) -> None:
    """A known binary format is refused with what it is, not as a CSV with no header."""
    for magic, what in BINARY_SIGNATURES:
        if head.startswith(magic):
            raise LeadFileError(name, "not_a_csv", f"the file is {what}, not CSV text")


def undecodable_detail(text: str) -> str:
    """What a text's marker characters were: bytes that did not decode, or lone surrogates."""
    found = _MARKERS.findall(text)
    raw = [ord(c) - 0xDC00 for c in found if 0xDC00 <= ord(c) <= 0xDCFF]
    if raw:
        shown = "".join(f"\\x{b:02x}" for b in raw[:8]) + ("..." if len(raw) > 8 else "")
        return f"bytes that do not decode in the file's encoding: {shown}"
    return "characters that are not valid Unicode text (a lone surrogate)"


def has_markers(text: str) -> bool:
    return bool(_MARKERS.search(text))


def storable(text: str, limit: int = MAX_RAW_CHARS) -> str:
    """Text that Parquet (UTF-8) can hold: undecodable bytes shown as ``\\xNN``, cut at ``limit``."""
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text):,} characters)"
    if text.isascii() or not _MARKERS.search(text):
        return text
    return _MARKERS.sub(lambda m: (f"\\x{ord(m.group()) - 0xDC00:02x}" if 0xDC00 <= ord(m.group()) <= 0xDCFF
                                   else f"\\u{ord(m.group()):04x}"), text)


# ------------------------------------------------------------------------------------ records
@dataclass
class Broken:
    """A row the reader could not read: its row number, line in the file, rule and text."""

    row: int
    line: int
    rule: str
    detail: str
    raw: str


@dataclass
class Chunk:
    """Up to ``CHUNK_ROWS`` consecutive rows: the records read (their fields as text) and the broken ones."""

    fields: list[list[str]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    suspect: list[bool] = field(default_factory=list)  # non-ASCII or NUL: the text rules look closer
    broken: list[Broken] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.broken)


class _TooLarge(Exception):
    def __init__(self, line: int, head: str, size: int):
        super().__init__(line, size)
        self.line, self.head, self.size = line, head, size


@dataclass(frozen=True)
class _Oversize:
    """A line longer than the row limit, already skipped: reading it again raises ``_TooLarge``."""

    line: int
    head: str
    size: int


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")  # how TextIOWrapper(newline="") splits lines
BLOCK_CHARS = 1 << 18


class _Lines:
    """The text as lines (ends kept), each at most ``limit`` characters; lines given back come first.

    ``taken`` holds the lines the current record used, so a record found broken can give back
    every line after its first.
    """

    def __init__(self, text: IO[str], limit: int | None = None):
        self._text, self._limit = text, limit or MAX_ROW_CHARS
        self._back: list[tuple[int, str | _Oversize]] = []
        self.taken: list[tuple[int, str]] = []
        self.size = 0
        self.number = 0
        self.suspect = False
        self._later: tuple[str, str | None] | None = None
        self.block_clean = False  # the last block is ASCII without a NUL: no row of it is suspect

    def start(self) -> None:
        self.taken = []
        self.size = 0
        self.suspect = False

    @property
    def pending(self) -> bool:
        return bool(self._back)

    def give_back(self, lines: list[tuple[int, str | _Oversize]]) -> None:
        self._back.extend(reversed(lines))

    def block(self) -> list[str] | None:
        """The next lines (about ``BLOCK_CHARS`` of text) as whole lines that each are one record: the
        lines before the first quote, when none holds a lone carriage return or is too long. The rest
        of the text is given back, to be read a record at a time once these are numbered (``later``);
        None when no line qualifies, [] at the end of the text."""
        text = self._text.read(BLOCK_CHARS)
        if not text:
            return []
        oversize = None
        if text[-1] != "\n":  # finish the last line (a "\r" may be followed by "\n")
            rest = self._text.readline(self._limit)
            if len(rest) >= self._limit and rest[-1] not in "\r\n":
                oversize = rest  # the rest of that line is skipped in _give_back_text
            else:
                text += rest
        quote = text.find('"')
        cut = len(text) if quote < 0 and oversize is None else text.rfind("\n", 0, quote if quote >= 0 else None) + 1
        fast, slow = text[:cut], text[cut:]
        if not fast or fast.count("\r") != fast.count("\r\n") or (
                len(fast) > self._limit and max(map(len, fast.split("\n"))) > self._limit):
            self._give_back_text(text, oversize)
            return None
        lines = fast.split("\n")
        if lines[-1] == "":
            lines.pop()
        if slow or oversize is not None:
            self._later = (slow, oversize)
        self.block_clean = fast.isascii() and "\x00" not in fast
        return lines

    def _give_back_text(self, text: str, oversize: str | None) -> None:
        """Lines to be read a record at a time, numbered; a last line too long becomes a marker."""
        lines = _LINE.findall(text)
        numbered: list[tuple[int, str | _Oversize]] = [(self.number + i + 1, line) for i, line in enumerate(lines)]
        self.number += len(lines)
        if oversize is not None:
            number, head = numbered.pop() if lines and lines[-1][-1] not in "\r\n" else (self.number + 1, "")
            self.number = number
            size = len(head) + len(oversize) + self._skip_line()
            numbered.append((number, _Oversize(number, (head + oversize)[:MAX_RAW_CHARS], size)))
        self.give_back(numbered)
        return None

    def later(self) -> None:
        """After a fast block was numbered: the rest of its text (from its first quote) is read record by record."""
        if self._later is not None:
            text, oversize = self._later
            self._later = None
            self._give_back_text(text, oversize)

    def count(self, lines: int) -> None:
        """Number the lines of a block read at once."""
        self.number += lines

    def _skip_line(self) -> int:
        """Read past the rest of a line that is too long, without holding it; returns its length."""
        size = 0
        while True:
            rest = self._text.readline(self._limit)
            size += len(rest)
            if not rest or rest[-1] in "\r\n":
                return size

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self._back:
            number, line = self._back.pop()
            if isinstance(line, _Oversize):
                raise _TooLarge(line.line, line.head, line.size)
        else:
            line = self._text.readline(self._limit)
            if not line:
                raise StopIteration
            self.number += 1
            number = self.number
            if len(line) >= self._limit and line[-1] not in "\r\n":
                raise _TooLarge(number, line[:MAX_RAW_CHARS], len(line) + self._skip_line())
        self.taken.append((number, line))
        self.size += len(line)
        if self.size > self._limit:
            raise _TooLarge(self.taken[0][0], self.taken[0][1][:MAX_RAW_CHARS], self.size)
        if not self.suspect and (not line.isascii() or "\x00" in line):
            self.suspect = True
        return line


def _is_blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def fits(fields: list[str], width: int) -> bool:
    """The header's number of fields, empty fields beyond it tolerated."""
    return len(fields) == width or (len(fields) > width and not any(f.strip() for f in fields[width:]))


def _fits_lines(fields: list[str], width: int, delimiter: str) -> bool:
    """A record that ran over several lines: the header's fields, and no field holding a line break
    that also holds a whole row's worth of delimiters (a stray quote and another row's stray quote
    in the same column would otherwise swallow the rows between them)."""
    return fits(fields, width) and not any(
        ("\n" in f or "\r" in f) and f.count(delimiter) >= width - 1 for f in fields)


def _open_field(line: str, delimiter: str) -> int:
    """The 1-based field of ``line`` where an unclosed quote opened."""
    return len(next(csv.reader([line], delimiter=delimiter, strict=False), [""]))


def pieces(text: IO[str], delimiter: str) -> Iterator[Chunk]:
    """Every row of ``text`` in order, a piece at a time (the header is the first row read): quote-free
    blocks of lines at once, other lines a record at a time with the recovery rules (module docstring)."""
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    row, width = 0, None
    while True:
        if not lines.pending:
            block = lines.block()
            if block == []:
                return
            if block is not None:
                lines.count(len(block))
                lines.later()
                read = list(csv.reader(block, delimiter=delimiter, strict=True))
                suspect = ([False] * len(block) if lines.block_clean
                           else [not line.isascii() or "\x00" in line for line in block])
                if not all(f and (len(f) > 1 or f[0].strip()) for f in read):  # blank lines are not rows
                    kept = [i for i, f in enumerate(read) if not _is_blank(f)]
                    read, suspect = [read[i] for i in kept], [suspect[i] for i in kept]
                piece = Chunk(read, list(range(row + 1, row + 1 + len(read))), suspect)
                row += len(read)
                if width is None and read:
                    width = len(read[0])
                yield piece
                continue
        lines.start()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            first, *rest = lines.taken or [(lines.number, "")]
            lines.give_back(rest)
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            row += 1
            if rest or "unexpected end of data" in str(exc):  # the quote opened on this row ran past it
                yield Chunk(broken=[_unclosed(row, first, delimiter)])
            else:
                yield Chunk(broken=[Broken(row, first[0], "malformed_csv", f"cannot be read as CSV: {exc}; "
                                           f"line {first[0]} of the file", _raw(first[1]))])
            continue
        except _TooLarge as big:
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            taken = lines.taken
            row += 1
            if taken and taken[0][0] != big.line:  # a quote ran on into a line that is too long
                lines.give_back([*taken[1:], (big.line, _Oversize(big.line, big.head, big.size))])
                yield Chunk(broken=[_unclosed(row, taken[0], delimiter)])
            elif len(taken) > 1:  # a quoted field ran on past the row limit: its first line is the broken row
                lines.give_back(taken[1:])
                yield Chunk(broken=[_unclosed(row, taken[0], delimiter)])
            else:
                yield Chunk(broken=[Broken(row, big.line, "row_too_large",
                                           f"the row holds {big.size:,} characters, more than the {MAX_ROW_CHARS:,} "
                                           f"a lead row may have; line {big.line} of the file", _raw(big.head))])
            continue
        if len(lines.taken) > 1 and width is not None and not _fits_lines(fields, width, delimiter):
            lines.give_back(lines.taken[1:])
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            row += 1
            yield Chunk(broken=[_unclosed(row, lines.taken[0], delimiter)])
            continue
        if _is_blank(fields):
            continue
        row += 1
        if width is None:
            width = len(fields)
        yield Chunk(fields=[fields], rows=[row], suspect=[lines.suspect])


def first_record(text: IO[str], delimiter: str) -> list[str] | Broken | None:
    """The first row of ``text`` (a header): its fields, or why it cannot be read."""
    for piece in pieces(text, delimiter):
        if piece.broken and (not piece.rows or piece.broken[0].row < piece.rows[0]):
            return piece.broken[0]
        if piece.fields:
            return piece.fields[0]
    return None


def _unclosed(row: int, first: tuple[int, str], delimiter: str) -> Broken:
    number, line = first
    return Broken(row, number, "unclosed_quote",
                  f"the quote opened in field {_open_field(line, delimiter)} does not close on this row (a stray "
                  f"quote?): only this line is rejected, reading went on at the next; line {number} of the file",
                  _raw(line))


def _raw(line: str) -> str:
    return storable(line.rstrip("\r\n"))


def read_chunks(text: IO[str], delimiter: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """The rows after the header, about ``chunk_rows`` at a time (the header's fields set the width)."""
    chunk, header = Chunk(), True
    for piece in pieces(text, delimiter):
        if header and piece.fields:
            header = False
            piece = Chunk(piece.fields[1:], piece.rows[1:], piece.suspect[1:], piece.broken)
        chunk.fields += piece.fields
        chunk.rows += piece.rows
        chunk.suspect += piece.suspect
        chunk.broken += piece.broken
        while len(chunk) >= chunk_rows:
            head, chunk = _split(chunk, chunk_rows)
            yield head
    if len(chunk):
        yield chunk


def _split(chunk: Chunk, size: int) -> tuple[Chunk, Chunk]:
    """The first ``size`` rows of a chunk and the rest (read and broken rows kept in row order)."""
    if not chunk.broken:
        return (Chunk(chunk.fields[:size], chunk.rows[:size], chunk.suspect[:size]),
                Chunk(chunk.fields[size:], chunk.rows[size:], chunk.suspect[size:]))
    rows = sorted([*chunk.rows, *(b.row for b in chunk.broken)])
    last = rows[size - 1]
    cut = sum(1 for r in chunk.rows if r <= last)
    return (Chunk(chunk.fields[:cut], chunk.rows[:cut], chunk.suspect[:cut], [b for b in chunk.broken if b.row <= last]),
            Chunk(chunk.fields[cut:], chunk.rows[cut:], chunk.suspect[cut:], [b for b in chunk.broken if b.row > last]))


# ------------------------------------------------------------------------------------ formats
DELIMITERS = (",", ";", "\t", "|")
_CONTROL = [chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127)]  # not tab, line feed, carriage return
MAX_CONTROL_SHARE = 0.05  # text has next to none; compressed or binary data about one byte in eight


@dataclass
class FileFormat:
    """How to read one file: compression, encoding, delimiter and header (``kind``: leads | outcomes)."""

    encoding: Encoding
    delimiter: str
    compressed: bool
    columns: list[str]
    index_column: bool
    inflated_bytes: int = 0
    kind: str = "leads"

    @property
    def width(self) -> int:
        """Fields in the header, the unnamed index column included."""
        return len(self.columns) + int(self.index_column)

    @property
    def decimal_comma(self) -> bool:
        """A ``;``-separated file is a spreadsheet export from a locale whose decimal mark is the
        comma (Excel writes ``;`` exactly when ``,`` is the decimal mark), so ``1,5`` is 1.5 there."""
        return self.delimiter == ";"


def read_header(path: UPath, name: str, known: set[str]) -> FileFormat:
    """Compression, encoding, delimiter and header of a file, or a LeadFileError naming the real problem.

    ``known``: the column names the delimiter is chosen by (the one that splits the first line
    into most of them). Three reads of the file at most: its head, one streaming pass for
    encoding and size, and (by the caller) the rows.
    """
    head, compressed = read_head(path, name)
    if not head.strip():
        raise LeadFileError(name, "empty_file", "the file is empty")
    refuse_binary(head, name)
    encoding, inflated = detect_encoding(path, head, name)
    text = codecs.getincrementaldecoder(encoding.codec)(errors=encoding.errors).decode(head)
    first_line = text.splitlines()[0] if text.splitlines() else ""
    control = sum(text.count(c) for c in _CONTROL) / max(len(text), 1)
    if control > MAX_CONTROL_SHARE:
        raise LeadFileError(name, "not_a_csv", f"the file holds binary data ({control:.0%} of its first "
                                               f"{len(text):,} characters are control characters), not CSV text")
    if "\x00" in first_line or has_markers(first_line):
        problem = ("holds binary data (NUL bytes)" if "\x00" in first_line
                   else f"holds {undecodable_detail(first_line)} ({encoding.label})")
        raise LeadFileError(name, "not_a_csv" if "\x00" in first_line else "undecodable_bytes",
                            f"row 1 (the header) {problem}: this is not a CSV export", [1])
    delimiter = max(DELIMITERS, key=lambda d: _known_fields(first_line, d, known))
    header = first_record(io.StringIO(text, newline=""), delimiter)
    if header is None or isinstance(header, Broken):
        detail = header.detail if header is not None else "no header line"
        raise LeadFileError(name, "malformed_header", f"row 1 (the header) cannot be read: {detail}", [1])
    if len(text) >= HEAD_BYTES // 4 and "\n" not in text and "\r" not in text:
        raise LeadFileError(name, "malformed_header", "the first line is longer than 64 KiB: no CSV header", [1])
    columns = [c.strip().lstrip("\ufeff") for c in header]
    index_column = bool(columns) and columns[0] in ("", "Unnamed: 0")
    if index_column:
        columns = columns[1:]
    return FileFormat(encoding, delimiter, compressed, known_names(columns, known), index_column, inflated)


def _spelling(column: str) -> str:
    return "_".join(column.lower().split())


def known_names(columns: list[str], known: set[str]) -> list[str]:
    """Header names as the schema spells them: ``CREATED_DATE`` or ``Created Date`` is ``created_date``
    (case and spaces are how a spreadsheet or CRM relabels a column, not another column). A name
    that would repeat a column the header already has is left as written (then it is unknown)."""
    spelled = {_spelling(k): k for k in known}
    taken = {c for c in columns if c in known}
    out = []
    for column in columns:
        name = column if column in known else spelled.get(_spelling(column))
        if name is None or (name != column and name in taken):
            out.append(column)
            continue
        taken.add(name)
        out.append(name)
    return out


def _known_fields(header_line: str, delimiter: str, known: set[str]) -> int:
    spelled = {_spelling(k) for k in known}
    fields = {_spelling(f.strip().strip('"').lstrip("\ufeff")) for f in header_line.split(delimiter)}
    return len(fields & spelled)


def text_chunks(path: UPath, fmt: FileFormat, name: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Every row after the header, a chunk at a time; a compressed file that ends early is a LeadFileError."""
    try:
        with open_text(path, fmt.encoding) as text:
            yield from read_chunks(text, fmt.delimiter, chunk_rows)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _truncated(name, exc) from exc
