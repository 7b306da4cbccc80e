"""Tools around the lake: a synthetic world, the demo, SQL, tables, the report, history."""

from __future__ import annotations

import json
import sys

import pandas as pd

from geosid import pipeline
from geosid.cli.common import cmd_step, context_of, date_arg, settings_of, with_default


def cmd_synth(args, p) -> int:
    world = {name: getattr(args, name) for name in ("seed", "n_days", "n_users", "n_stores", "corrupt_rate", "start_date")}
    if world["start_date"] is not None:
        world["start_date"] = world["start_date"].isoformat()
    report = p.synth(args.out, progress=sys.stderr.isatty(), **{k: v for k, v in world.items() if v is not None})
    print(report.summary())
    if report.manifest["corrupted"]:
        print(f"injected bad lines: {json.dumps(report.manifest['corrupted'], sort_keys=True)}")
    return 0


def cmd_demo(args, p) -> int:
    world = {k: v for k, v in (("n_days", args.days), ("n_users", args.users), ("n_stores", args.stores)) if v}
    with context_of(args) as ctx:
        report = p.demo(synthetic=args.synthetic, world=world, train=not args.no_train, ctx=ctx)
    for failure in report.failures:
        print(f"FAILED: {failure}")
    print(f'\nlake: {ctx.lake.root}  (try: geosid sql "SELECT reason, count(*) FROM rejects GROUP BY reason")')
    return 0 if report.ok else 1


def cmd_sql(args, p) -> int:

    with context_of(args) as ctx:
        frame = p.sql(args.query, args.limit, ctx=ctx)
    with pd.option_context("display.max_rows", args.limit, "display.max_columns", 50, "display.width", 200):
        print(frame.to_string(index=False))
    return 0


def cmd_history(args, p) -> int:
    for entry in p.history(args.table, lake_root=str(settings_of(args).lake_root)):
        params = entry.get("operationParameters", {})
        print(f"v{entry.get('version')}  {entry.get('operation'):<13} predicate={params.get('predicate', '')}")
    return 0


def add_tools(command) -> None:
    world = pipeline.WorldConfig()
    p = command("synth", cmd_synth, "write a synthetic local-life world as raw daily drops")
    p.add_argument("--out", required=True)
    for flag, field in (("--days", "n_days"), ("--users", "n_users"), ("--stores", "n_stores"), ("--seed", "seed")):
        p.add_argument(flag, type=int, help=with_default(None, getattr(world, field)), dest=field)
    p.add_argument("--corrupt-rate", type=float, help=with_default(None, world.corrupt_rate))
    p.add_argument("--start", type=date_arg, dest="start_date", help=with_default(None, world.start_date))

    p = command("demo", cmd_demo, "the whole pipeline on the shipped NYC data (synthetic if absent)")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic world even if the NYC file exists")
    p.add_argument("--no-train", action="store_true", help="stop after the corpus")
    for flag in ("--days", "--users", "--stores"):
        p.add_argument(flag, type=int, help=f"synthetic world: {flag[2:]} (default: a 7-day world of 5,000 users)")
    p = command("sql", cmd_sql, "run SQL over the lake's tables (by short name: events, rejects, ...)")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=100)
    command("tables", cmd_step, "each table's version, rows and days")
    command("report", cmd_step, "a static HTML site of the lake (tables, codebooks, corpus, runs, benchmarks, quality) under _reports/site")
    command("history", cmd_history, "a table's Delta history").add_argument("table")
