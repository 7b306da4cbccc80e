"""Geo context for a range of days: one range job (blocks of days) vs one job per day.

    python bench/geo_range.py [--days 225] [--per-day-sample 14] [--work /tmp/geosid-bench-geo]

Ingests the shipped TSMC2014 NYC file into a scratch lake, then writes silver.geo_cells
for the first --days days in one `run_geo_range` call, and for --per-day-sample days
spread over the same range one `run_geo` job each (the per-day cost is extrapolated to
every day; the rows of those days are compared with the range job's, which must be
identical). Results: printed and written to bench/results/geo_range.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import time
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")

from results_io import write_results  # noqa: E402

from geosid.config import Settings  # noqa: E402
from geosid.jobs.geo import GeoConfig, run_geo, run_geo_range  # noqa: E402
from geosid.jobs.ingest import run_ingest, scan_date_range  # noqa: E402
from geosid.lake import Lake  # noqa: E402
from geosid.lake.engine import spark_session  # noqa: E402
from geosid.schemas import silver  # noqa: E402
from geosid.sources.registry import get_source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=225)
    parser.add_argument("--per-day-sample", type=int, default=14)
    parser.add_argument("--work", default="/tmp/geosid-bench-geo")
    args = parser.parse_args()
    settings = Settings.from_env()
    path = get_source("tsmc2014").default_path(settings)
    if path is None:
        raise SystemExit("the TSMC2014 file is needed (../shared/data or GEOSID_TSMC_PATH)")
    shutil.rmtree(args.work, ignore_errors=True)
    config = GeoConfig(cell_config=settings.cells, window_days=settings.geo_window_days)
    with spark_session(settings) as spark:
        range_lake = Lake(Path(args.work) / "range", spark)
        first, last = scan_date_range(range_lake, "tsmc2014", path)
        last = min(last, first + dt.timedelta(days=args.days - 1))
        run_ingest(range_lake, "tsmc2014", path, first, last, progress=False)
        days = (last - first).days + 1

        started = time.perf_counter()
        report = run_geo_range(range_lake, first, last, config, with_items=False)
        range_s = time.perf_counter() - started
        print(f"range job: {days} days in {range_s:.1f}s ({range_s / days:.2f} s a day)", flush=True)

        step = max(1, days // args.per_day_sample)
        sample = [first + dt.timedelta(days=k) for k in range(step - 1, days, step)][: args.per_day_sample]
        before = {d: range_lake.digest(silver.GEO_CELLS, dt=d) for d in sample}
        started = time.perf_counter()
        for day in sample:
            run_geo(range_lake, day, config, with_items=False)  # rewrites its day of the range job
        per_day_s = (time.perf_counter() - started) / len(sample)
        after = {d: range_lake.digest(silver.GEO_CELLS, dt=d) for d in sample}
        print(f"one job per day: {per_day_s:.2f} s a day ({len(sample)} days sampled)", flush=True)
    results = {
        "days": days,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "cells_on_last_day": report.cells,
        "range_s": round(range_s, 1),
        "range_s_per_day": round(range_s / days, 3),
        "per_day_job_s": round(per_day_s, 2),
        "per_day_all_days_s_extrapolated": round(per_day_s * days, 1),
        "speedup": round(per_day_s * days / range_s, 1),
        "identical_rows_on_sampled_days": before == after,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    shutil.rmtree(args.work, ignore_errors=True)
    write_results("geo_range", results)


if __name__ == "__main__":
    main()
