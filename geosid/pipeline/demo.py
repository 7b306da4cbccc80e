"""The demo: the whole pipeline that exists, on the shipped NYC check-ins (or, without
them, the synthetic local-life world), from raw file to an aligned, evaluated model."""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass, field
from pathlib import Path

from geosid.pipeline.bronze import ingest
from geosid.pipeline.context import Context
from geosid.pipeline.corpus import (
    context_snapshots,
    corpus_build,
    corpus_day,
    split_config,
)
from geosid.pipeline.index import build_index
from geosid.pipeline.lake_ops import format_tables, tables
from geosid.pipeline.silver import embed, geo, validate_silver
from geosid.pipeline.train import TrainOutcome, train_with_control

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
    training: TrainOutcome | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def demo(synthetic: bool = False, world: dict | None = None, train: bool = True, *, ctx: Context) -> DemoReport:
    """Ingest -> validate -> geo -> embed -> index (three tokenizers, the best published) ->
    corpus (every day, an incremental re-run of the last day checked against the rebuild)
    -> pretrain, DPO and a lambda-0 control. `world` overrides the synthetic world's size."""
    from geosid.schemas import corpus
    from geosid.sources.registry import get_source
    from geosid.sources.synthetic_world import WorldConfig, write_world

    tsmc = get_source("tsmc2014").default_path(ctx.settings)
    if tsmc is not None and not synthetic:
        ctx.log(f"geosid demo: Foursquare TSMC2014 NYC check-ins from {tsmc}")
        report = DemoReport("tsmc2014", tsmc)
    else:
        if tsmc is None:
            ctx.log(
                "geosid demo: the TSMC2014 file was not found (../shared/data or GEOSID_TSMC_PATH); "
                "running on the SYNTHETIC local-life world instead"
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
        corpus_day(last, report.source, report.codebook_version, split.test_start, split.valid_start, ctx=ctx)
        after = ctx.lake.digest(corpus.TRAINING_SEQUENCES, dt=last, where=scope)
    report.incremental_digest, report.incremental_identical = after, before == after
    same = "identical to the full rebuild" if before == after else "DIFFERENT from the full rebuild"
    ctx.log(f"    {after[0]:,} rows, digest {after[1]}: {same}")
    if before != after:
        report.failures.append("incremental day differs from the rebuild")

    if train:
        report.training = train_with_control(report.codebook_version, ctx=ctx)
    return _finish(report, ctx)


def _finish(report: DemoReport, ctx: Context) -> DemoReport:
    ctx.log("")
    ctx.log(format_tables(tables(ctx=ctx)))
    ctx.log("\nstage timings:\n" + ctx.timing_summary())
    return report
