"""End to end at scale: synthetic worlds of ~1M and ~10M events through every stage, each
stage in its own process (wall time and that process's peak RSS), then one more day.

    python bench/scale_end_to_end.py                       # worlds 1m and 10m, embedded engine
    python bench/scale_end_to_end.py --worlds 1m --label cluster   # with GEOSID_ENGINE=remote etc.

Stages: synth (the raw daily drops of n_days + 1 days), ingest (the first n_days, with
the bronze gate), geo and embed (as of the last day), codebook (residual k-means fit,
published), assign (every item of the range gets a SID), corpus (cell context and the
sequences of every day from scratch, the job alone: no gate), train (one epoch of the
tiny OneLoc, 10 history events per behavior, the train split streamed from the snapshot;
valid/test 2,000 requests), then
the extra day: ingest, geo, embed, assign and the incremental corpus day, whose sequence
job is compared with the full rebuild's. The engine is whatever the environment selects
(GEOSID_ENGINE, GEOSID_SPARK_REMOTE): on a cluster the peak RSS is the driver's.
Results: bench/results/scale_end_to_end[-label].json and a printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# events ~ users x days x ~8.6. A year: a user's history (~3,000 events) is ten times the
# state the daily run carries (watch 256 + click 32 + pay 10), as on a platform with
# long-lived users; the 10m world has ten times the users and stores of the 1m world.
WORLDS = {
    "smoke": {"n_days": 8, "n_users": 300, "n_stores": 200},  # checks the script in a minute
    "1m": {"n_days": 365, "n_users": 330, "n_stores": 200, "n_brands": 20},
    "10m": {"n_days": 365, "n_users": 3_300, "n_stores": 2_000, "n_brands": 200},
}
MAIN_STAGES = ("synth", "ingest", "geo", "embed", "codebook", "assign", "corpus", "train")
DAY_STAGES = ("day_ingest", "day_geo", "day_embed", "day_assign", "day_corpus")
VERSION_FILE = "codebook_version.txt"


def world_config(name: str):
    from geosid.sources.synthetic_world import WorldConfig

    shape = WORLDS[name]
    return WorldConfig(**{**shape, "n_days": shape["n_days"] + 1})  # the last day is the one added later


def run_stage(stage: str, work: Path, world: str) -> dict:
    """One stage in this process; returns what it measured besides time and memory."""
    from geosid.config import Settings
    from geosid.pipeline import bronze, corpus, index, silver, train
    from geosid.pipeline.context import open_context

    config = world_config(world)
    raw, days = work / "raw", config.days()
    first, last, extra = days[0], days[-2], days[-1]
    if stage == "synth":
        from geosid.sources.synthetic_world import write_world

        manifest = write_world(raw, config, progress=False)
        return {"days": len(days), "events": sum(d.get("events", 0) for d in manifest["days"].values())}
    settings = Settings.from_env(lake_root=str(work / "lake"))
    version_file = work / VERSION_FILE
    split = corpus.split_config("time", last, test_days=3, valid_days=3)
    with open_context(settings) as ctx:
        if stage in ("ingest", "day_ingest"):
            span = (first, last) if stage == "ingest" else (extra, extra)
            outcome = bronze.ingest("synthetic", *span, path=raw, ctx=ctx)
            return {"passed": outcome.passed}
        if stage in ("geo", "day_geo"):
            silver.geo(last if stage == "geo" else extra, ctx=ctx)
            return {}
        if stage in ("embed", "day_embed"):
            silver.embed(last if stage == "embed" else extra, ctx=ctx)
            return {}
        if stage == "codebook":
            fit = index.fit_codebook(index.CodebookSpec("residual_kmeans"), last, ctx=ctx)
            version_file.write_text(fit.codebook_version)
            published = True
            try:
                index.publish_codebook(fit.codebook_version, last, ctx=ctx)
            except Exception as exc:  # the gates' verdict: the corpus is built under the candidate anyway
                published = f"not published: {exc}"
            return {"codebook_version": fit.codebook_version, "published": published}
        version = version_file.read_text().strip()
        if stage == "assign":
            index.backfill(version, first, last, ctx=ctx)
            return {}
        if stage == "day_assign":
            index.assign_day(extra, version, ctx=ctx)
            return {}
        if stage == "corpus":
            built = corpus.corpus_build("synthetic", first, last, version, split, validate=False, ctx=ctx)
            r = built.sequences
            return {
                "sequence_job_s": round(r.seconds, 2),
                "input_events": r.input_events,
                "targets": r.targets,
                "states": r.states,
                "states_written": r.states_written,
            }
        if stage == "day_corpus":
            done = corpus.corpus_day(extra, "synthetic", version, split, ctx=ctx)
            r = done.sequences
            return {
                "sequence_job_s": round(r.seconds, 2),
                "mode": r.mode,
                "input_events": r.input_events,
                "targets": r.targets,
                "states": r.states,
                "states_written": r.states_written,
                "compacted_buckets": r.compacted_buckets,
            }
        if stage == "train":
            # histories of 10 events per behavior keep one epoch of the 10m world within minutes on a CPU
            cfg = train.train_config(size="tiny", epochs=1, max_history=10, stream_above=0, valid_limit=2000, eval_limit=2000)
            record = train.pretrain(cfg, version, run_id="scale", ctx=ctx)
            m = record.metrics
            return {
                "train_rows": record.rows["train"],
                "streamed": record.streamed,
                "train_s": m["train_s"],
                "tokens_per_s": m["tokens_per_s"],
                "recall@10": record.evaluation()["recall@10"],
            }
    raise ValueError(f"unknown stage {stage!r}")


def tree_rss(pid: int) -> int:
    """Bytes resident in a process and all of its descendants now, as proportional set
    sizes (a page shared by forked DataLoader workers counts once in all)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in processes:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def child(stage: str, work: Path, world: str) -> dict:
    """Run a stage in a fresh process: its wall time, the process's own peak RSS (it
    reports it) and the peak of its whole process tree (DataLoader workers, a JVM),
    sampled every second."""
    import threading

    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, __file__, "--stage", stage, "--work", str(work), "--worlds", world],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(1.0):
            peak[0] = max(peak[0], tree_rss(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"stage {stage} failed:\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return {"stage": stage, "seconds": round(seconds, 1), **result, "peak_tree_rss_mb": round(peak[0] / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", nargs="+", default=["1m", "10m"], choices=sorted(WORLDS))
    parser.add_argument("--work", default="/tmp/geosid-bench-scale")
    parser.add_argument("--label", default="", help="suffix of the results file (e.g. cluster)")
    parser.add_argument("--stage")
    parser.add_argument("--rerun", nargs="+", help="re-measure these stages of a finished run; updates its results")
    args = parser.parse_args()
    if args.rerun:
        rerun(args)
        return
    if args.stage:  # a child: one stage, one JSON line with its own peak RSS
        import resource

        result = run_stage(args.stage, Path(args.work), args.worlds[0])
        # the stage's process (the embedded engine runs in it) or any child it waited for
        # (DataLoader workers): the larger of the two
        peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
        print(json.dumps({**result, "peak_rss_mb": round(peak)}, default=str))
        return
    payload = {"engine": os.environ.get("GEOSID_ENGINE", "sail"), "worlds": {}}
    for world in args.worlds:
        work = Path(args.work) / world
        work.mkdir(parents=True, exist_ok=True)
        runs = []
        for stage in (*MAIN_STAGES, *DAY_STAGES):
            if stage == "synth" and (work / "raw").exists() and os.environ.get("GEOSID_BENCH_REUSE_RAW"):
                continue
            if stage == "ingest":
                import shutil

                shutil.rmtree(work / "lake", ignore_errors=True)
            result = child(stage, work, world)
            print(world, json.dumps(result), flush=True)
            runs.append(result)
        by = {r["stage"]: r for r in runs}
        full, day = by["corpus"]["sequence_job_s"], by["day_corpus"]["sequence_job_s"]
        payload["worlds"][world] = {
            "shape": WORLDS[world],
            "stages": runs,
            "peak_rss_mb_max": max(max(r["peak_rss_mb"], r["peak_tree_rss_mb"]) for r in runs),
            "day_vs_full_sequences": round(day / full, 4),
        }
    if {"1m", "10m"} <= set(payload["worlds"]):
        one = {r["stage"]: r["seconds"] for r in payload["worlds"]["1m"]["stages"]}
        ten = {r["stage"]: r["seconds"] for r in payload["worlds"]["10m"]["stages"]}
        payload["ratio_10m_1m"] = {s: round(ten[s] / one[s], 2) for s in one if s in ten and one[s] > 0}
    print(table(payload))
    sys.path.insert(0, str(Path(__file__).parent))
    from results_io import write_results

    write_results("scale_end_to_end" + (f"-{args.label}" if args.label else ""), payload)


def rerun(args) -> None:
    """Run some stages again on the worlds' lakes as they are (after the whole run) and put
    their new measurements into the results file."""
    path = Path(__file__).parent / "results" / ("scale_end_to_end" + (f"-{args.label}" if args.label else "") + ".json")
    payload = json.loads(path.read_text())
    for world in args.worlds:
        stages = payload["worlds"][world]["stages"]
        for stage in args.rerun:
            result = child(stage, Path(args.work) / world, world)
            print(world, json.dumps(result), flush=True)
            stages[:] = [result if r["stage"] == stage else r for r in stages]
        payload["worlds"][world]["peak_rss_mb_max"] = max(max(r["peak_rss_mb"], r["peak_tree_rss_mb"]) for r in stages)
    if {"1m", "10m"} <= set(payload["worlds"]):
        one = {r["stage"]: r["seconds"] for r in payload["worlds"]["1m"]["stages"]}
        ten = {r["stage"]: r["seconds"] for r in payload["worlds"]["10m"]["stages"]}
        payload["ratio_10m_1m"] = {s: round(ten[s] / one[s], 2) for s in one if s in ten and one[s] > 0}
    print(table(payload))
    path.write_text(json.dumps(payload, indent=2))


def table(payload: dict) -> str:
    worlds = list(payload["worlds"])
    header = (
        "| stage | " + " | ".join(f"{w} s | {w} peak RSS GB (process tree)" for w in worlds) + (" | 10m/1m |" if "ratio_10m_1m" in payload else " |")
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    stages = [r["stage"] for r in payload["worlds"][worlds[0]]["stages"]]
    for stage in stages:
        cells = []
        for w in worlds:
            r = next((r for r in payload["worlds"][w]["stages"] if r["stage"] == stage), None)
            peak = max(r["peak_rss_mb"], r["peak_tree_rss_mb"]) / 1024 if r else 0
            cells += [f"{r['seconds']:.1f}", f"{peak:.2f}"] if r else ["", ""]
        ratio = payload.get("ratio_10m_1m", {}).get(stage)
        lines.append(f"| {stage} | " + " | ".join(cells) + (f" | {ratio} |" if "ratio_10m_1m" in payload else " |"))
    for w in worlds:
        lines.append(f"\n{w}: incremental day's sequence job / full rebuild's = {payload['worlds'][w]['day_vs_full_sequences']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
