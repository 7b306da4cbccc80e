"""Training-sequence build: throughput and peak memory on synthetic worlds of ~1M and
~10M events, and the time of one more incremental day as history grows.

    python bench/sequences_throughput.py                    # 1m, 10m, days
    python bench/sequences_throughput.py --cases 1m days    # a subset

Cases 1m / 10m: generate the world, ingest it, give every item a SID (hashed codes, so
the bench measures the corpus job, not the codebook fit), then build every day's
sequences from scratch (events/s over every input event) and re-build the last day
incrementally. Case days: a 56-day world; day 1 from scratch, then each later day
incrementally from the previous day's state: the per-day seconds should stay about flat.
Results go to bench/results/sequences_throughput.json.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import os
import platform
import resource
import shutil
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")

from pyspark.sql import Window
from pyspark.sql import functions as F

from geosid.config import Settings
from geosid.jobs.corpus import CorpusConfig, build_day, build_range
from geosid.jobs.ingest import run_ingest
from geosid.lake import Lake
from geosid.lake.engine import spark_session
from geosid.schemas import bronze, index
from geosid.sources.synthetic_world import WorldConfig, write_world

CASES = {
    "1m": WorldConfig(n_days=7, n_users=16_500, n_stores=3_000),
    "10m": WorldConfig(n_days=7, n_users=165_000, n_stores=20_000, n_brands=1_000),
    "days": WorldConfig(n_days=56, n_users=2_000, n_stores=2_000),
}
VERSION = "bench-hashed"


def peak_rss_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own), "peak_rss_children_mb": round(children)}


def hashed_sid_map(lake: Lake, levels: int = 3, size: int = 256) -> int:
    """Every item of bronze.items gets hashed codes and a disambiguation digit."""
    items = (
        lake.read(bronze.ITEMS)
        .groupBy("source", "item_id")
        .agg(F.min("first_seen").alias("first_seen"), F.median("lat").alias("lat"), F.median("lon").alias("lon"))
    )
    codes = F.array(*[F.pmod(F.xxhash64("item_id", F.lit(k)), F.lit(size)).cast("int") for k in range(levels)])
    coded = items.withColumn("codes", codes)
    digit = F.row_number().over(Window.partitionBy("codes").orderBy("first_seen", "item_id")) - 1
    rows = coded.withColumn("disambiguation", digit.cast("int")).select(
        F.lit(VERSION).alias("version"),
        "source",
        "item_id",
        "codes",
        "disambiguation",
        F.concat_ws("-", F.transform("codes", lambda c: c.cast("string")), F.col("disambiguation").cast("string")).alias("sid"),
        "first_seen",
        "lat",
        "lon",
        F.lit(dt_.date(2024, 1, 1)).alias("assigned_dt"),
    )
    lake.write(rows, index.SID_MAP, where=f"version = '{VERSION}'")
    return lake.read(index.SID_MAP).count()


def prepare(spark, settings, name: str, work: Path) -> tuple[Lake, WorldConfig, dict]:
    config = CASES[name]
    shutil.rmtree(work / name, ignore_errors=True)
    lake = Lake(work / name / "lake", spark, committer=settings.committer())
    manifest = write_world(work / name / "raw", config, progress=False)
    ingest = run_ingest(lake, "synthetic", work / name / "raw", config.start, config.days()[-1], progress=False)
    return lake, config, {"events": ingest.events, "items": hashed_sid_map(lake), "generated": manifest["totals"]["events"]}


def bench_full(spark, settings, name: str, work: Path) -> dict:
    lake, world, info = prepare(spark, settings, name, work)
    config = CorpusConfig.for_source("synthetic")
    first, last = world.start, world.days()[-1]
    full = build_range(lake, VERSION, first, last, config)
    day = build_day(lake, VERSION, last, config)
    result = {
        "case": name,
        **info,
        "input_events": full.input_events,
        "targets": full.targets,
        "states": full.states,
        "full_s": round(full.seconds, 1),
        "events_per_s": round(full.input_events / full.seconds),
        "targets_per_s": round(full.targets / full.seconds),
        "last_day_incremental_s": round(day.seconds, 1),
        "last_day_targets": day.targets,
        **peak_rss_mb(),
    }
    shutil.rmtree(work / name, ignore_errors=True)
    return result


def bench_days(spark, settings, work: Path) -> dict:
    lake, world, info = prepare(spark, settings, "days", work)
    config = CorpusConfig.for_source("synthetic")
    days = world.days()
    per_day = [build_range(lake, VERSION, days[0], days[0], config)]
    for day in days[1:]:
        per_day.append(build_day(lake, VERSION, day, config))
    seconds = [round(r.seconds, 2) for r in per_day]
    result = {
        "case": "days",
        **info,
        "days": len(days),
        "seconds_per_day": seconds,
        "targets_per_day": [r.targets for r in per_day],
        "state_events_per_day": [r.input_events for r in per_day],
        "weekly_mean_s": [round(sum(seconds[k : k + 7]) / len(seconds[k : k + 7]), 2) for k in range(1, len(seconds), 7)],
        "state_bound_events": world.n_users * sum(b.max_len for b in config.behaviors),
        **peak_rss_mb(),
    }
    shutil.rmtree(work / "days", ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["1m", "10m", "days"], choices=list(CASES))
    parser.add_argument("--work", default="/tmp/geosid-bench-seq")
    args = parser.parse_args()
    settings = Settings.from_env()
    results = []
    with spark_session(settings) as spark:
        for name in args.cases:
            print(f"--- {name}", flush=True)
            result = bench_days(spark, settings, Path(args.work)) if name == "days" else bench_full(spark, settings, name, Path(args.work))
            print(json.dumps(result), flush=True)
            results.append(result)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    payload = {"engine": settings.engine, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "results": results}
    (out / "sequences_throughput.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
