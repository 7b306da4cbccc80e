"""What every command group of the CLI shares: the parser class, argument types, the
settings and engine session of a command, date spans, usage errors, and the commands
that run one pipeline step."""

from __future__ import annotations

import argparse
import datetime as dt_
import logging
import os
import sys
from contextlib import contextmanager

from geosid import pipeline
from geosid.pipeline import InvalidRequestError, Settings, open_context


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: {message} (see {self.prog.split()[0]} --help)\n")


def date_arg(value: str) -> dt_.date:
    try:
        return dt_.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def codes_arg(value: str) -> tuple[int, ...]:
    try:
        return pipeline.parse_codes(value)
    except InvalidRequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def quiet_logs() -> None:
    # Sail's Rust server logs every session at INFO to stderr; the CLI prints its own progress.
    os.environ.setdefault("RUST_LOG", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("py4j", "great_expectations", "pyspark"):
        logging.getLogger(name).setLevel(logging.ERROR)


def settings_of(args) -> Settings:
    return Settings.from_env(engine=args.engine, spark_remote=args.remote, lake_root=args.lake, cells={"system": args.cells})


@contextmanager
def context_of(args):
    with open_context(settings_of(args), log=print, progress=sys.stderr.isatty()) as ctx:
        yield ctx


def span_of(args) -> tuple:
    if args.date and (args.from_date or args.to_date):
        raise SystemExit(usage("--date goes alone, or use --from and --to"))
    if bool(args.from_date) != bool(args.to_date):
        raise SystemExit(usage("--from and --to go together"))
    return (args.date, args.date) if args.date else (args.from_date, args.to_date)


def time_split(args):
    """The time split of a daily build from --test-start / --valid-start."""
    return pipeline.SplitConfig(test_start=args.test_start, valid_start=args.valid_start)


def usage(message: str) -> int:
    print(f"geosid: {message}", file=sys.stderr)
    return 2


def with_default(text: str | None, value) -> str:
    """Help text ending with the config object's default (argparse's stays None: the config's applies)."""
    return f"{text + ' ' if text else ''}(default: {value})"


# Commands that run one pipeline step in a session of their own; the step logs its report.
# Exit code 1 when the outcome says it did not pass (a gate, days still waiting).
STEPS = {
    "ingest": lambda a, p, ctx: p.ingest(a.source, *span_of(a), a.path, validate=not a.no_validate, ctx=ctx),
    "geo": lambda a, p, ctx: p.geo(a.date, ctx=ctx),
    "embed": lambda a, p, ctx: p.embed(a.date, a.encoder, a.template, ctx=ctx),
    "assign": lambda a, p, ctx: p.assign_day(a.date, a.codebook_version, ctx=ctx),
    "backfill": lambda a, p, ctx: p.backfill(a.codebook_version, a.from_date, a.to_date, ctx=ctx),
    "tables": lambda a, p, ctx: print(p.format_tables(p.tables(ctx=ctx))),
    "report": lambda a, p, ctx: p.build_report(ctx=ctx),
    "status": lambda a, p, ctx: print(p.status(ctx=ctx).summary()),
    "repair": lambda a, p, ctx: p.repair(a.from_date, validate=not a.no_validate, ctx=ctx),
    "daily": lambda a, p, ctx: p.daily(a.date, a.source, a.path, time_split(a), validate=not a.no_validate, ctx=ctx),
    "days": lambda a, p, ctx: p.close_day(a.source, a.date, a.reason, ctx=ctx),
    "maintain": lambda a, p, ctx: p.maintain(a.retention_hours, a.log_retention_hours, force=a.force, tables=a.tables, ctx=ctx),
}


def cmd_step(args, p) -> int:
    with context_of(args) as ctx:
        outcome = STEPS[args.command](args, p, ctx)
    return 0 if getattr(outcome, "passed", True) else 1
