"""A year of operations: a synthetic world driven day by day through `geosid.pipeline` as
the daily DAG runs it, with the incidents of real feeds, then compared with a clean run.

    python bench/year_of_operations.py                    # 365 days, every incident kind
    python bench/year_of_operations.py --scenario month   # three weeks, every incident (tests/test_operations.py)
    python bench/year_of_operations.py --cost 1m 10m      # repair cost at ~1M and ~10M events

Two timelines over the same final inputs (the world's drops as finally delivered):

- incidents: each tick (a calendar day) delivers the drops due then; drops arrive 1, 3 and
  10 days late; a past day is re-delivered with corrected rows; two drops do not come,
  are closed by the operator (`geosid days close`) so later days build, then arrive after
  all; one run is killed with SIGKILL mid-day (a `geosid daily` process) and run again; a
  first codebook version is fitted, published and backfilled early, a new one mid-year;
  maintenance runs weekly (retention 0). The scheduler runs the daily runs in date order,
  one at a time: a run whose drop has not arrived waits (the DAG's sensor), and the ones
  after it wait behind it (max_active_runs=1).
- clean: every drop on time and final, the same runs in order, the same codebook
  versions on the same logical days, the same maintenance.

At the end every table of the two lakes is compared by content digest (the volatile
columns, wall-clock times and table versions, left out), the incident lake shows nothing stale, and after a final
maintenance (retention 0) its bytes are compared with the clean lake's; a training
snapshot pinned before maintenance still loads. `--cost` measures, on worlds built up to
a few days before their end, one normal daily run, a drop arriving 3 days late (the runs
it held back, until all are built) and a corrected re-delivery of a day 3 days back.
Results: bench/results/year_of_operations-<scenario>.json and printed tables.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SOURCE = "synthetic"
FEEDS = ("events", "items")
GATES = {"max_excess_conflict": 1.0, "min_exclusive_rate": 0.0, "min_code_usage": 0.0}


@dataclass
class Scenario:
    """Days are indices from the world's first day; a tick is the calendar day on which
    something happens (the day's run is due on the tick of its own day)."""

    name: str
    world: dict
    late: dict = field(default_factory=dict)  # day -> days late
    corrected: dict = field(default_factory=dict)  # day (delivered on time with wrong rows) -> tick of the corrected drop
    closed: dict = field(default_factory=dict)  # day (never delivered on time) -> (tick closed, tick it finally arrives)
    kill: int | None = None  # the day whose first run is killed mid-way
    # the killed run dies kill_delay_s after printing the kill_at stage: a stage, not a wall-clock
    # guess (a fixed sleep raced the day, which can finish first on a quiet machine)
    kill_at: str = "==> item embeddings"
    kill_delay_s: float = 0.5
    codebooks: dict = field(default_factory=dict)  # day -> fit settings; fitted, published and backfilled after its run
    maintenance_every: int = 7  # ticks between maintenance runs (retention 0)
    pin_snapshot_after: int | None = None  # after this day's run, a training snapshot is recorded (pinned)

    @property
    def n_days(self) -> int:
        return self.world["n_days"]


def month() -> Scenario:
    """Three weeks holding every incident kind, small enough for the test suite."""
    return Scenario(
        "month",
        {"n_days": 20, "n_users": 100, "n_stores": 25, "n_brands": 8, "start_date": "2024-06-01", "new_video_fraction_per_day": 0.1},
        late={2: 1, 4: 3, 8: 10},
        corrected={3: 7},
        closed={11: (12, 19), 13: (14, 19)},
        kill=6,
        codebooks={1: {"codes": (8, 8, 8), "niter": 5, "seed": 1}, 10: {"codes": (8, 8, 8), "niter": 5, "seed": 2}},
        pin_snapshot_after=6,
    )


def year() -> Scenario:
    return Scenario(
        "year",
        {"n_days": 365, "n_users": 300, "n_stores": 80, "n_brands": 15, "start_date": "2024-01-01", "new_video_fraction_per_day": 0.02},
        late={40: 1, 95: 3, 150: 10},
        corrected={120: 131},
        closed={200: (201, 214), 260: (261, 266)},
        kill=230,
        codebooks={6: {"codes": (16, 16, 16), "niter": 10, "seed": 1}, 182: {"codes": (16, 16, 16), "niter": 10, "seed": 2}},
        pin_snapshot_after=300,
    )


SCENARIOS = {"month": month, "year": year}


# ---------------------------------------------------------------------------------------
# Deliveries


def drop_folder(root: Path, feed: str, day: dt_.date) -> Path:
    return root / feed / f"dt={day.isoformat()}"


def deliver(final: Path, raw: Path, day: dt_.date, corrupt: bool = False) -> None:
    """Copy a day's drops from the final world into the raw folder, files first and the
    marker last (a producer's order); `corrupt`: with wrong rows (every 15th event points
    at another of the day's items)."""
    for feed in FEEDS:
        source, target = drop_folder(final, feed, day), drop_folder(raw, feed, day)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path in sorted(source.iterdir()):
            if path.name.startswith("_"):
                continue
            data = path.read_bytes()
            if corrupt and feed == "events":
                data = _corrupted(data)
            (target / path.name).write_bytes(data)
        (target / "_SUCCESS").write_bytes(b"")


def _corrupted(data: bytes) -> bytes:
    lines = gzip.decompress(data).decode().splitlines()
    items = sorted({line.split("\t")[2] for line in lines if line.count("\t") >= 7})
    out = []
    for k, line in enumerate(lines):
        fields = line.split("\t")
        if k % 15 == 0 and len(fields) >= 8 and len(items) > 1:
            fields[2] = items[(items.index(fields[2]) + 1) % len(items)]
        out.append("\t".join(fields))
    return gzip.compress(("\n".join(out) + "\n").encode())


# ---------------------------------------------------------------------------------------
# A timeline


@dataclass
class Timeline:
    name: str
    work: Path
    scenario: Scenario
    final: Path
    incidents: bool
    log: list = field(default_factory=list)  # (tick, what, seconds)
    runs: dict = field(default_factory=dict)  # day index -> seconds of its successful run(s)
    repairs: list = field(default_factory=list)  # repair reports' summaries
    versions: dict = field(default_factory=dict)  # day index -> codebook version fitted after it
    killed: str = ""

    @property
    def raw(self) -> Path:
        return self.work / "raw"

    @property
    def lake_root(self) -> Path:
        return self.work / "lake"

    def days(self) -> list[dt_.date]:
        start = dt_.date.fromisoformat(self.scenario.world["start_date"])
        return [start + dt_.timedelta(days=k) for k in range(self.scenario.n_days)]

    def deliveries(self, tick: int) -> list[tuple[int, bool]]:
        """(day, corrupt) of the drops delivered on `tick`."""
        s = self.scenario
        if not self.incidents:
            return [(tick, False)]
        out = []
        for day in range(self.scenario.n_days):
            if day in s.closed:
                arrives = s.closed[day][1]
            else:
                arrives = day + s.late.get(day, 0)
            if arrives == tick:
                out.append((day, day in s.corrected))
            if s.corrected.get(day) == tick:
                out.append((day, False))
        return out

    def run(self, ctx_factory) -> None:
        from geosid import pipeline
        from geosid.errors import NotArrivedError

        days, s = self.days(), self.scenario
        next_run = 0
        for tick in range(s.n_days):
            for day, corrupt in self.deliveries(tick):
                deliver(self.final, self.raw, days[day], corrupt)
                self.log.append((tick, f"delivered {days[day]}{' (wrong rows)' if corrupt else ''}", 0.0))
            with ctx_factory() as ctx:
                if self.incidents:
                    for day, (close_tick, _) in s.closed.items():
                        if close_tick == tick:
                            pipeline.close_day(SOURCE, days[day], "the partner's drop did not come (bench)", ctx=ctx)
                            self.log.append((tick, f"closed {days[day]}", 0.0))
                while next_run <= tick:
                    day = days[next_run]
                    started = time.perf_counter()
                    if self.incidents and next_run == s.kill and not self.killed:
                        self.killed = self.kill_run(day)
                        self.log.append((tick, f"run {day} killed: {self.killed}", time.perf_counter() - started))
                        started = time.perf_counter()
                    try:
                        report = pipeline.daily(day, SOURCE, self.raw, validate=False, ctx=ctx)
                    except NotArrivedError as exc:
                        self.log.append((tick, f"run {day} waits: {str(exc)[:120]}", time.perf_counter() - started))
                        break
                    seconds = time.perf_counter() - started
                    self.runs[next_run] = self.runs.get(next_run, 0.0) + seconds
                    self.log.append((tick, report.summary(), seconds))
                    for repaired in (report.caught_up, report.repaired_after):
                        if repaired and repaired.repaired:
                            self.repairs.append(repaired.summary())
                    if next_run in s.codebooks:
                        self.codebook(ctx, next_run, days)
                    if s.pin_snapshot_after == next_run:
                        self.pin_snapshot(ctx)
                    next_run += 1
                if (tick + 1) % s.maintenance_every == 0:
                    started = time.perf_counter()
                    report = pipeline.maintain(retention_hours=0, log_retention_hours=0, ctx=ctx)
                    self.log.append(
                        (tick, f"maintenance: {report.bytes_before / 1e6:.1f} -> {report.bytes_after / 1e6:.1f} MB", time.perf_counter() - started)
                    )
        assert next_run == s.n_days, f"{self.name}: runs stopped at day {next_run}: {self.log[-3:]}"

    def codebook(self, ctx, day_index: int, days: list[dt_.date]) -> None:
        """What the codebook backfill DAG does after the day: fit as of the day, publish,
        give every item of the range a SID, rebuild the range's corpus under it."""
        from geosid import pipeline

        started = time.perf_counter()
        day, spec = days[day_index], self.scenario.codebooks[day_index]
        codebook = pipeline.CodebookSpec("residual_kmeans", codes=spec["codes"], niter=spec["niter"], seed=spec["seed"], capacity_aware=True)
        fit = pipeline.fit_codebook(codebook, day, ctx=ctx)
        pipeline.publish_codebook(fit.codebook_version, day, GATES, ctx=ctx)
        pipeline.backfill(fit.codebook_version, days[0], day, ctx=ctx)
        pipeline.rebuild_corpus(fit.codebook_version, days[0], day, SOURCE, ctx=ctx)
        self.versions[day_index] = fit.codebook_version
        self.log.append((day_index, f"codebook {fit.codebook_version} fitted, published, backfilled", time.perf_counter() - started))

    def pin_snapshot(self, ctx) -> None:
        """Record a training snapshot (what `geosid train pretrain` records: the manifest
        of the pinned table versions) as a run, so maintenance must keep its files."""
        from geosid.trainer.runs import RunRecord, save_run
        from geosid.trainer.snapshot import CorpusSnapshot

        snapshot = CorpusSnapshot.open(self.lake_root, codebook_version=list(self.versions.values())[-1])
        record = RunRecord(
            run_id="pinned-snapshot",
            kind="pretrain",
            manifest=snapshot.manifest(),
            model_config={},
            train_config={},
            metrics={},
            rows={"all": snapshot.count()},
        )
        save_run(self.lake_root, record, {})

    def kill_run(self, day: dt_.date) -> str:
        """Run the day's `geosid daily` in a process of its own and SIGKILL it mid-way
        (`kill_delay_s` after it starts the `kill_at` stage); returns the stage it was in."""
        command = [
            sys.executable,
            "-m",
            "geosid.cli",
            "--lake",
            str(self.lake_root),
            "daily",
            "--date",
            day.isoformat(),
            "--source",
            SOURCE,
            "--path",
            str(self.raw),
            "--no-validate",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
        stages = []
        for line in map(str.strip, process.stdout):
            if line.startswith("==>"):
                stages.append(line)
            if line.startswith(self.scenario.kill_at):
                time.sleep(self.scenario.kill_delay_s)
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                break
        process.communicate()
        where = stages[-1][4:] if stages else "start-up"
        return f"after {self.scenario.kill_delay_s:g}s of {where}" if process.returncode else "finished before the kill"


def content_digests(lake) -> dict[str, tuple[int, str]]:
    """Every table's (rows, digest) over its content columns (the volatile ones, wall-clock
    times and table versions, left out: `TableSpec.volatile`)."""
    return {spec.name: lake.digest(spec, content=True) for spec in lake.existing_tables()}


def tables_bytes(lake_root: Path) -> int:
    return sum(f.stat().st_size for layer in ("bronze", "silver", "index", "corpus", "ops") for f in (lake_root / layer).rglob("*") if f.is_file())


def run_timeline(name: str, scenario: Scenario, work: Path, spark, log=print) -> dict:
    """One timeline over the world under work/final into work/<name>/lake."""
    from contextlib import contextmanager

    from geosid.config import Settings
    from geosid.lake import Lake
    from geosid.pipeline.context import Context

    timeline = Timeline(name, work / name, scenario, work / "final", name == "incidents")
    settings = Settings(lake_root=timeline.lake_root)

    @contextmanager
    def context():
        yield Context(settings, spark, Lake(settings.lake_root, spark), log=lambda _: None)

    started = time.perf_counter()
    timeline.run(context)
    seconds = time.perf_counter() - started
    log(f"{name}: {scenario.n_days} days in {seconds:.0f}s; {len(timeline.repairs)} repair(s)")
    for tick, what, secs in timeline.log if name == "incidents" else []:
        if not what.startswith("daily") or "repaired" in what:
            log(f"    tick {tick:>3}  {what[:220]}  ({secs:.1f}s)")
    return {
        "seconds": round(seconds, 1),
        "runs": len(timeline.runs),
        "repairs": timeline.repairs,
        "killed": timeline.killed,
        "versions": list(timeline.versions.values()),
        "mean_run_s": round(sum(timeline.runs.values()) / max(len(timeline.runs), 1), 2),
    }


def simulate(scenario: Scenario, work: Path, log=print, spark=None, parallel: bool = True) -> dict:
    """Both timelines over one world (the incidents on `spark`, else an embedded engine of
    its own; the clean one, with `parallel`, at the same time in a process of its own);
    returns the comparison."""
    from contextlib import nullcontext

    from geosid import pipeline
    from geosid.config import Settings
    from geosid.lake import Lake, spark_session
    from geosid.pipeline.context import Context
    from geosid.sources.synthetic_world import WorldConfig, write_world

    shutil.rmtree(work, ignore_errors=True)
    write_world(work / "final", WorldConfig(**scenario.world), progress=False)
    results = {"scenario": scenario.name, "days": scenario.n_days}
    clean = None
    if parallel:
        command = [sys.executable, __file__, "--scenario", scenario.name, "--work", str(work), "--timeline", "clean"]
        clean = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with nullcontext(spark) if spark is not None else spark_session(Settings(lake_root=work / "unused")) as spark:
        results["incidents"] = run_timeline("incidents", scenario, work, spark, log)
        if clean is not None:
            out = clean.communicate()[0]
            if clean.returncode:
                raise RuntimeError(f"the clean timeline failed:\n{out[-4000:]}")
            results["clean"] = json.loads((work / "clean" / "timeline.json").read_text())
        else:
            results["clean"] = run_timeline("clean", scenario, work, spark, log)
        lakes = {name: (Settings(lake_root=work / name / "lake"), Lake(work / name / "lake", spark)) for name in ("incidents", "clean")}
        got, want = content_digests(lakes["incidents"][1]), content_digests(lakes["clean"][1])
        results["tables"] = {t: {"rows": want.get(t, (0, ""))[0], "equal": got.get(t) == want.get(t)} for t in sorted(set(got) | set(want))}
        results["all_equal"] = all(v["equal"] for v in results["tables"].values())
        results["stale_after"] = pipeline.status(ctx=Context(*lakes["incidents"][:1], spark, lakes["incidents"][1])).stale
        # storage: a last maintenance on both, retention 0, then bytes of the tables
        for settings, lake in lakes.values():
            pipeline.maintain(retention_hours=0, log_retention_hours=0, ctx=Context(settings, spark, lake, log=lambda _: None))
        results["bytes"] = {name: tables_bytes(work / name / "lake") for name in lakes}
        results["bytes_ratio"] = round(results["bytes"]["incidents"] / results["bytes"]["clean"], 3)
        results["pinned_snapshot_loads"] = _pinned_loads(work / "incidents" / "lake")
    return results


def _pinned_loads(lake_root: Path) -> bool | None:
    """Whether the pinned snapshot (if the scenario recorded one) reads its rows after maintenance."""
    from geosid.trainer.runs import list_runs
    from geosid.trainer.snapshot import CorpusSnapshot

    runs = [r for r in list_runs(lake_root) if r.run_id == "pinned-snapshot"]
    if not runs:
        return None
    try:
        snapshot = CorpusSnapshot.open(lake_root, runs[0].codebook_version, table_versions=runs[0].table_versions)
        return snapshot.count() == runs[0].rows["all"]
    except (OSError, ValueError) as exc:  # a file the snapshot needs is gone
        print(f"pinned snapshot does not load: {exc}")
        return False


def report_table(results: dict) -> str:
    lines = ["| table | rows (clean) | incidents = clean |", "|---|---|---|"]
    for table, r in results["tables"].items():
        lines.append(f"| {table} | {r['rows']:,} | {'yes' if r['equal'] else 'NO'} |")
    i, c = results["incidents"], results["clean"]
    lines.append(
        f"\n{results['days']} days: incidents {i['seconds']:.0f}s ({len(i['repairs'])} repairs; killed run: {i['killed']}), "
        f"clean {c['seconds']:.0f}s (mean daily run {c['mean_run_s']}s); stale after: {results['stale_after']}; "
        f"table bytes after maintenance: {results['bytes']['incidents'] / 1e6:.1f} MB vs clean {results['bytes']['clean'] / 1e6:.1f} MB "
        f"({results['bytes_ratio']}x); pinned snapshot loads after maintenance: {results['pinned_snapshot_loads']}"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Repair cost at scale


COST_WORLDS = {
    "smoke": {"n_days": 12, "n_users": 100, "n_stores": 40},
    "1m": {"n_days": 365, "n_users": 330, "n_stores": 200, "n_brands": 20},
    "10m": {"n_days": 365, "n_users": 3_300, "n_stores": 2_000, "n_brands": 200},
}


def repair_cost(world: str, work: Path, log=print) -> dict:
    """A world built by range jobs up to 6 days before its end (ingest, geo, embed, a
    published codebook, SIDs, the corpus with its checkpoints), then: one normal daily run
    (the baseline), a drop arriving 3 days late (three runs wait, then four run), and a
    corrected re-delivery of the day 3 days back (picked up by the next run, which repairs
    the three days after it from the checkpoint before it)."""
    from geosid import pipeline
    from geosid.config import Settings
    from geosid.errors import GateError, NotArrivedError
    from geosid.lake import Lake, spark_session
    from geosid.pipeline.context import Context
    from geosid.sources.synthetic_world import WorldConfig, write_world

    shutil.rmtree(work, ignore_errors=True)
    final, raw = work / "final", work / "raw"
    config = WorldConfig(**COST_WORLDS[world])
    write_world(final, config, progress=False)
    days = config.days()
    prefix_last = days[-7]
    for day in days[: len(days) - 6]:
        deliver(final, raw, day)
    out = {"world": world, "days": len(days)}
    settings = Settings(lake_root=work / "lake")
    with spark_session(settings) as spark:
        ctx = Context(settings, spark, Lake(settings.lake_root, spark), log=lambda _: None)
        started = time.perf_counter()
        outcome = pipeline.ingest(SOURCE, days[0], prefix_last, raw, validate=False, ctx=ctx)
        out["events"] = outcome.report.events
        pipeline.context_snapshots(days[0], prefix_last, every=1, ctx=ctx)
        pipeline.geo(prefix_last, ctx=ctx)
        pipeline.embed(prefix_last, ctx=ctx)
        fit = pipeline.fit_codebook(pipeline.CodebookSpec("residual_kmeans"), prefix_last, ctx=ctx)
        try:
            pipeline.publish_codebook(fit.codebook_version, prefix_last, ctx=ctx)
        except GateError:  # the synthetic titles repeat: publish through open gates (what this bench measures is the days)
            pipeline.publish_codebook(fit.codebook_version, prefix_last, GATES, ctx=ctx)
        pipeline.backfill(fit.codebook_version, prefix_last, prefix_last, ctx=ctx)
        pipeline.corpus_build(SOURCE, days[0], prefix_last, fit.codebook_version, validate=False, ctx=ctx)
        out["prefix_s"] = round(time.perf_counter() - started, 1)

        def daily(k: int) -> float:
            started = time.perf_counter()
            pipeline.daily(days[k], SOURCE, raw, validate=False, ctx=ctx)
            return time.perf_counter() - started

        base = len(days) - 6
        deliver(final, raw, days[base])
        out["normal_run_s"] = round(daily(base), 2)  # the baseline: one daily run, all stages
        # a drop 3 days late: the runs of its day and the two after it wait; on the third day it arrives
        late = base + 1
        started = time.perf_counter()
        for k in (late + 1, late + 2):
            deliver(final, raw, days[k])
        for _ in range(3):  # each tick, the scheduler pokes the waiting run
            try:
                pipeline.daily(days[late], SOURCE, raw, validate=False, ctx=ctx)
            except NotArrivedError:
                pass
        waited = time.perf_counter() - started
        deliver(final, raw, days[late])
        deliver(final, raw, days[late + 3])
        started = time.perf_counter()
        for k in range(late, late + 4):
            daily(k)
        caught_up = time.perf_counter() - started
        out["late_drop"] = {
            "waiting_polls_s": round(waited, 2),
            "catch_up_s": round(caught_up, 2),
            "runs": 4,
            "ratio_to_normal_run": round((waited + caught_up) / out["normal_run_s"], 2),
        }
        # a re-delivery of the day 3 days back with other rows: the next run picks it up and
        # repairs from the checkpoint before it
        deliver(final, raw, days[late + 1], corrupt=True)
        deliver(final, raw, days[late + 4])
        started = time.perf_counter()
        report = pipeline.daily(days[late + 4], SOURCE, raw, validate=False, ctx=ctx)
        seconds = time.perf_counter() - started
        repaired = report.caught_up
        out["corrected_drop"] = {
            "seconds": round(seconds, 2),
            "repaired_days": len(repaired.days),
            "checkpoints": {k: str(v) for k, v in repaired.checkpoints.items()},
            "ratio_to_normal_run": round(seconds / out["normal_run_s"], 2),
            "summary": repaired.summary(),
        }
        started = time.perf_counter()
        pipeline.corpus_build(SOURCE, days[0], days[late + 4], fit.codebook_version, validate=False, ctx=ctx)
        out["full_corpus_rebuild_s"] = round(time.perf_counter() - started, 2)
    log(json.dumps(out, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="year", choices=sorted(SCENARIOS))
    parser.add_argument("--cost", nargs="*", choices=sorted(COST_WORLDS), help="measure the repair cost on these worlds instead")
    parser.add_argument("--work", default="/tmp/geosid-bench-operations")
    parser.add_argument("--timeline", choices=["clean"], help="(internal) run only this timeline over the world under --work")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from results_io import write_results

    if args.timeline:  # the clean timeline of a simulation, in a process of its own
        from geosid.config import Settings
        from geosid.lake import spark_session

        work = Path(args.work)
        with spark_session(Settings(lake_root=work / "unused")) as spark:
            result = run_timeline(args.timeline, SCENARIOS[args.scenario](), work, spark)
        (work / args.timeline / "timeline.json").write_text(json.dumps(result))
        return
    if args.cost:
        results = {w: repair_cost(w, Path(args.work) / f"cost-{w}") for w in args.cost}
        write_results("year_of_operations-cost", results)
        return
    results = simulate(SCENARIOS[args.scenario](), Path(args.work) / args.scenario)
    print(report_table(results))
    write_results(f"year_of_operations-{args.scenario}", results)


if __name__ == "__main__":
    main()
