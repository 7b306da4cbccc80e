"""Ingest throughput (rows/s) for TSMC2014 NYC and synthetic worlds of ~1M and ~10M events.

    python bench/ingest_throughput.py                 # nyc, 1m, 10m
    python bench/ingest_throughput.py --cases nyc 1m  # a subset

Each case runs in a fresh lake under --work (default /tmp/geosid-bench) on the engine of
GEOSID_ENGINE (default sail). Results are printed and written as JSON to bench/results/.
Rows are raw lines in (events + rejects + catalog lines); the synthetic generator's own
speed (events/min) is reported beside.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")

from geosid.config import Settings  # noqa: E402
from geosid.jobs.ingest import run_ingest, scan_date_range  # noqa: E402
from geosid.lake import Lake  # noqa: E402
from geosid.lake.engine import spark_session  # noqa: E402
from geosid.sources.registry import get_source  # noqa: E402
from geosid.sources.synthetic_world import WorldConfig, write_world  # noqa: E402

# ~8.6 events per user-day with the default funnel: 16.5k users x 7 days ~ 1M events.
SYNTHETIC_CASES = {
    "1m": WorldConfig(n_days=7, n_users=16_500, n_stores=3_000),
    "10m": WorldConfig(n_days=7, n_users=165_000, n_stores=20_000, n_brands=1_000),
}


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_case(spark, settings: Settings, name: str, work: Path) -> dict:
    lake_root = work / name / "lake"
    shutil.rmtree(work / name, ignore_errors=True)
    lake = Lake(lake_root, spark, committer=settings.committer())
    result: dict = {"case": name}
    if name == "nyc":
        path = get_source("tsmc2014").default_path(settings)
        if path is None:
            return {"case": name, "skipped": "TSMC2014 file not found"}
        source = "tsmc2014"
        first, last = scan_date_range(lake, source, path)
    else:
        config = SYNTHETIC_CASES[name]
        path = work / name / "raw"
        started = time.perf_counter()
        manifest = write_world(path, config, progress=False)
        gen_s = time.perf_counter() - started
        result.update(
            generated_events=manifest["totals"]["events"],
            generate_s=round(gen_s, 2),
            generate_events_per_min=round(manifest["totals"]["events"] / gen_s * 60),
        )
        source, first, last = "synthetic", config.start, config.days()[-1]
    report = run_ingest(lake, source, path, first, last, progress=False)
    result.update(
        source=source,
        lines=report.lines_landed,
        events=report.events,
        rejects=report.rejects,
        items=report.items,
        ingest_s=round(report.seconds, 2),
        rows_per_s=round(report.lines_landed / report.seconds),
    )
    # a re-run of the same range (idempotent replace of existing partitions)
    rerun = run_ingest(lake, source, path, first, last, progress=False)
    result.update(rerun_s=round(rerun.seconds, 2), rerun_rows_per_s=round(rerun.lines_landed / rerun.seconds))
    result["peak_rss_mb"] = round(_peak_rss_mb())
    shutil.rmtree(work / name, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["nyc", "1m", "10m"], choices=["nyc", *SYNTHETIC_CASES])
    parser.add_argument("--work", default="/tmp/geosid-bench")
    args = parser.parse_args()
    settings = Settings.from_env()
    results = []
    with spark_session(settings) as spark:
        for name in args.cases:
            print(f"--- {name}", flush=True)
            result = bench_case(spark, settings, name, Path(args.work))
            print(json.dumps(result), flush=True)
            results.append(result)
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    payload = {
        "engine": settings.engine,
        "committer": settings.committer(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    (out_dir / "ingest_throughput.json").write_text(json.dumps(payload, indent=2))
    print(f"\n{'case':<6}{'lines':>12}{'ingest s':>10}{'rows/s':>10}{'rerun s':>9}{'gen ev/min':>12}")
    for r in results:
        if "skipped" in r:
            print(f"{r['case']:<6} skipped: {r['skipped']}")
            continue
        gen = f"{r['generate_events_per_min']:,}" if "generate_events_per_min" in r else "-"
        print(f"{r['case']:<6}{r['lines']:>12,}{r['ingest_s']:>10}{r['rows_per_s']:>10,}{r['rerun_s']:>9}{gen:>12}")


if __name__ == "__main__":
    main()
