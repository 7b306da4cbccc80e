"""`geosid` command line: parses arguments, calls `geosid.pipeline`, prints.

A user's mistake (bad path, unknown name, bad SQL, a refused gate) is one line on stderr
and exit code 1; bad usage is one line and exit code 2; `--debug` (or GEOSID_DEBUG=1)
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError

from geosid import pipeline
from geosid.cli.common import Parser, date_arg, quiet_logs
from geosid.cli.data import add_corpus, add_index, add_ingest_and_silver
from geosid.cli.operations import add_airflow, add_operations
from geosid.cli.tools import add_tools
from geosid.cli.train import add_train
from geosid.pipeline import engine_errors, source_names, user_errors


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="geosid", description="geosid: the data-and-index system for geo-aware generative recommendation")
    parser.add_argument("--lake", help="lake root (default: $GEOSID_LAKE or ./lake)")
    parser.add_argument("--engine", choices=["sail", "spark-local", "remote"], help="default: $GEOSID_ENGINE or sail")
    parser.add_argument("--remote", help="Spark Connect URL for --engine remote (sc://host:15002)")
    parser.add_argument("--cells", choices=["geohash", "h3"], help="cell system (default: $GEOSID_CELL_SYSTEM or geohash)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also GEOSID_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name, func, help, *actions):
        p = sub.add_parser(name, help=help)
        if actions:
            p.add_argument("action", choices=actions)
        p.set_defaults(func=func)
        return p

    def add_range(p):
        p.add_argument("--date", type=date_arg, help="one logical date")
        p.add_argument("--from", dest="from_date", type=date_arg, help="first date of a range")
        p.add_argument("--to", dest="to_date", type=date_arg, help="last date of a range (inclusive)")

    sources = source_names()
    add_ingest_and_silver(command, add_range, sources)
    add_index(command)
    add_corpus(command, add_range, sources)
    add_train(command)
    add_tools(command)
    add_operations(command, sources)
    add_airflow(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_logs()
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
    except engine_errors() as exc:
        if debug:
            raise
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        print(f"geosid: the engine failed in `{args.command}`: {first[:300]} (--debug shows the traceback)", file=sys.stderr)
        return 1
