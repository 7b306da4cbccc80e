"""The demo: the whole pipeline that exists, on the shipped NYC check-ins (or, without
them, the synthetic local-life world), from raw file to an aligned, evaluated model."""

from __future__ import annotations

import datetime as dt_
import gzip
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import functions as F

from geosid.pipeline.bronze import ingest
from geosid.pipeline.context import Context
from geosid.pipeline.corpus import context_snapshots, corpus_build, corpus_day, split_config
from geosid.pipeline.index import build_index
from geosid.pipeline.lake_ops import format_tables, tables
from geosid.pipeline.maintenance import maintain
from geosid.pipeline.repairs import repair
from geosid.pipeline.report_site import build_report
from geosid.pipeline.silver import embed, geo, validate_silver
from geosid.pipeline.staleness import status
from geosid.pipeline.train import TrainOutcome, train_with_control
from geosid.schemas import bronze, corpus
from geosid.sources.landing import DROP_MARKER, decode_lines, discover
from geosid.sources.registry import get_source
from geosid.sources.synthetic_world import WorldConfig, write_world

# The synthetic world the demo generates when the NYC file is absent.
DEMO_WORLD = {"n_days": 7, "n_users": 5_000, "n_stores": 1_000, "corrupt_rate": 0.001}


@dataclass
class DemoReport:
    source: str
    path: Path
    first: dt_.date | None = None
    last: dt_.date | None = None
    codebook_version: str | None = None
    published: bool = False
    incremental_digest: tuple | None = None  # (rows, digest) of the last day, rebuilt and re-run
    incremental_identical: bool | None = None
    drill: dict | None = None  # the operations drill: a corrected day re-delivered, repaired, checked
    maintenance: object = None  # MaintenanceReport
    site: object = None  # SiteReport: the HTML report of the lake
    training: TrainOutcome | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def demo(*, synthetic: bool = False, world: dict | None = None, train: bool = True, ctx: Context) -> DemoReport:
    """Ingest -> validate -> geo -> embed -> index (three tokenizers, the best published) ->
    corpus (every day, an incremental re-run of the last day checked against the rebuild)
    -> pretrain, DPO and a lambda-0 control. `world` overrides the synthetic world's size."""

    tsmc = get_source("tsmc2014").default_path(ctx.settings)
    if tsmc is not None and not synthetic:
        ctx.log(f"geosid demo: Foursquare TSMC2014 NYC check-ins from {tsmc}")
        report = DemoReport("tsmc2014", tsmc)
    else:
        if tsmc is None:
            ctx.log(
                "geosid demo: the TSMC2014 file was not found (../shared/data or GEOSID_TSMC_PATH); running on the SYNTHETIC local-life world instead"
            )
        report = DemoReport("synthetic", ctx.lake.root / "_raw" / "synthetic")
        with ctx.stage(f"generate the synthetic world under {report.path}", timed="synthetic world"):
            write_world(report.path, WorldConfig(**{**DEMO_WORLD, **(world or {})}), progress=ctx.progress)

    bronze = ingest(report.source, path=report.path, ctx=ctx)
    if not bronze.passed:
        report.failures.append("bronze data quality")
    first, last = bronze.report.first, bronze.report.last
    report.first, report.last = first, last

    # The silver stage is a daily snapshot: the demo takes it as of the data's last day.
    geo(last, ctx=ctx)
    embed(last, ctx=ctx)
    if not validate_silver(last, ctx=ctx).passed:
        report.failures.append("silver data quality")

    index = build_index(last, ctx=ctx)
    if index.published:
        report.codebook_version, report.published = index.published, True
    elif index.fits:
        # Publishing is the gates' decision; the corpus (like a backfill) can still be
        # built under a candidate, and the demo says which.
        best = min(index.fits, key=lambda f: (f.metrics["conflict_rate"], f.codebook_version))
        report.codebook_version = best.codebook_version
        ctx.log(f"no published codebook version: building the corpus under the best candidate {best.codebook_version} (fewest conflicts)")
    if report.codebook_version is None:
        ctx.log("no codebook version: no training corpus")
        return _finish(report, ctx)

    days = (last - first).days + 1
    long_range = days > 14
    context_snapshots(first, last, every=1, ctx=ctx)  # daily cell context: the day before each request
    split = split_config("time", last, test_days=3 if long_range else 1, valid_days=3 if long_range else 1)
    built = corpus_build(report.source, first, last, report.codebook_version, split, ctx=ctx)
    if not built.passed:
        report.failures.append("corpus data quality")

    scope = f"codebook_version = '{report.codebook_version}'"
    with ctx.stage(f"re-run {last} incrementally from the {last - dt_.timedelta(days=1)} history state", timed="incremental day"):
        before = ctx.lake.digest(corpus.TRAINING_SEQUENCES, dt=last, where=scope)
        corpus_day(last, report.source, report.codebook_version, split, ctx=ctx)
        after = ctx.lake.digest(corpus.TRAINING_SEQUENCES, dt=last, where=scope)
    report.incremental_digest, report.incremental_identical = after, before == after
    same = "identical to the full rebuild" if before == after else "DIFFERENT from the full rebuild"
    ctx.log(f"    {after[0]:,} rows, digest {after[1]}: {same}")
    if before != after:
        report.failures.append("incremental day differs from the rebuild")

    if train:
        report.training = train_with_control(report.codebook_version, ctx=ctx)
    operations_drill(report, split, ctx)
    # the demo's lake is its own: vacuum at once (a shared lake keeps the 7-day default)
    report.maintenance = maintain(retention_hours=0, ctx=ctx)
    return _finish(report, ctx)


def redelivery(ctx: Context, source: str, raw: Path, day: dt_.date, out: Path, leave_out: int = 1) -> Path:
    """The day's raw input as its producer re-delivers it, corrected: a drop folder under
    `out` with every line of the day but the last `leave_out` events (sent by mistake).
    The day's lines come from its drops, or (a whole-history file) are the lines bronze
    dated to the day."""

    shutil.rmtree(out, ignore_errors=True)
    for feed in get_source(source).feeds:
        root = feed.root(raw)
        if root.is_dir():
            files = [f.path for f in discover(root, day, day)]
            lines = [line for path in files for line in decode_lines(_raw_bytes(path), feed.encoding)[0]]
        else:
            numbers = {r["line_no"] for r in ctx.lake.read(bronze.EVENTS, dt=day).filter(F.col("source") == source).select("line_no").collect()}
            numbers |= {r["line_no"] for r in ctx.lake.read(bronze.REJECTS, dt=day).filter(F.col("source") == feed.name).select("line_no").collect()}
            everything = decode_lines(_raw_bytes(root), feed.encoding)[0]
            lines = [everything[n - 1] for n in sorted(numbers)]
        if feed.kind == "events":
            lines = lines[: max(0, len(lines) - leave_out)]
        target = out / (feed.subdir or "") / f"dt={day.isoformat()}"
        target.mkdir(parents=True)
        (target / f"{feed.kind}.txt").write_bytes(("\n".join(lines) + "\n").encode(feed.encoding, errors="replace") if lines else b"")
        (target / DROP_MARKER).write_bytes(b"")
    return out


def _raw_bytes(path: Path) -> bytes:

    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def operations_drill(report: DemoReport, split, ctx: Context) -> None:
    """A day two days before the last comes again, corrected (one event less): ingesting it
    makes the later days stale (status says which and why), the repair rebuilds them from
    the history checkpoint before it, nothing is stale after, and the repaired sequences
    equal a rebuild of the whole corpus from scratch."""

    day = report.last - dt_.timedelta(days=2)
    if day < report.first:
        return
    path = redelivery(ctx, report.source, report.path, day, ctx.lake.root / "_drill" / report.source)
    with ctx.stage(f"operations drill: {day} re-delivered with one event less (a correction), then repaired", timed="operations drill"):
        ingested = ingest(report.source, day, day, path, validate=False, ctx=ctx)
        stale = status(ctx=ctx)
        ctx.log(stale.summary())
        repaired = repair(ctx=ctx)
        left = status(ctx=ctx).stale
        scope, repaired_days = f"codebook_version = '{report.codebook_version}'", (day, report.last)
        after_repair = ctx.lake.digest(corpus.TRAINING_SEQUENCES, dt=repaired_days, where=scope)
        corpus_build(report.source, report.first, report.last, report.codebook_version, split, validate=False, ctx=ctx)
        rebuilt = ctx.lake.digest(corpus.TRAINING_SEQUENCES, dt=repaired_days, where=scope)
    same = after_repair == rebuilt
    report.drill = {
        "day": day.isoformat(),
        "changed": [d.isoformat() for d in ingested.inputs.changed],
        "stale_before": stale.stale,
        "repaired_days": len(repaired.days),
        "checkpoints": {k: str(v) for k, v in repaired.checkpoints.items()},
        "stale_after": left,
        "identical_to_rebuild": same,
    }
    ctx.log(
        f"    drill: {stale.stale} stale day(s) before the repair, {left} after; the repaired days' sequences are "
        f"{'identical to' if same else 'DIFFERENT from'} a rebuild of the whole corpus from scratch ({rebuilt[0]:,} rows, digest {rebuilt[1]})"
    )
    if left or not same:
        report.failures.append("operations drill: the repair left stale days or differs from the rebuild")


def _finish(report: DemoReport, ctx: Context) -> DemoReport:
    infos = tables(ctx=ctx)
    with ctx.stage("the lake's HTML report (geosid report)", timed="report"):
        report.site = build_report(infos, ctx=ctx)
    ctx.log("")
    ctx.log(format_tables(infos))
    ctx.log("\nstage timings:\n" + ctx.timing_summary())
    ctx.log(f"\nthe lake's report: {report.site.index} (opens offline in a browser)")
    return report
