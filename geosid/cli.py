"""`geosid` command line: parses arguments, calls `geosid.pipeline`, prints.

A user's mistake (bad path, unknown name, bad SQL, a refused gate) is one line on stderr
and exit code 1; bad usage is one line and exit code 2; `--debug` (or GEOSID_DEBUG=1)
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import logging
import os
import sys
from contextlib import contextmanager

import pandas as pd
from pydantic import ValidationError

from geosid import pipeline
from geosid.pipeline import TOKENIZER_KINDS, InvalidRequestError, Settings, open_context, source_names, user_errors


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: {message} (see {self.prog.split()[0]} --help)\n")


def _date(value: str) -> dt_.date:
    try:
        return dt_.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _codes(value: str) -> tuple[int, ...]:
    try:
        return pipeline.parse_codes(value)
    except InvalidRequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _quiet_logs() -> None:
    # Sail's Rust server logs every session at INFO to stderr; the CLI prints its own progress.
    os.environ.setdefault("RUST_LOG", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("py4j", "great_expectations", "pyspark"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _settings(args) -> Settings:
    return Settings.from_env(engine=args.engine, spark_remote=args.remote, lake_root=args.lake, cells={"system": args.cells})


@contextmanager
def _context(args):
    with open_context(_settings(args), log=print, progress=sys.stderr.isatty()) as ctx:
        yield ctx


def _span(args) -> tuple:
    if args.date and (args.from_date or args.to_date):
        raise SystemExit(_usage("--date goes alone, or use --from and --to"))
    if bool(args.from_date) != bool(args.to_date):
        raise SystemExit(_usage("--from and --to go together"))
    return (args.date, args.date) if args.date else (args.from_date, args.to_date)


def _time_split(args):
    """The time split of a daily build from --test-start / --valid-start."""
    return pipeline.SplitConfig(test_start=args.test_start, valid_start=args.valid_start)


def _usage(message: str) -> int:
    print(f"geosid: {message}", file=sys.stderr)
    return 2


def cmd_validate(args, p) -> int:
    first, last = _span(args)
    if first is None:
        return _usage("validate needs --date or --from/--to")
    with _context(args) as ctx:
        return 0 if p.validate_bronze(first, last, ctx=ctx).passed else 1


# Commands that run one pipeline step in a session of their own; the step logs its report.
# Exit code 1 when the outcome says it did not pass (a gate, days still waiting).
STEPS = {
    "ingest": lambda a, p, ctx: p.ingest(a.source, *_span(a), a.path, validate=not a.no_validate, ctx=ctx),
    "geo": lambda a, p, ctx: p.geo(a.date, ctx=ctx),
    "embed": lambda a, p, ctx: p.embed(a.date, a.encoder, a.template, ctx=ctx),
    "assign": lambda a, p, ctx: p.assign_day(a.date, a.codebook_version, ctx=ctx),
    "backfill": lambda a, p, ctx: p.backfill(a.codebook_version, a.from_date, a.to_date, ctx=ctx),
    "tables": lambda a, p, ctx: print(p.format_tables(p.tables(ctx=ctx))),
    "report": lambda a, p, ctx: p.build_report(ctx=ctx),
    "status": lambda a, p, ctx: print(p.status(ctx=ctx).summary()),
    "repair": lambda a, p, ctx: p.repair(a.from_date, validate=not a.no_validate, ctx=ctx),
    "daily": lambda a, p, ctx: p.daily(a.date, a.source, a.path, _time_split(a), not a.no_validate, ctx=ctx),
    "days": lambda a, p, ctx: p.close_day(a.source, a.date, a.reason, ctx=ctx),
    "maintain": lambda a, p, ctx: p.maintain(a.retention_hours, a.log_retention_hours, a.force, a.tables, ctx=ctx),
}


def cmd_step(args, p) -> int:
    with _context(args) as ctx:
        outcome = STEPS[args.command](args, p, ctx)
    return 0 if getattr(outcome, "passed", True) else 1


def cmd_codebook(args, p) -> int:
    with _context(args) as ctx:
        if args.action == "fit":
            spec = p.CodebookSpec(args.method, args.codes, args.niter, args.seed, args.sample_size, capacity_aware=args.capacity_aware)
            report = p.fit_codebook(spec, args.date, template=args.template, embeddings_version=args.embeddings_version,
                                    item_geo_version=args.item_geo_version, ctx=ctx)  # fmt: skip
            print(f"version {report.codebook_version} is a candidate; publish with: "
                  f"geosid codebook publish --version {report.codebook_version}")  # fmt: skip
        elif args.action == "publish":
            if not args.codebook_version:
                return _usage("codebook publish needs --version (see: geosid codebook list)")
            gates = {"max_excess_conflict": args.max_excess_conflict, "min_exclusive_rate": args.min_exclusive,
                     "min_code_usage": args.min_usage}  # fmt: skip
            gates = {k: v for k, v in gates.items() if v is not None}  # unset: the Gates defaults
            p.publish_codebook(args.codebook_version, args.date, gates, ctx=ctx)
        else:
            print(p.list_codebooks(ctx=ctx))
    return 0


def cmd_sid(args, p) -> int:
    with _context(args) as ctx:
        if args.action == "report":
            if not args.codebook_version:
                return _usage("sid report needs --version (see: geosid codebook list)")
            print(p.sid_report(args.codebook_version, args.out, ctx=ctx)[0])
        else:
            print(p.sid_compare(args.codebook_versions, ctx=ctx))
    return 0


def cmd_corpus(args, p) -> int:
    first, last = _span(args)
    with _context(args) as ctx:
        if args.action == "day":
            if first is None or first != last:
                return _usage("corpus day takes one --date")
            outcome = p.corpus_day(first, args.source, args.codebook_version, _time_split(args), validate=True, ctx=ctx)
        elif args.action == "build":
            split = p.split_config(args.split, last or p.source_days(ctx, args.source)[1], args.test_start,
                                   args.valid_start, args.test_days, args.valid_days)  # fmt: skip
            outcome = p.corpus_build(args.source, first, last, args.codebook_version, split, ctx=ctx)
        else:
            first, last = (first, last) if first else p.source_days(ctx, args.source)
            outcome = p.validate_corpus(first, last, args.codebook_version, args.split, ctx=ctx)
    return 0 if outcome.passed else 1


def _train_options(args) -> dict:
    """The TrainConfig options the command line set (None: the config's default), and the
    ablation switches."""
    ablation = {"prompt": args.prompt} if args.prompt else {}
    for switch, _ in ABLATIONS:
        ablation.update({switch: False} if getattr(args, f"no_{switch}") else {})
    return {**{name: getattr(args, name) for name, _ in TRAIN_OPTIONS}, "ablation": ablation}


def cmd_train(args, p) -> int:
    lake_root = str(_settings(args).lake_root)
    if args.action == "benchmark":
        # the benchmark's own defaults (30 epochs with patience, 20 minutes a run) unless given
        given = {"size": args.size, "epochs": args.epochs, "max_minutes": args.max_minutes, "seeds": args.seeds}
        options = {**{k: v for k, v in given.items() if v is not None}, "ablations": not args.no_ablations}
        if args.no_grid or args.grid:
            options["grid"] = ({}, *([] if args.no_grid else [p.grid_point(point) for point in args.grid]))
        with _context(args) as ctx:
            for protocol in args.protocols or p.BENCHMARK_PROTOCOLS:
                p.benchmark(protocol, paper_decoder=args.paper_decoder, ctx=ctx, **options)
        return 0
    if args.action == "pretrain":
        p.pretrain(p.train_config(**_train_options(args)), args.codebook_version, args.run_id, args.resume, lake_root=lake_root)
    elif args.action == "dpo":
        given = {k: v for k, v in _train_options(args).items() if v is not None and v != {}}  # over the parent's config
        cfg, changes = (p.train_config(**_train_options(args)), None) if args.override else (None, given)
        if not args.sweep:
            return p.dpo(args.from_run, cfg, args.run_id, changes=changes, lake_root=lake_root) and 0
        with _context(args) as ctx:
            p.dpo_sweep(args.from_run, cfg, args.sweep_lambdas, args.sweep_betas, changes=changes, ctx=ctx)
    else:
        p.evaluate(args.run, args.split, args.eval_limit, lake_root=lake_root)
    return 0


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
    with _context(args) as ctx:
        report = p.demo(synthetic=args.synthetic, world=world, train=not args.no_train, ctx=ctx)
    for failure in report.failures:
        print(f"FAILED: {failure}")
    print(f"\nlake: {ctx.lake.root}  (try: geosid sql \"SELECT reason, count(*) FROM rejects GROUP BY reason\")")
    return 0 if report.ok else 1


def cmd_sql(args, p) -> int:

    with _context(args) as ctx:
        frame = p.sql(args.query, args.limit, ctx=ctx)
    with pd.option_context("display.max_rows", args.limit, "display.max_columns", 50, "display.width", 200):
        print(frame.to_string(index=False))
    return 0


def cmd_history(args, p) -> int:
    for entry in p.history(args.table, lake_root=str(_settings(args).lake_root)):
        params = entry.get("operationParameters", {})
        print(f"v{entry.get('version')}  {entry.get('operation'):<13} predicate={params.get('predicate', '')}")
    return 0


def _default(text: str | None, value) -> str:
    """Help text ending with the config object's default (argparse's stays None: the config's applies)."""
    return f"{text + ' ' if text else ''}(default: {value})"


def _add_ingest_and_silver(command, add_range, sources) -> None:
    p = command("ingest", cmd_step, "raw source -> bronze.events/items/rejects, then data quality")
    p.add_argument("--source", choices=sources, required=True)
    p.add_argument("--path", help="file, or folder of dt=YYYY-MM-DD drops (default: the source's configured or shipped path)")
    p.add_argument("--no-validate", action="store_true", help="skip the data-quality gate")
    add_range(p)
    add_range(command("validate", cmd_validate, "run the bronze data-quality suites for a day or range"))
    command("geo", cmd_step, "silver.geo_cells and silver.item_geo as of a logical date").add_argument("--date", type=_date, required=True)
    p = command("embed", cmd_step, "embed new and changed item documents of a logical date")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--encoder", help="minilm (default) or hf:<local model dir>; default: $GEOSID_ENCODER")
    p.add_argument("--template", help="document template: content-v1, geo-doc-v1, geo-doc-v2 (default: $GEOSID_TEMPLATE or geo-doc-v2)")


def _add_index(command) -> None:
    spec, gates = pipeline.CodebookSpec(), pipeline.Gates()
    p = command("codebook", cmd_codebook, "fit / publish / list codebook versions", "fit", "publish", "list")
    p.add_argument("--method", default=spec.method, choices=list(TOKENIZER_KINDS))
    p.add_argument("--codes", type=_codes, help="codes per level, e.g. 64,64,64 (default: sized to the data)")
    p.add_argument("--niter", type=int, default=spec.niter)
    p.add_argument("--seed", type=int, default=spec.seed)
    p.add_argument("--sample-size", type=int, help="train k-means on this many items (default: all)")
    p.add_argument("--embeddings-version", type=int, help="pinned silver.item_embeddings table version (default: latest)")
    p.add_argument("--item-geo-version", type=int, help="pinned silver.item_geo table version (default: latest)")
    p.add_argument("--date", type=_date, help="logical date (default: the latest day of silver.item_geo)")
    p.add_argument("--version", dest="codebook_version", help="the version to publish")
    p.add_argument("--max-excess-conflict", type=float, help=_default("conflict rate above the identical-vector floor", gates.max_excess_conflict))
    p.add_argument("--min-exclusive", type=float, help=_default(None, gates.min_exclusive_rate))
    p.add_argument("--min-usage", type=float, help=_default(None, gates.min_code_usage))
    p.add_argument("--capacity-aware", action="store_true", help="fit: last level by capacity-aware assignment")
    p.add_argument("--template", help="fit: the vectors' document template (default: $GEOSID_TEMPLATE or geo-doc-v2)")

    p = command("sid", cmd_sid, "SID reports: report --version V (with plots), compare [V1 V2 ...] (default: all)", "report", "compare")
    p.add_argument("--version", dest="codebook_version")
    p.add_argument("--out", help="folder for the plots (default: <lake>/_reports/<version>)")
    p.add_argument("codebook_versions", nargs="*", metavar="version")
    p = command("assign", cmd_step, "SIDs for a day's new items under the version in force on the day")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--version", dest="codebook_version", help="codebook version (default: the one published as of the date)")
    p = command("backfill", cmd_step, "give every item of a date range a SID under a version")
    p.add_argument("--version", dest="codebook_version", required=True)
    p.add_argument("--from", dest="from_date", type=_date, required=True)
    p.add_argument("--to", dest="to_date", type=_date, required=True)


def _add_corpus(command, add_range, sources) -> None:
    p = command("corpus", cmd_corpus, "training corpus: build a range from scratch, one day incrementally, or validate",
                "build", "day", "validate")  # fmt: skip
    p.add_argument("--source", choices=sources, default="tsmc2014")
    p.add_argument("--version", dest="codebook_version", help="codebook version (default: the one published as of the last day)")
    p.add_argument("--split", choices=list(pipeline.PROTOCOLS), default="time",
                   help="split protocol (user_chrono, libcity, trajectory: range builds; see the README)")
    for flag, kind, text in (("--test-start", _date, "first test day"), ("--valid-start", _date, "first valid day"),
                             ("--test-days", int, "the range's last N days are test"),
                             ("--valid-days", int, "the N days before the test days are valid")):  # fmt: skip
        p.add_argument(flag, type=kind, help=f"time split: {text}")
    add_range(p)


# TrainConfig fields the command line sets, with their help; the defaults are TrainConfig's.
TRAIN_OPTIONS = (
    ("size", None), ("epochs", "at most; early stopping may end sooner"), ("batch_size", None), ("lr", None), ("dropout", "default: the model's own"),
    ("max_history", "latest events kept per behavior"), ("beam", None), ("eval_limit", "score at most N requests"),
    ("dpo_requests", "dpo: train requests sampled for pairs"), ("dpo_candidates", "dpo: beam candidates per request"),
    ("dpo_lambda", "dpo: L = L_ntp + lambda * L_dpo"), ("dpo_beta", None), ("dpo_epochs", None), ("dpo_lr", "dpo: default half the lr"), ("dpo_min_gap", "dpo: smallest reward gap of a pair"),
    ("dpo_pairs_per_request", None), ("dpo_heldout", "dpo: valid requests whose pairs measure preference accuracy"),
    ("geo_max_km", "geographic reward: 1/d within this distance"), ("gmv_weight", "weight of the GMV reward (sources with GMV)"),
    ("patience", "epochs without a better valid metric before stopping"),
    ("max_minutes", "a time budget per model (no epoch starts after it)"),
    ("item_min_count", "train occurrences for an own item-id embedding"),
    ("device", "auto (cuda + bf16 when available), cpu, cuda"), ("protocol", "the corpus's split protocol"), ("model", None),
)  # fmt: skip
CHOICES = {"size": pipeline.SIZE_NAMES, "protocol": pipeline.PROTOCOLS, "model": pipeline.MODEL_KINDS}
ABLATIONS = (
    ("location_scores", "no E_lc E_lc^T in attention"), ("location_gate", "no location gate"),
    ("copy_head", "no copy of the history's SID tokens (the paper's decoder)"),
    ("time_features", "no hour-of-week / event-age inputs"), ("routine_features", "no visit counts at the request's time of day"),
    ("repeat_features", "no visit / own-transition counts of history items"),
    ("candidates", "no transition candidates (train next items of the latest item)"),
)  # fmt: skip


def _add_train(command) -> None:
    p = command("train", cmd_train, "OneLoc: pretrain, align with DPO, evaluate (on a pinned corpus snapshot); benchmark",
                "pretrain", "dpo", "eval", "benchmark")  # fmt: skip
    defaults = pipeline.TRAIN_DEFAULTS
    for name, text in TRAIN_OPTIONS:
        default = getattr(defaults, name)
        kind = {"max_minutes": float, "eval_limit": int, "dropout": float, "dpo_lr": float}.get(name) or type(default)  # those default to None
        p.add_argument("--" + name.replace("_", "-"), type=kind, choices=CHOICES.get(name), help=_default(text, default))
    p.add_argument("--protocols", nargs="*", choices=list(pipeline.BENCHMARK_PROTOCOLS), help="benchmark: the protocols (default: all)")
    p.add_argument("--no-ablations", action="store_true", help="benchmark: baselines, SASRec, TIGER and OneLoc only (no ablations, no DPO)")
    p.add_argument("--paper-decoder", action="store_true", help="benchmark: also OneLoc without copy head and time features")
    p.add_argument("--no-grid", action="store_true", help="benchmark: every learned model at its defaults only (no tuning grid)")
    p.add_argument("--grid", nargs="+", metavar="NAME=VALUE", help="benchmark: the grid points besides the defaults, e.g. lr=0.003 "
                   "dropout=0.3 size=small (default: those three)")
    p.add_argument("--seeds", type=int, help="benchmark: seeds of OneLoc and the best learned baseline at their chosen points (default: 3)")
    p.add_argument("--resume", action="store_true", help="pretrain: continue --run-id from its last checkpoint")
    p.add_argument("--version", dest="codebook_version", help="codebook version of the corpus (default: the only one present)")
    p.add_argument("--run-id", help="name of the new run (default: kind-timestamp-random)")
    p.add_argument("--from-run", help="dpo: the pretrained run (default: the latest)")
    p.add_argument("--run", help="eval: the run (default: the latest DPO, else pretrain, run)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--override", action="store_true", help="dpo: options over the defaults, not the parent's")
    p.add_argument("--sweep", action="store_true", help="dpo: every lambda x beta beside a lambda-0 control, table and trade-off plot")
    p.add_argument("--sweep-lambdas", nargs="+", type=float, help="dpo --sweep: the lambdas (default: 0.05 0.2 1)")
    p.add_argument("--sweep-betas", nargs="+", type=float, help="dpo --sweep: the betas (default: 0.1 0.5)")
    for switch, text in ABLATIONS:
        p.add_argument("--no-" + switch.replace("_", "-"), action="store_true", help=f"ablation: {text}")
    p.add_argument("--prompt", choices=["neighbor", "pointwise", "mlp", "none"], help="ablation: the decoder's prompt")


def _add_tools(command) -> None:
    world = pipeline.WorldConfig()
    p = command("synth", cmd_synth, "write a synthetic local-life world as raw daily drops")
    p.add_argument("--out", required=True)
    for flag, field in (("--days", "n_days"), ("--users", "n_users"), ("--stores", "n_stores"), ("--seed", "seed")):
        p.add_argument(flag, type=int, help=_default(None, getattr(world, field)), dest=field)
    p.add_argument("--corrupt-rate", type=float, help=_default(None, world.corrupt_rate))
    p.add_argument("--start", type=_date, dest="start_date", help=_default(None, world.start_date))

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


def _add_operations(command, sources) -> None:
    store = {"action": "store_true"}
    for name, text, options in (
        ("status", "input days (arrived, closed, awaited); per derived table its fresh, stale and missing days, and why", {}),
        ("repair", "rebuild the stale and missing days, in order, from the nearest state checkpoint", {
            "--from": {"dest": "from_date", "type": _date, "help": "also rebuild every built day from this day on"},
            "--no-validate": {**store, "help": "skip the corpus gate"}}),
        ("daily", "the daily DAG's run of a day in one process (late drops, catch-up, the day, repairs)", {
            "--date": {"type": _date, "required": True}, "--source": {"choices": sources, "default": "tsmc2014"},
            "--path": {"help": "file or folder of dt=YYYY-MM-DD drops"}, "--test-start": {"type": _date, "help": "time split: first test day"},
            "--valid-start": {"type": _date, "help": "time split: first valid day"}, "--no-validate": {**store, "help": "skip the gates"}}),
        ("days", "close a day whose drop will not come (it builds as empty): days close --date D --source S --reason R", {
            "--date": {"type": _date, "required": True}, "--source": {"choices": sources, "required": True},
            "--reason": {"required": True, "help": "why (shown by geosid status)"}}),
        ("maintain", "compact, vacuum and checkpoint the tables (keeps what pinned training snapshots need)", {
            "--retention-hours": {"type": float, "help": "delete replaced files older than this (default: settings, 168)"},
            "--log-retention-hours": {"type": float, "help": "remove log entries older than this (default: settings, 720)"},
            "--force": {**store, "help": "also delete files pinned training snapshots need"},
            "--table": {"dest": "tables", "action": "append", "help": "only this table (repeatable)"}}),
    ):  # fmt: skip
        p = command(name, cmd_step, text, *(("close",) if name == "days" else ()))
        for flag, kwargs in options.items():
            p.add_argument(flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="geosid", description="geosid: the data-and-index system for geo-aware generative recommendation")
    parser.add_argument("--lake", help="lake root (default: $GEOSID_LAKE or ./lake)")
    parser.add_argument("--engine", choices=["sail", "spark-local", "remote"], help="default: $GEOSID_ENGINE or sail")
    parser.add_argument("--remote", help="Spark Connect URL for --engine remote (sc://host:15002)")
    parser.add_argument("--cells", choices=["geohash", "h3"], help="cell system (default: $GEOSID_CELL_SYSTEM or geohash)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also GEOSID_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name, func, help, *actions):
        p = sub.add_parser(name, help=help)
        if actions:
            p.add_argument("action", choices=actions)
        p.set_defaults(func=func)
        return p

    def add_range(p):
        p.add_argument("--date", type=_date, help="one logical date")
        p.add_argument("--from", dest="from_date", type=_date, help="first date of a range")
        p.add_argument("--to", dest="to_date", type=_date, help="last date of a range (inclusive)")

    sources = source_names()
    _add_ingest_and_silver(command, add_range, sources)
    _add_index(command)
    _add_corpus(command, add_range, sources)
    _add_train(command)
    _add_tools(command)
    _add_operations(command, sources)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_logs()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (exit 2) and --help (exit 0), already printed
        return exc.code if isinstance(exc.code, int) else 2
    debug = args.debug or os.environ.get("GEOSID_DEBUG", "") not in ("", "0")

    try:
        return args.func(args, pipeline)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    except (*user_errors(), ValidationError) as exc:
        # Refusals and mistakes the user acts on (ValidationError: a setting out of its
        # range): say why, no traceback.
        if debug:
            raise
        print(f"geosid: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
