"""Many writers, one lake: K processes fire random writing steps and reads at one lake for
N minutes; at the end every table must equal runs in order.

    python bench/many_writers.py --workers 4 --minutes 10     # the published run
    python bench/many_writers.py --workers 3 --minutes 1.5    # the short one in make test

A synthetic world of `--days` days. Its first days are built in order and a codebook is
fitted, published and backfilled on them (the prefix); every later day's drop is
delivered but one (the late day), which a worker may close as missing and a later one may
deliver. Each worker loops over random operations, each in its own engine session's
pipeline calls, as the DAGs and the CLI would run them beside each other:

- writers: the daily run of a random later day; repair; maintenance with retention 0;
  a codebook fit (a candidate of the same spec as of the prefix's last day); closing the
  late day; delivering the late day's drop (a producer, not a lake write);
- readers: SQL, status, a training snapshot loaded at the published versions (its rows
  counted), and the report.

Then every worker has stopped, the late drop is delivered if it was not, and the lake
settles (the daily run of the last day, a repair, the same codebook fit). The reference
lake is the prefix with every drop on time, the later days run once each in order and
the same fit. The two are compared table by table by content digest
(`year_of_operations.content_digests`): they must be equal, nothing may be stale, and no
operation may end in a traceback (refusals, one line each, are counted: an input day not
there yet, a day that cannot be closed).
Result: bench/results/many_writers.json (and printed).
"""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import os
import random
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import year_of_operations as ops  # noqa: E402

SOURCE = "synthetic"
PREFIX = 3  # days built in order before the writers start
CODEBOOK = {"method": "residual_kmeans", "codes": (8, 8, 8), "niter": 5, "seed": 1}
CANDIDATE_SEED = 2
WEIGHTS = {"daily": 40, "repair": 8, "maintain": 8, "fit": 6, "close_late": 6, "deliver_late": 3, "sql": 8, "status": 8, "snapshot": 8, "report": 2}


def world_config(days: int) -> dict:
    return {"n_days": days, "n_users": 60, "n_stores": 15, "n_brands": 5, "start_date": "2024-06-01", "new_video_fraction_per_day": 0.1}


def days_of(config: dict) -> list[dt_.date]:
    start = dt_.date.fromisoformat(config["start_date"])
    return [start + dt_.timedelta(days=k) for k in range(config["n_days"])]


def late_day(days: list[dt_.date]) -> dt_.date:
    return days[PREFIX + (len(days) - PREFIX) // 2]


def codebook_spec(seed: int = CODEBOOK["seed"]):
    """The published codebook's spec; another seed: the candidate the writers re-fit."""
    from geosid import pipeline

    return pipeline.CodebookSpec(CODEBOOK["method"], codes=CODEBOOK["codes"], niter=CODEBOOK["niter"], seed=seed, capacity_aware=True)


def context(lake_root: Path):
    from geosid import pipeline
    from geosid.config import Settings

    return pipeline.open_context(Settings(lake_root=lake_root), log=lambda _: None)


# ---------------------------------------------------------------------------------------
# The prefix and the reference


def build_prefix(work: Path, days: list[dt_.date]) -> None:
    """The world's first days run in order, a codebook fitted, published and backfilled on
    them: the lake both timelines start from."""
    from geosid import pipeline

    with context(work / "prefix") as ctx:
        for day in days[:PREFIX]:
            ops.deliver(work / "final", work / "raw-ontime", day)
            pipeline.daily(day, SOURCE, work / "raw-ontime", validate=False, ctx=ctx)
        fit = pipeline.fit_codebook(codebook_spec(), days[PREFIX - 1], ctx=ctx)
        pipeline.publish_codebook(fit.codebook_version, days[PREFIX - 1], ops.GATES, ctx=ctx)
        pipeline.backfill(fit.codebook_version, days[0], days[PREFIX - 1], ctx=ctx)
        pipeline.rebuild_corpus(fit.codebook_version, days[0], days[PREFIX - 1], SOURCE, ctx=ctx)


def settle(ctx, raw: Path, days: list[dt_.date]) -> None:
    """What both lakes end with: the last day's daily run, a repair, the codebook candidate."""
    from geosid import pipeline

    pipeline.daily(days[-1], SOURCE, raw, validate=False, ctx=ctx)
    pipeline.repair(validate=False, ctx=ctx)
    pipeline.fit_codebook(codebook_spec(CANDIDATE_SEED), days[PREFIX - 1], ctx=ctx)


def build_reference(work: Path, days: list[dt_.date]) -> None:
    from geosid import pipeline

    shutil.copytree(work / "prefix", work / "reference")
    with context(work / "reference") as ctx:
        for day in days[PREFIX:]:
            ops.deliver(work / "final", work / "raw-ontime", day)
            pipeline.daily(day, SOURCE, work / "raw-ontime", validate=False, ctx=ctx)
        settle(ctx, work / "raw-ontime", days)


# ---------------------------------------------------------------------------------------
# A worker


def timed_lease_waits(log: list) -> None:
    """Record how long each lease acquisition of this process waited."""
    from geosid.lake.lease import LakeLease

    acquire = LakeLease.acquire

    def timed(self, step, on_wait=None):
        started = time.perf_counter()
        try:
            return acquire(self, step, on_wait)
        finally:
            log.append(time.perf_counter() - started)

    LakeLease.acquire = timed


def unguarded() -> None:
    """The same writers without the lease (every acquire succeeds at once): what it guards
    against, to show the bench can fail."""
    from geosid.lake.holders import Holder
    from geosid.lake.lease import LakeLease

    LakeLease.try_acquire = lambda self, step, ticket=None: (Holder.mine(step), None, True)
    LakeLease.holds = lambda self, mine: True
    LakeLease.release = lambda self, mine: bool(self._publish(mine.step))


def operation(name: str, ctx, rng: random.Random, work: Path, days: list[dt_.date]) -> str:
    """Run one operation; returns what it did in a few words."""
    from geosid import pipeline
    from geosid.trainer.snapshot import CorpusSnapshot

    raw, late = work / "raw", late_day(days)
    if name == "daily":
        day = rng.choice(days[PREFIX:])
        pipeline.daily(day, SOURCE, raw, validate=rng.random() < 0.3, ctx=ctx)
        return f"daily {day}"
    if name == "repair":
        return pipeline.repair(validate=False, ctx=ctx).summary().splitlines()[0][:60]
    if name == "maintain":
        pipeline.maintain(retention_hours=0, log_retention_hours=0, ctx=ctx)
        return "maintain"
    if name == "fit":
        return "fit " + pipeline.fit_codebook(codebook_spec(CANDIDATE_SEED), days[PREFIX - 1], ctx=ctx).codebook_version
    if name == "close_late":
        pipeline.close_day(SOURCE, late, "the bench's late drop", ctx=ctx)
        return f"closed {late}"
    if name == "deliver_late":
        if not (ops.drop_folder(raw, "events", late) / "_SUCCESS").exists():
            ops.deliver(work / "final", raw, late)
        return f"delivered {late}"
    if name == "sql":
        frame = pipeline.sql("SELECT count(*) AS n, count(DISTINCT dt) AS days FROM training_sequences", ctx=ctx)
        return f"sql {int(frame.n[0])} rows"
    if name == "status":
        return f"status: {pipeline.status(ctx=ctx).stale} stale"
    if name == "snapshot":
        snapshot = CorpusSnapshot.open(ctx.lake.root)
        return f"snapshot {snapshot.count()} rows at {snapshot.table_versions}"
    if name == "report":
        pipeline.build_report(ctx=ctx)
        return "report"
    raise ValueError(name)


def worker(index: int, work: Path, days: list[dt_.date], until: float, seed: int, guarded: bool = True) -> None:
    from geosid.errors import UserError

    if not guarded:
        unguarded()
    rng = random.Random(seed * 1000 + index)
    waits: list[float] = []
    timed_lease_waits(waits)
    names, weights = zip(*WEIGHTS.items())
    done = []
    with context(work / "lake") as ctx:
        while time.time() < until:
            name = rng.choices(names, weights)[0]
            started = time.perf_counter()
            entry = {"op": name, "worker": index}
            try:
                entry["did"] = operation(name, ctx, rng, work, days)
                entry["outcome"] = "ok"
            except UserError as exc:
                entry["outcome"], entry["refusal"] = "refused", " ".join(str(exc).split())[:240]
            except Exception:  # anything else is a defect the bench counts
                entry["outcome"], entry["traceback"] = "traceback", traceback.format_exc()[-3000:]
            entry["seconds"] = round(time.perf_counter() - started, 2)
            done.append(entry)
    (work / f"worker-{index}.json").write_text(json.dumps({"ops": done, "lease_waits": waits}))


# ---------------------------------------------------------------------------------------
# The run


def run(workers: int, minutes: float, days_n: int, work: Path, seed: int = 0, log=print, guarded: bool = True) -> dict:
    from geosid import pipeline
    from geosid.config import Settings
    from geosid.lake import Lake, spark_session
    from geosid.sources.synthetic_world import WorldConfig, write_world

    shutil.rmtree(work, ignore_errors=True)
    config = world_config(days_n)
    days = days_of(config)
    write_world(work / "final", WorldConfig(**config), progress=False)
    started = time.perf_counter()
    build_prefix(work, days)
    log(f"prefix ({PREFIX} days, codebook) in {time.perf_counter() - started:.0f}s")
    reference = subprocess.Popen([sys.executable, __file__, "--reference", "--work", str(work), "--days", str(days_n)])
    shutil.copytree(work / "prefix", work / "lake")
    for day in days[:PREFIX]:
        ops.deliver(work / "final", work / "raw", day)
    for day in days[PREFIX:]:
        if day != late_day(days):
            ops.deliver(work / "final", work / "raw", day)
    until = time.time() + minutes * 60
    env = {**os.environ, "GEOSID_LEASE_WAIT_SECONDS": os.environ.get("GEOSID_LEASE_WAIT_SECONDS", "900")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                str(k),
                "--work",
                str(work),
                "--days",
                str(days_n),
                "--until",
                str(until),
                "--seed",
                str(seed),
                *([] if guarded else ["--unguarded"]),
            ],
            env=env,
        )
        for k in range(workers)
    ]
    codes = [p.wait() for p in procs]
    reference.wait()
    log(f"{workers} workers for {minutes:g} min; exit codes {codes}; reference exit code {reference.returncode}")
    if not (ops.drop_folder(work / "raw", "events", late_day(days)) / "_SUCCESS").exists():
        ops.deliver(work / "final", work / "raw", late_day(days))
    with context(work / "lake") as ctx:
        settle(ctx, work / "raw", days)
        stale = pipeline.status(ctx=ctx).stale
    with spark_session(Settings(lake_root=work / "unused")) as spark:
        got, want = ops.content_digests(Lake(work / "lake", spark)), ops.content_digests(Lake(work / "reference", spark))
    different = sorted(t for t in set(got) | set(want) if got.get(t) != want.get(t))
    results = summarize(work, workers, minutes, codes + [reference.returncode], different, stale)
    results["tables"] = {t: {"rows": want.get(t, (0, ""))[0], "equal": t not in different} for t in sorted(set(got) | set(want))}
    return results


def summarize(work: Path, workers: int, minutes: float, codes: list[int], different: list[str], stale: int) -> dict:
    entries, waits = [], []
    for k in range(workers):
        path = work / f"worker-{k}.json"
        record = json.loads(path.read_text()) if path.exists() else {"ops": [], "lease_waits": []}
        entries += record["ops"]
        waits += record["lease_waits"]
    by_op: dict[str, dict] = {}
    for e in entries:
        counts = by_op.setdefault(e["op"], {"ok": 0, "refused": 0, "traceback": 0})
        counts[e["outcome"]] += 1
    refusals: dict[str, int] = {}
    for e in entries:
        if e["outcome"] == "refused":
            kind = e["refusal"].split(":")[0][:80]
            refusals[kind] = refusals.get(kind, 0) + 1
    return {
        "workers": workers,
        "minutes": minutes,
        "exit_codes": codes,
        "operations": len(entries),
        "by_operation": by_op,
        "lease_acquisitions": len(waits),
        "waits": sum(1 for w in waits if w > 0.05),
        "longest_wait_s": round(max(waits, default=0.0), 1),
        "refusals": sum(refusals.values()),
        "refusal_kinds": refusals,
        "tracebacks": sum(1 for e in entries if e["outcome"] == "traceback"),
        "traceback_samples": [e["traceback"] for e in entries if e["outcome"] == "traceback"][:3],
        "tables_different": different,
        "stale_after": stale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--days", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/geosid-bench-many-writers")
    parser.add_argument("--unguarded", action="store_true", help="the writers without the lake's lease (to show what it prevents)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work, days = Path(args.work), days_of(world_config(args.days))
    if args.worker is not None:
        return worker(args.worker, work, days, args.until, args.seed, guarded=not args.unguarded)
    if args.reference:
        return build_reference(work, days)
    from results_io import write_results

    started = time.perf_counter()
    results = run(args.workers, args.minutes, args.days, work, args.seed, guarded=not args.unguarded)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["command"] = " ".join(["python", "bench/many_writers.py", *sys.argv[1:]])
    write_results("many_writers" + ("-unguarded" if args.unguarded else ""), results)
    ok = not results["tracebacks"] and not results["tables_different"] and not results["stale_after"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
