"""``lead-assets``: generate, land, withdraw, demo, query, leads, evaluate, replay, model, serve.

Every command fails with one clear line and a non-zero exit on bad input, never a traceback.
"""

import argparse
import json
import os
import sys
import warnings
from datetime import date, datetime, timezone
from pathlib import Path

from lead_assets.views import VIEWS, print_frame, run_query



class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from exc
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from exc
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text}")
    return value


def _step(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def _home(args):
    from lead_assets.core.store.home import LeadHome

    return LeadHome.resolve(getattr(args, "home", None))


def _require_home(args):
    home = _home(args)
    if not home.root.exists() and not home.warehouse.exists():
        raise CommandError(
            f"no data home at {home.root}: run `make demo` or set LEAD_ASSETS_HOME to an existing home"
        )
    return home


# ---------------------------------------------------------------------------------- generate
def cmd_generate(args) -> int:
    from lead_assets.core.leads.synth import generate_leads, write_daily_files

    leads = generate_leads(args.start, args.days, args.leads_per_day, seed=args.seed, labelled=args.labelled)
    paths = write_daily_files(leads, args.out, prefix=args.prefix)
    print(f"wrote {len(leads):,} leads in {len(paths)} file(s) to {args.out}")
    return 0


# -------------------------------------------------------------------------------------- land
def cmd_land(args) -> int:
    """What the inbox sensor does, once, without a daemon: for scripts and the demo."""
    from lead_assets.core.inbox import ledger

    home = _home(args).ensure()
    first_day = date.fromisoformat(os.environ.get("LEAD_ASSETS_START_DATE", "2021-07-01"))
    today = datetime.now(timezone.utc).date()
    candidates, links = ledger.list_candidates(home.inbox)
    for link in links:
        ledger.refuse_link(home, link)
    for candidate in candidates:
        entry = ledger.receive(home, candidate.path, first_day, today)
        if entry is not None:
            print(f"{entry.file}: {entry.status}" + (f" ({entry.rule}: {entry.detail})" if entry.rule else ""))
    return 0


def cmd_withdraw(args) -> int:
    """Take a landed file back (never parsing it); the inbox sensor re-runs its days without it."""
    from lead_assets.core.leads import landed
    from lead_assets.core.inbox.parsing import first_day_setting

    home = _require_home(args)
    entry = landed.withdraw(home, args.file, args.reason, first_day_setting(), datetime.now(timezone.utc).date())
    days = sorted(entry.days)
    then = (f"{len(days)} day(s) {days[0] if days else ''}..{days[-1] if days else ''} re-run at the next "
            "inbox_sensor tick (or: dagster asset materialize --select raw_leads+ --partition-range ...)"
            if entry.kind == "leads" else "its outcomes leave the labels at the next inbox_sensor tick "
            "(lead_outcomes re-runs the days they were attached to)")
    print(f"{entry.file} ({entry.sha256[:12]}) withdrawn to {home.quarantine / entry.landed_as}; {then}")
    return 0


# ------------------------------------------------------------------------------------- query
def cmd_query(args) -> int:
    from lead_assets.views import QueryInterrupted

    home = _require_home(args)
    try:
        frame = run_query(home, args.sql, timeout=args.timeout)
    except QueryInterrupted as stopped:
        print(f"lead-assets query: {stopped}", file=sys.stderr)
        return 130
    print_frame(frame, args.format)
    return 0


# ------------------------------------------------------------------------------------- leads
def cmd_leads(args) -> int:
    home = _require_home(args)
    if args.date and (args.date_from or args.date_to):
        raise CommandError("use either --date or --from/--to, not both")
    where = []
    if args.date:
        where.append(f"CAST(created_date AS DATE) = DATE '{args.date}'")
    if args.date_from:
        where.append(f"CAST(created_date AS DATE) >= DATE '{args.date_from}'")
    if args.date_to:
        where.append(f"CAST(created_date AS DATE) <= DATE '{args.date_to}'")
    if args.bucket:
        where.append(f"bucket = '{args.bucket}'")
    detail = ", cutoff_rule" + "".join(f", reason_{k}_feature, reason_{k}_value, reason_{k}_shap" for k in (1, 2, 3))
    sql = (
        "SELECT lead_id, created_date, probability, score, bucket, cutoff, reasons, unseen_levels, model_version"
        + (detail if args.format != "table" else "")
        + " FROM scored_leads" + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY probability DESC, lead_id LIMIT {args.top}"
    )
    frame = _with_day_ranks(home, run_query(home, sql), _capacity(args))
    print_frame(_structured_reasons(frame) if args.format == "json" else frame, args.format)
    return 0


def _capacity(args) -> int | None:
    from lead_assets.core.scoring.capacity import capacity_from_environment, check_capacity

    if args.capacity is not None:
        return check_capacity(args.capacity)
    return capacity_from_environment()


def _with_day_ranks(home, frame, capacity: int | None):
    """Each shown lead's rank within its whole day and whether it is inside the day's capacity
    (``core.scoring.capacity``, the rule the CRM export uses), from every lead of the days shown."""
    from lead_assets.core.scoring.capacity import DAY_RANK, IN_CAPACITY, rank_within_day

    if frame.empty:
        return frame.assign(**{DAY_RANK: [], IN_CAPACITY: []})
    days = sorted({str(d)[:10] for d in frame["created_date"]})
    listed = ", ".join(f"DATE '{d}'" for d in days)
    every = run_query(home, "SELECT lead_id, created_date, probability, bucket FROM scored_leads "
                            f"WHERE CAST(created_date AS DATE) IN ({listed})")
    ranked = rank_within_day(every, capacity).set_index("lead_id")
    position = frame.columns.get_loc("bucket") + 1
    out = frame.copy()
    out.insert(position, DAY_RANK, ranked.loc[out["lead_id"], DAY_RANK].to_numpy())
    out.insert(position + 1, IN_CAPACITY, ranked.loc[out["lead_id"], IN_CAPACITY].to_numpy())
    return out


def _structured_reasons(frame):
    """JSON output: the top reasons as a list of {feature, value, direction, size}, beside the text."""
    import pandas as pd

    from lead_assets.core.scoring.batch import reason_details

    columns = [c for c in frame.columns if c.startswith("reason_") and c.endswith(("_feature", "_value", "_shap"))]
    if not columns:
        return frame
    out = frame.drop(columns=columns)
    out["reason_details"] = pd.Series(reason_details(frame), index=frame.index, dtype=object)
    return out


# ---------------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from lead_assets.core.model.file_evaluation import evaluate_csv

    if not Path(args.data).is_file():
        raise CommandError(f"no such file: {args.data}")
    _step(f"evaluating on {args.data} (train until {args.train_until or 'the latest 20% by time'})")
    report = evaluate_csv(args.data, train_until=args.train_until.isoformat() if args.train_until else None)
    if args.format == "json":
        print(json.dumps(report, indent=1, default=str))
        return 0
    import pandas as pd

    tables = {"test_months": "test, month by month", "backtest_months": "backtests inside the training window",
              "gate_checks": "the promotion gate's checks (the live gate's verdict on these backtests)"}
    for key, value in report.items():
        if key in tables or key == "backtest_pooled":
            continue
        print(f"{key:28s} {value:.4f}" if isinstance(value, float) else f"{key:28s} {value}")
    pooled = {k: round(v, 4) for k, v in report["backtest_pooled"].items() if v is not None}
    print(f"{'backtest_pooled':28s} {pooled}")
    for key, title in tables.items():
        if report[key]:
            print(f"\n{title}:\n" + pd.DataFrame(report[key]).round(3).to_markdown(index=False))
    return 0


# ------------------------------------------------------------------------------------ replay
def _days(text: str) -> int:
    """``15d`` or ``15``: a whole number of days, at least 1."""
    return _positive(text[:-1] if text.lower().endswith("d") else text)


def _days_or_zero(text: str) -> int:
    value = text[:-1] if text.lower().endswith("d") else text
    if value.strip() == "0":
        return 0
    return _positive(value)


def cmd_replay(args) -> int:
    from lead_assets.replay import run_replay

    if not Path(args.data).is_file():
        raise CommandError(f"no such file: {args.data}")
    _step(f"replaying {args.data} into {Path(args.out) / 'home'}: a step every {args.step} days, outcomes "
          f"{args.label_delay} days after each lead")
    try:
        result = run_replay(Path(args.data), Path(args.out), step_days=args.step, label_delay_days=args.label_delay,
                            say=lambda line: print(line, flush=True))
    except FileExistsError as error:
        raise CommandError(str(error)) from error
    import pandas as pd

    shown = ["month", "leads", "scored_on_arrival", "versions", "auc", "precision", "recall", "calibration_error",
             "calibration_error_if_calibrated", "best_precision_at_target_recall", *[c for c in result.months.columns if c.startswith("frozen_")]]
    print("\n" + result.months[[c for c in shown if c in result.months]].round(3).to_markdown(index=False))
    print("\n" + pd.Series(result.summary).rename("value").to_frame().to_markdown())
    print(f"\nreport: {result.report}")
    return 1 if result.failed_runs else 0


# ------------------------------------------------------------------------------------- model
def cmd_model(args) -> int:
    import mlflow

    from lead_assets.core.release import registry

    home = _home(args)
    mlflow.set_tracking_uri(home.mlflow_tracking_uri)
    if args.action == "rollback":
        restored = registry.rollback(args.name)
        print(f"{args.name}@champion is now version {restored}")
    else:
        print(json.dumps(registry.describe(args.name), indent=1, default=str))
    return 0


# ------------------------------------------------------------------------------------- serve
def cmd_serve(args) -> int:
    """MLflow's scoring server for the current champion, following the alias (lead_assets.serving).

    The port is taken first: if it is in use, the command fails at once, before loading anything.
    """
    from lead_assets.serving import LOOPBACK, listen, serve

    token = os.environ.get("LEAD_ASSETS_SERVE_TOKEN", "").strip() or None
    if args.host not in LOOPBACK and token is None:
        raise CommandError(f"--host {args.host} listens beyond loopback: set LEAD_ASSETS_SERVE_TOKEN "
                           "(clients then send Authorization: Bearer <token>)")
    try:
        sock = listen(args.host, args.port)
    except OSError as error:
        raise CommandError(str(error)) from None
    home = _home(args)
    print(f"serving {args.name}@champion on http://{args.host}:{args.port} (POST /invocations, GET /ping)"
          + (", bearer token required" if token else ""), flush=True)
    serve(home, args.name, sock, token=token, max_request_bytes=args.max_request_bytes,
          max_request_rows=args.max_request_rows, poll_seconds=args.poll_seconds, workers=args.workers)
    return 0


# -------------------------------------------------------------------------------------- init
def cmd_init(args) -> int:
    """Create the data home and a local Dagster instance (telemetry off) if none is configured."""
    from lead_assets.demo import ensure_dagster_home

    home = _home(args).ensure()
    dagster_home = ensure_dagster_home(home, say=lambda note: print(f"lead-assets init: {note}", file=sys.stderr))
    print(f"data home {home.root}\nDagster home {dagster_home}")
    return 0


# -------------------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    from lead_assets import demo

    return demo.run(history_days=args.history_days, new_days=args.new_days,
                    leads_per_day=args.leads_per_day, seed=args.seed, step=_step)


class _Parser(argparse.ArgumentParser):
    """Bad arguments get one clear line and exit code 2, not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from lead_assets.serving import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_ROWS

    parser = _Parser(prog="lead-assets", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="data home (default: $LEAD_ASSETS_HOME or ./.lead_assets)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("generate", help="write synthetic raw lead CSVs, one per day")
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--days", type=_positive, required=True)
    p.add_argument("--leads-per-day", type=_positive, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--prefix", default="leads")
    p.add_argument("--labelled", action="store_true", help="include app_complete_flag")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("init", help="create the data home and a local Dagster instance")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("land", help="move ready inbox files to landing/quarantine once (what the sensor does)")
    p.set_defaults(func=cmd_land)

    p = sub.add_parser("withdraw", help="take a landed file back: its days are re-run without it")
    p.add_argument("file", help="the file's sha256 (or a unique prefix) or its original name")
    p.add_argument("--reason", default="withdrawn by an operator")
    p.set_defaults(func=cmd_withdraw)

    p = sub.add_parser("demo", help="synthetic history + new leads, trained and scored through Dagster")
    p.add_argument("--history-days", type=_positive, default=120)
    p.add_argument("--new-days", type=_positive, default=3)
    p.add_argument("--leads-per-day", type=_positive, default=200)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("query", help="SQL over the warehouse (views: " + ", ".join(VIEWS) + ")")
    p.add_argument("sql")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--timeout", type=_seconds, default=60.0,
                   help="stop the query after this many seconds (default 60); Ctrl-C stops it at once")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("leads", help="scored leads, best first, with reasons")
    p.add_argument("--date", type=_date)
    p.add_argument("--from", dest="date_from", type=_date)
    p.add_argument("--to", dest="date_to", type=_date)
    p.add_argument("--bucket", choices=("hot", "warm", "cold", "junk"))
    p.add_argument("--top", type=_positive, default=20)
    p.add_argument("--capacity", type=_positive, default=None,
                   help="leads the team calls a day (default LEAD_ASSETS_DAILY_CAPACITY, else no limit): "
                        "in_capacity marks a lead ranked within it in its day and not junk")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_leads)

    p = sub.add_parser("evaluate", help="honest time-split evaluation of the model on a labelled CSV")
    p.add_argument("--data", required=True)
    p.add_argument("--train-until", type=_date)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("replay", help="play a labelled history through a fresh data home, step by step, with "
                                      "outcomes arriving late and the shipped automation deciding everything")
    p.add_argument("--data", required=True, help="a labelled lead file (created_date and app_complete_flag)")
    p.add_argument("--out", default="replay", help="where the fresh home, the Dagster instance and the report go")
    p.add_argument("--step", type=_days, default=15, help="days between two arrivals of leads (e.g. 15d)")
    p.add_argument("--label-delay", type=_days_or_zero, default=14,
                   help="days after its creation that a lead's outcome arrives")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("model", help="the registered model: show the champion, or roll back")
    p.add_argument("action", choices=("show", "rollback"))
    p.add_argument("--name", default="lead_scoring")
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("serve", help="score leads over HTTP with the champion (MLflow's protocol), following it")
    p.add_argument("--port", type=_port, default=5050)
    p.add_argument("--host", default="127.0.0.1",
                   help="beyond loopback only with LEAD_ASSETS_SERVE_TOKEN set (a bearer token)")
    p.add_argument("--name", default="lead_scoring")
    p.add_argument("--max-request-bytes", type=_positive, default=DEFAULT_MAX_REQUEST_BYTES)
    p.add_argument("--max-request-rows", type=_positive, default=DEFAULT_MAX_REQUEST_ROWS,
                   help=f"leads one request may hold, in any format (default {DEFAULT_MAX_REQUEST_ROWS:,})")
    p.add_argument("--poll-seconds", type=float, default=5.0, help="how often to check where champion points")
    p.add_argument("--workers", type=_positive, default=1,
                   help="processes answering on the port, each following the champion (one per core: "
                        f"{os.cpu_count() or 1} here)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as error:
        print(f"lead-assets {args.command}: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        print(f"lead-assets {args.command}: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"lead-assets {args.command} failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
