"""The reps' call list at /calls: one day best first, the capacity line, filters, the CSV download."""

import asyncio
from html.parser import HTMLParser

import pandas as pd

from lead_assets.call_list import CallList
from lead_assets.core.scoring import crm
from lead_assets.core.store import warehouse
from lead_assets.serving import ScoringService
from lead_assets_tests.core.scoring.test_crm import scored

DAY = "2021-08-01"


class Rows(HTMLParser):
    """The page's table rows as lists of cell texts (and which row is the capacity line)."""

    def __init__(self):
        super().__init__()
        self.rows, self.lines, self._row, self._in_cell = [], [], None, False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
            if ("class", "line") in attrs:
                self.lines.append(len(self.rows))
        elif tag == "td":
            self._in_cell = True
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_cell = False
        elif tag == "tr" and self._row is not None:
            if self._row and len(self._row) > 1:
                self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in_cell:
            self._row[-1] += data


def get(service, path, query=b"", headers=()):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(service({"type": "http", "method": "GET", "path": path, "query_string": query,
                         "headers": list(headers)}, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def publish(home):
    frame = scored(DAY, [0.3, 0.9, 0.7, 0.5, 0.2, 0.85], ids=["L0", "L1", "L2", "L3", "<script>x</script>", "L5"])
    rows = crm.export_rows(frame, capacity=2)
    (home.root / "outbox").mkdir(parents=True, exist_ok=True)
    (home.root / "outbox" / f"{DAY}.csv").write_bytes(crm.to_csv_bytes(rows))
    sources = pd.DataFrame({"lead_id": frame["lead_id"], "created_date": frame["created_date"],
                            "source_level": ["google", "google", "others", "google", "others", "others"]})
    warehouse.write_partition(home.warehouse, "lead_features", DAY, sources)
    return rows


def test_the_page_lists_the_day_best_first_with_the_capacity_line_and_filters(lead_home):
    publish(lead_home)
    service = ScoringService("lead_scoring", lambda: None, pages=CallList(lead_home))
    status, headers, body = get(service, "/calls")  # no champion loaded: the list still answers
    assert status == 200 and headers[b"content-type"].startswith(b"text/html")
    page = Rows()
    page.feed(body.decode())
    ranks = [row[0] for row in page.rows]
    assert ranks == ["1", "2", "3", "4", "5", "6"] and [row[1] for row in page.rows] == ["90", "85", "70", "50",
                                                                                         "30", "20"]
    assert page.lines == [2]  # after the two leads inside the capacity
    assert "&lt;script&gt;x&lt;/script&gt;" in body.decode() and "<script>x" not in body.decode()
    assert 'name="viewport"' in body.decode() and "@media (max-width:640px)" in body.decode()
    filtered = Rows()
    filtered.feed(get(service, "/calls", b"bucket=warm&source=others")[2].decode())
    assert [row[3] for row in filtered.rows] == ["L2"]


def test_the_download_is_what_crm_export_published_and_the_api_rules_apply(lead_home):
    rows = publish(lead_home)
    service = ScoringService("lead_scoring", lambda: None, pages=CallList(lead_home), token="s3cret")
    assert get(service, "/calls")[0] == 401  # beyond loopback the token (or deploy/'s proxy) guards it too
    auth = [(b"authorization", b"Bearer s3cret")]
    status, headers, body = get(service, "/calls.csv", f"day={DAY}".encode(), auth)
    assert status == 200 and headers[b"content-type"].startswith(b"text/csv")
    downloaded = pd.read_csv(__import__("io").BytesIO(body), dtype={"lead_id": str, "model_version": str})
    expected = pd.read_csv(__import__("io").BytesIO(crm.to_csv_bytes(rows)), dtype={"lead_id": str,
                                                                                   "model_version": str})
    pd.testing.assert_frame_equal(downloaded, expected)
    assert get(service, "/calls", b"day=2030-01-01", auth)[0] == 404
    assert get(ScoringService("lead_scoring", lambda: None, pages=CallList(lead_home, lead_home.root / "none")),
               "/calls")[0] == 404  # nothing published yet: said, not a crash
