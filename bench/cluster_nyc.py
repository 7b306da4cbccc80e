"""The NYC pipeline from ingest to corpus on the local standalone cluster and on the
embedded default: every table's digest compared, and each engine's wall time per step.

    python bench/cluster_nyc.py                     # starts deploy/cluster.sh, stops it after
    python bench/cluster_nyc.py --remote sc://127.0.0.1:15002   # a cluster that is up

Steps on each engine, into its own lake: ingest (the shipped TSMC2014 NYC file), geo
snapshots every `--every` days and as of the last day, embed, a residual k-means codebook
(published with open gates: the comparison is about engines, not gates), SIDs for every
item, the corpus of every day from scratch (time protocol), then the last day again
incrementally. Results: bench/results/cluster_nyc.json.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
OPEN_GATES = {"max_excess_conflict": 1.0, "min_exclusive_rate": 0.0, "min_code_usage": 0.0}


def run_steps(settings, every: int) -> dict:
    """The steps on `settings`' engine; returns seconds per step."""
    from geosid import pipeline
    from geosid.pipeline.context import open_context
    from geosid.sources.registry import get_source

    path = get_source("tsmc2014").default_path(settings)
    if path is None:
        raise SystemExit("the TSMC2014 NYC file is not there (../shared/data or GEOSID_TSMC_PATH)")
    seconds = {}
    with open_context(settings) as ctx:

        def timed(name, call):
            started = time.perf_counter()
            out = call()
            seconds[name] = round(time.perf_counter() - started, 1)
            print(f"  {settings.engine}: {name} {seconds[name]}s", flush=True)
            return out

        bronze = timed("ingest", lambda: pipeline.ingest("tsmc2014", path=path, ctx=ctx))
        first, last = bronze.report.first, bronze.report.last
        timed("geo snapshots", lambda: pipeline.context_snapshots(first, last, every=every, ctx=ctx))
        timed("geo", lambda: pipeline.geo(last, ctx=ctx))
        timed("embed", lambda: pipeline.embed(last, ctx=ctx))
        fit = timed("codebook", lambda: pipeline.fit_codebook(pipeline.CodebookSpec("residual_kmeans"), last, ctx=ctx))
        timed("publish", lambda: pipeline.publish_codebook(fit.codebook_version, last, OPEN_GATES, ctx=ctx))
        timed("assign", lambda: pipeline.backfill(fit.codebook_version, first, last, ctx=ctx))
        split = pipeline.split_config("time", last, test_days=3, valid_days=3)
        timed("corpus", lambda: pipeline.corpus_build("tsmc2014", first, last, fit.codebook_version, split, ctx=ctx))
        timed("corpus day", lambda: pipeline.corpus_day(last, "tsmc2014", fit.codebook_version, split, ctx=ctx))
    return seconds


def digests(root: Path) -> dict:
    """Every table's (rows, digest), read by the embedded engine (the same reader for both)."""
    from geosid.config import Settings
    from geosid.lake import Lake
    from geosid.lake.engine import spark_session
    from geosid.schemas import REGISTRY

    with spark_session(Settings(lake_root=root, engine="sail")) as spark:
        lake = Lake(root, spark)
        return {spec.name: list(lake.digest(spec, content=True)) for spec in REGISTRY if lake.exists(spec)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/geosid-bench-cluster-nyc")
    parser.add_argument("--remote", help="a Spark Connect URL of a cluster that is up (default: start deploy/cluster.sh)")
    parser.add_argument("--every", type=int, default=30, help="days between geo snapshots")
    args = parser.parse_args()

    from geosid.config import Settings

    work = Path(args.work)
    env = {**os.environ, "GEOSID_CLUSTER_DIR": str(work / "cluster")}
    started_here = not args.remote
    remote = args.remote or f"sc://127.0.0.1:{env.setdefault('GEOSID_CLUSTER_CONNECT_PORT', '15002')}"
    for lake in ("embedded", "cluster"):
        subprocess.run(["rm", "-rf", str(work / lake)], check=True)
    try:
        embedded = run_steps(Settings(lake_root=work / "embedded", engine="sail"), args.every)
        if started_here:
            subprocess.run([str(ROOT / "deploy" / "cluster.sh"), "up"], env=env, check=True, timeout=300)
        on_cluster = run_steps(Settings(lake_root=work / "cluster", engine="remote", spark_remote=remote, lake_committer="delta-rs"), args.every)
    finally:
        if started_here:
            subprocess.run([str(ROOT / "deploy" / "cluster.sh"), "down"], env=env, check=False, timeout=120)
    a, b = digests(work / "embedded"), digests(work / "cluster")
    tables = {name: {"embedded": a.get(name), "cluster": b.get(name), "equal": a.get(name) == b.get(name)} for name in sorted(set(a) | set(b))}
    payload = {
        "date": dt_.date.today().isoformat(),
        "seconds": {"embedded": embedded, "cluster": on_cluster},
        "ratio_cluster_embedded": {k: round(on_cluster[k] / embedded[k], 2) for k in embedded if embedded[k]},
        "tables": tables,
        "all_equal": all(t["equal"] for t in tables.values()),
    }
    for name, t in tables.items():
        print(f"{'==' if t['equal'] else '!='} {name}: {t['embedded']} vs {t['cluster']}")
    sys.path.insert(0, str(Path(__file__).parent))
    from results_io import write_results

    write_results("cluster_nyc", payload)
    if not payload["all_equal"]:
        raise SystemExit("the engines' tables differ")


if __name__ == "__main__":
    main()
