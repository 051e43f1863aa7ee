"""The call list: one day's leads best first, for sales reps in a browser, and its CSV.

It shows what ``crm_export`` published for the day (``outbox/<day>.csv``: rank in the day, the
capacity line, reasons in words, model version), with each lead's source from ``lead_features``.
Server-rendered HTML with no script and no front-end build; readable on a laptop and on a phone
(the table becomes one card per lead on a narrow screen). ``lead-assets serve`` answers it at
``/calls`` and ``/calls.csv`` under the API's access rules.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlencode

import pandas as pd

from lead_assets.core.scoring import crm

from lead_assets.core.store import warehouse
from lead_assets.core.scoring.capacity import DAY_RANK, IN_CAPACITY
from lead_assets.core.schema import LEAD_ID

SOURCE = "source_level"
BUCKETS = ("hot", "warm", "cold", "junk")
STYLE = """
*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;padding:1rem;color:#1b1f24;background:#fafafa}
h1{font-size:1.3rem;margin:0 0 .5rem}form{display:flex;flex-wrap:wrap;gap:.5rem;margin:.5rem 0 1rem}
select,button,a.button{font-size:1rem;padding:.35rem .6rem}
table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:.45rem .5rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#eef1f4}td.score{font-weight:600}
.hot{color:#b42318}.warm{color:#b54708}.cold{color:#175cd3}.junk{color:#667085}
tr.line td{border-top:3px solid #1b1f24;font-weight:600;background:#f2f4f7}
@media (max-width:640px){thead{display:none}table,tbody,tr,td{display:block;width:100%}
tr{margin:0 0 .6rem;border:1px solid #ddd;border-radius:6px;background:#fff}td{border:0;padding:.2rem .6rem}
td::before{content:attr(data-label) ": ";font-weight:600;color:#667085}tr.line td::before{content:""}}
"""


class CallList:
    """Reads a data home's published days; answers ``/calls`` (HTML) and ``/calls.csv``."""

    def __init__(self, home, outbox=None):
        self.home = home
        self.outbox = outbox if outbox is not None else home.root / "outbox"

    def days(self) -> list[str]:
        if not self.outbox.exists():
            return []
        return sorted((p.name[:-4] for p in self.outbox.iterdir() if p.name.endswith(".csv")), reverse=True)

    def rows(self, day: str) -> pd.DataFrame:
        """The day's published rows, best first, with each lead's source (read once per request)."""
        with (self.outbox / f"{day}.csv").open("rb") as handle:
            rows = pd.read_csv(handle, dtype={LEAD_ID: str, "model_version": str, crm.TOP_REASONS: str},
                               keep_default_na=False)
        sources = pd.DataFrame(columns=[LEAD_ID, SOURCE])
        if day in warehouse.existing_partitions(self.home.warehouse, "lead_features"):
            sources = warehouse.read_partitions(self.home.warehouse, "lead_features", [day])[[LEAD_ID, SOURCE]]
        return (rows.merge(sources.astype({LEAD_ID: str}), on=LEAD_ID, how="left")
                .sort_values(DAY_RANK, kind="stable").reset_index(drop=True))

    def answer(self, path: str, query_string: bytes) -> tuple[int, bytes, bytes]:
        """``(status, content type, body)`` for ``/calls`` or ``/calls.csv``."""
        query = {k: v[-1] for k, v in parse_qs(query_string.decode("latin-1")).items()}
        days = self.days()
        day = query.get("day") or (days[0] if days else None)
        if day is None:
            return 404, b"text/plain; charset=utf-8", b"no scored day has been published yet (crm_export)\n"
        if day not in days:
            return 404, b"text/plain; charset=utf-8", f"no published day {day}\n".encode()
        bucket = query.get("bucket") if query.get("bucket") in BUCKETS else None
        source = query.get("source") or None
        everything = self.rows(day)
        keep = pd.Series(True, index=everything.index)
        if bucket:
            keep &= everything["bucket"] == bucket
        if source:
            keep &= everything[SOURCE].astype(str) == source
        rows = everything[keep.to_numpy()].reset_index(drop=True)
        if path.endswith(".csv"):
            return 200, b"text/csv; charset=utf-8", crm.to_csv_bytes(rows)
        return 200, b"text/html; charset=utf-8", render(day, days, rows, everything, bucket, query.get("source"))


def _options(values, chosen, everything_label: str) -> str:
    items = [f'<option value="">{everything_label}</option>']
    items += [f'<option value="{html.escape(v)}"{" selected" if v == chosen else ""}>{html.escape(v)}</option>'
              for v in values]
    return "".join(items)


def render(day: str, days: list[str], rows: pd.DataFrame, everything: pd.DataFrame, bucket: str | None,
           source: str | None) -> bytes:
    """The page: filters, then one row per lead; the capacity line after the last lead inside it."""
    sources = sorted(everything[SOURCE].dropna().astype(str).unique())
    inside = int(everything[IN_CAPACITY].astype(bool).sum())
    download = "calls.csv?" + urlencode({k: v for k, v in (("day", day), ("bucket", bucket), ("source", source)) if v})
    body = []
    drawn = False
    for row in rows.itertuples(index=False):
        if not drawn and not bool(getattr(row, IN_CAPACITY)) and inside:
            body.append(f'<tr class="line"><td colspan="7">capacity line: the {inside} leads above it are '
                        "today's calls</td></tr>")
            drawn = True
        cells = [("#", getattr(row, DAY_RANK)), ("score", row.score), ("bucket", row.bucket),
                 ("lead", getattr(row, LEAD_ID)), ("source", getattr(row, SOURCE)),
                 ("why", getattr(row, crm.TOP_REASONS)), ("model", f"v{row.model_version}")]
        classes = {"score": ' class="score"', "bucket": f' class="{html.escape(str(row.bucket))}"'}
        body.append("<tr>" + "".join(
            f'<td data-label="{label}"{classes.get(label, "")}>{html.escape("" if pd.isna(v) else str(v))}</td>'
            for label, v in cells) + "</tr>")
    table = ("<table><thead><tr><th>#</th><th>score</th><th>bucket</th><th>lead</th><th>source</th><th>why</th>"
             "<th>model</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>") if len(rows) else (
        "<p>No lead matches these filters.</p>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Call list {html.escape(day)}</title><style>{STYLE}</style></head>
<body><h1>Call list for leads of {html.escape(day)}</h1>
<p>{len(everything)} leads, best first; {inside} inside the day's capacity.</p>
<form method="get" action="calls">
<select name="day" aria-label="day">{_options(days, day, "latest day")}</select>
<select name="bucket" aria-label="bucket">{_options(BUCKETS, bucket, "every bucket")}</select>
<select name="source" aria-label="source">{_options(sources, source, "every source")}</select>
<button type="submit">Show</button><a class="button" href="{html.escape(download)}" download>Download CSV</a>
</form>
{table}
</body></html>
"""
    return page.encode("utf-8")
