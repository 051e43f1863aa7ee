"""The read-only query layer: DuckDB views over the warehouse, and printing results safely.

``lead-assets query``, ``lead-assets leads`` and the demo all read through here. A query may
only be one SELECT over the views: DuckDB's file access is limited to the warehouse and the
ledger and its configuration is locked, so no statement can write a file (``COPY ... TO``),
attach a database or read elsewhere on the machine. CSV output is meant for spreadsheets,
so text cells that a spreadsheet would run as a formula are neutralised.
"""

from __future__ import annotations

import sys
import threading
import time

VIEWS = ("raw_leads", "cleaned_leads", "lead_features", "scored_leads", "rejected_leads", "outcome_history",
         "served_scores", "ingest_log", "lead_outcomes", "model_performance")
DAY_FOLDERS = VIEWS[:7]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class QueryError(ValueError):
    """A query that cannot run or is not allowed: one line for the user."""


class QueryInterrupted(QueryError):
    """The user pressed Ctrl-C while the query ran."""


def _quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def connect(home):
    """DuckDB over the warehouse files: one view per asset, plus rejected rows and the ledger.

    After the views exist, file access is limited to the warehouse and ledger folders and the
    configuration is locked, so queries cannot widen it.
    """
    import duckdb

    con = duckdb.connect()
    available = []
    for view in DAY_FOLDERS:
        folders = [home.warehouse / view] + ([home.warehouse / view / "undated"] if view == "rejected_leads" else [])
        pattern = "*/*.parquet" if view == "served_scores" else "*.parquet"
        globs = [_quote(f"{f}/{pattern}") for f in folders if f.exists() and any(f.glob(pattern))]
        if globs:
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet([{', '.join(globs)}], union_by_name=true)")
            available.append(view)
    if home.ledger.exists() and any(home.ledger.glob("*.json")):
        con.execute("CREATE VIEW ingest_log AS SELECT * FROM "
                    f"read_json_auto({_quote(f'{home.ledger}/*.json')}, union_by_name=true)")
        available.append("ingest_log")
    events = home.warehouse / "outcome_events"
    if events.exists() and any(events.glob("*.parquet")):
        source = f"read_parquet({_quote(f'{events}/*.parquet')}, union_by_name=true)"
        judged = "status" in {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        con.execute(_lead_outcomes_view(source, available, judged))
        available.append("lead_outcomes")
    performance = home.warehouse / "model_performance.parquet"
    if performance.exists():
        con.execute(f"CREATE VIEW model_performance AS SELECT * FROM read_parquet({_quote(str(performance))})")
        available.append("model_performance")
    allowed = ", ".join(_quote(str(p)) for p in (home.warehouse, home.ledger))
    con.execute(f"SET allowed_directories = [{allowed}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con, available


def _lead_outcomes_view(events: str, available: list[str], judged: bool) -> str:
    """Every accepted row of every outcomes file with its status, decided against the warehouse now:
    pending (no such lead yet), rejected (dated before its lead: in rejected_leads), attached or
    unchanged (as outcome_history records it: did it set or change the label?), else what
    lead_outcomes judged (a relabel it asked for has not run yet)."""
    leads = ("(SELECT lead_id, created_date FROM raw_leads)" if "raw_leads" in available
             else "(SELECT NULL::VARCHAR AS lead_id, NULL::TIMESTAMP AS created_date WHERE false)")
    history = ("(SELECT source_sha256, source_row, label_changed FROM outcome_history "
               "WHERE via = 'outcomes_file')" if "outcome_history" in available else
               "(SELECT NULL::VARCHAR AS source_sha256, NULL::BIGINT AS source_row, NULL::BOOLEAN AS label_changed "
               "WHERE false)")
    refused = ("(SELECT source_sha256, source_row FROM rejected_leads WHERE rule = 'outcome_before_lead')"
               if "rejected_leads" in available else
               "(SELECT NULL::VARCHAR AS source_sha256, NULL::BIGINT AS source_row WHERE false)")
    return (
        f"CREATE VIEW lead_outcomes AS SELECT e.*{' EXCLUDE (status)' if judged else ''}, "
        "strftime(r.created_date, '%Y-%m-%d') AS day, "
        "CASE WHEN r.lead_id IS NULL THEN 'pending' WHEN x.source_row IS NOT NULL THEN 'rejected' "
        "WHEN h.label_changed IS NOT NULL THEN (CASE WHEN h.label_changed THEN 'attached' ELSE 'unchanged' END) "
        f"ELSE {'coalesce(e.status, ' if judged else '('}'attached') END AS status "
        f"FROM {events} e LEFT JOIN {leads} r USING (lead_id) "
        f"LEFT JOIN {history} h ON h.source_sha256 = e.source_sha256 AND h.source_row = e.source_row "
        f"LEFT JOIN {refused} x ON x.source_sha256 = e.source_sha256 AND x.source_row = e.source_row")


def run_query(home, sql: str, timeout: float | None = None):
    """One SELECT statement over the views, as a DataFrame; anything else is a QueryError.

    Ctrl-C stops it (QueryInterrupted), and so does ``timeout`` seconds passing (QueryError).
    """
    import duckdb

    con, available = connect(home)
    try:
        statements = con.extract_statements(sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            kinds = ", ".join(s.type.name for s in statements) or "none"
            raise QueryError(f"only one SELECT statement is allowed (got: {kinds}); the query tool is read-only")
        return _interruptible(con, sql, timeout)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise QueryError(f"query failed: {first} (views with data: {', '.join(available) or 'none'})") from exc
    finally:
        con.close()


def _interruptible(con, sql: str, timeout: float | None):
    """The query in a worker thread while this one waits: Python runs a signal handler only in the
    main thread, between its own instructions, never while DuckDB's C++ holds it; from here
    ``con.interrupt()`` stops DuckDB wherever it is. The wait is on an Event, not
    ``Thread.join``: a Ctrl-C inside ``join`` marks a running thread as stopped (Python 3.11)."""
    outcome: dict = {}
    done = threading.Event()

    def work():
        try:
            outcome["frame"] = con.execute(sql).fetchdf()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread as it is
            outcome["error"] = error
        finally:
            done.set()

    def stop(within: float = 10.0) -> None:
        con.interrupt()
        until = time.monotonic() + within
        while not done.wait(0.05) and time.monotonic() < until:
            pass

    deadline = None if timeout is None else time.monotonic() + timeout
    threading.Thread(target=work, name="duckdb-query", daemon=True).start()
    try:
        while not done.wait(0.05):
            if deadline is not None and not done.is_set() and time.monotonic() >= deadline:
                stop()
                raise QueryError(f"query stopped after {timeout:g} s, the time limit (--timeout {timeout:g}): "
                                 "narrow it (WHERE, LIMIT) or raise --timeout")
    except KeyboardInterrupt:
        stop()
        raise QueryInterrupted("query interrupted (Ctrl-C)") from None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["frame"]


def neutralise_formulas(frame):
    """Text cells that start like a spreadsheet formula get a leading ``'`` (CSV injection)."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object or str(values.dtype).startswith("string"):
            text = values.astype("string")
            risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)
            if risky.any():
                out[column] = values.astype(object).where(~risky, "'" + text.astype(object).where(risky, ""))
    return out


def print_frame(frame, fmt: str, stream=None) -> None:
    """Print as a table, JSON records or spreadsheet-safe CSV."""
    stream = stream or sys.stdout
    if fmt == "csv":
        neutralise_formulas(frame).to_csv(stream, index=False)
    elif fmt == "json":
        print(frame.to_json(orient="records", date_format="iso", indent=1), file=stream)
    elif frame.empty:
        print("(no rows)", file=stream)
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200,
                               "display.max_colwidth", 80):
            print(frame.to_string(index=False), file=stream)
