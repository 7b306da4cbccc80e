"""Where a daily run's time goes, and what the gates cost: issue 43's first measurement.

    python bench/daily_cost.py --lake lake          # the demo's NYC lake (copied, never written)

The later days are the shipped file's last week again, a week on (bench/nyc_many_writers.py:
2013-01-16 ..), delivered as drops. Two copies of the lake run the same days with the
gates on, one with great-expectations computing every metric itself
(`GEOSID_QUALITY_EVALUATOR=gx`, the code before) and one with the suites measured in one
engine aggregate and decided by GX (`one_pass`, the default), alternating which copy
runs a day first; then each day again on the one-pass copy, an identical re-run (its
validations are not run again). Per run: every stage's wall seconds (the daily report's
`stages`), the gates' share, and the ratio of the one-pass run to the GX run. The two
copies' tables are compared digest for digest. Result: bench/results/daily_cost.json.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import year_of_operations as ops  # noqa: E402
from nyc_many_writers import DAYS, copy_lake, later_days  # noqa: E402
from results_io import write_results  # noqa: E402

GATES = ("validate bronze", "validate silver", "validate corpus")


def gate_seconds(stages: dict) -> float:
    return sum(v for k, v in stages.items() if k in GATES)


def run_day(ctx, day: dt_.date, drops: Path) -> dict:
    from geosid import pipeline

    report = pipeline.daily(day, "tsmc2014", drops, ctx=ctx)
    assert report.passed, report.summary()
    gates = gate_seconds(report.stages)
    return {
        "dt": day.isoformat(),
        "seconds": round(report.seconds, 2),
        "gates_seconds": round(gates, 2),
        "gates_share": round(gates / report.seconds, 3),
        "stages": {k: round(v, 2) for k, v in report.stages.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, default=Path("lake"))
    parser.add_argument("--shipped", type=Path, default=None, help="the NYC file (default: the settings' source path)")
    parser.add_argument("--days", type=int, default=4, help="later days to run (at most 5)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    from geosid.config import Settings
    from geosid.lake import Lake, spark_session
    from geosid.pipeline.context import Context
    from geosid.sources.registry import get_source

    settings = Settings.from_env(lake_root=args.lake)
    shipped = args.shipped or get_source("tsmc2014").raw_path(None, settings)
    work = Path(tempfile.mkdtemp(prefix="daily-cost-"))
    days = DAYS[: args.days]
    try:
        drops, _ = later_days(Path(shipped), work)
        runs: dict[str, list[dict]] = {"gx": [], "one_pass": [], "one_pass_rerun": []}
        with spark_session(settings) as spark:
            ctxs = {}
            for evaluator in ("gx", "one_pass"):
                root = copy_lake(args.lake, work / f"lake-{evaluator}")
                s = Settings.from_env(lake_root=root).model_copy(update={"quality_evaluator": evaluator})
                ctxs[evaluator] = Context(s, spark, Lake(root, spark, quality_evaluator=evaluator), log=lambda _: None)
            for k, day in enumerate(days):
                order = ("gx", "one_pass") if k % 2 == 0 else ("one_pass", "gx")  # who goes first alternates
                for evaluator in order:
                    runs[evaluator].append({**run_day(ctxs[evaluator], day, drops), "first": evaluator == order[0]})
                    print(evaluator, runs[evaluator][-1]["dt"], runs[evaluator][-1]["seconds"], "s", flush=True)
            for day in days:  # identical re-runs: nothing changed, nothing validated again
                runs["one_pass_rerun"].append(run_day(ctxs["one_pass"], day, drops))
            equal = ops.content_digests(ctxs["gx"].lake) == ops.content_digests(ctxs["one_pass"].lake)
        ratios = [o["seconds"] / g["seconds"] for o, g in zip(runs["one_pass"], runs["gx"])]
        gate_ratios = [o["gates_seconds"] / g["gates_seconds"] for o, g in zip(runs["one_pass"], runs["gx"])]
        results = {
            "world": f"the NYC demo lake (`{args.lake}`), later days {days[0]} .. {days[-1]} (the last week again, a week on)",
            "days": [d.isoformat() for d in days],
            "runs": runs,
            "tables_equal": equal,
            "summary": {
                "run_ratio_one_pass_to_gx": _spread(ratios),
                "gates_ratio_one_pass_to_gx": _spread(gate_ratios),
                "gates_share_gx": _spread([r["gates_share"] for r in runs["gx"]]),
                "gates_share_one_pass": _spread([r["gates_share"] for r in runs["one_pass"]]),
                "gates_share_rerun": _spread([r["gates_share"] for r in runs["one_pass_rerun"]]),
            },
        }
        path = write_results("daily_cost", results, command=" ".join(["python", "bench/daily_cost.py", *sys.argv[1:]]))
        print(f"tables equal: {equal}; run one-pass/gx {results['summary']['run_ratio_one_pass_to_gx']}; wrote {path}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.fmean(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


if __name__ == "__main__":
    main()
