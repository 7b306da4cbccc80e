"""Pipeline steps of the training corpus: cell context, sequences (a range from scratch, or
one day incrementally), the corpus gate."""

from __future__ import annotations

import datetime as dt_
import json
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import functions as F

from geosid.errors import InvalidRequestError, MissingStateError, NotFoundError
from geosid.jobs import validate as validate_job
from geosid.jobs.corpus import (
    CorpusConfig,
    SplitConfig,
    build_cell_context,
    build_day,
    build_range,
    corpus_scan,
    rollback_state,
)
from geosid.jobs.geo import run_geo, run_geo_range
from geosid.jobs.index import level_sizes_of
from geosid.lake import DateLike, as_date, days_between
from geosid.pipeline.context import Context, use
from geosid.pipeline.gates import GateReport
from geosid.pipeline.index import SkippedStep, version_in_force
from geosid.pipeline.records import corpus_params, record, require_arrived
from geosid.pipeline.scopes import CellScope, CorpusScope, Stage
from geosid.pipeline.silver import geo_config, record_geo
from geosid.schemas import bronze, silver


def corpus_config(ctx: Context, source: str, split=None):
    """The source's corpus shape (registry) with the lake's cells and the given split."""

    return CorpusConfig.for_source(source, cell_config=ctx.settings.cells, split=split or SplitConfig())


def split_config(protocol: str, last: dt_.date, test_start=None, valid_start=None, test_days=None, valid_days=None):
    return SplitConfig.for_range(protocol, last, test_start, valid_start, test_days, valid_days)


def daily_split(split: SplitConfig | None) -> SplitConfig:
    """The split of a daily build: the time protocol (the others need the whole range)."""
    split = split or SplitConfig()
    if split.protocol != "time":
        raise InvalidRequestError(f"a daily build labels targets by day: the time split, not {split.protocol} (a range build can)")
    return split


def source_days(ctx: Context, source: str) -> tuple[dt_.date, dt_.date]:
    scan = corpus_scan(ctx.lake, source) if ctx.lake.exists(bronze.EVENTS) else None
    if scan is None:
        raise NotFoundError(f"no bronze events of {source}: ingest it first")
    return scan


def _require_version(ctx: Context, day: dt_.date, codebook_version: str | None) -> str:
    version = version_in_force(ctx, day, codebook_version)
    if version is None:
        raise NotFoundError(f"no codebook version published as of {day}; pass --version (geosid codebook list)")
    return version


def cell_context(first: DateLike, last: DateLike, *, ctx: Context | None = None, lake_root: str | None = None):
    """corpus.cell_context of [first, last] from the latest earlier geo snapshots."""

    first, last = as_date(first), as_date(last)
    with use(ctx, lake_root, writes="cell_context") as ctx:
        with ctx.stage(f"corpus.cell_context {first} .. {last}", timed="cell context"):
            report = build_cell_context(ctx.lake, first, last, ctx.settings.cells.cells())
            record_cell_context(ctx, ctx.settings.cells, first, last)
        ctx.log(report.summary())
        return report


def record_cell_context(ctx: Context, cell_config, first: dt_.date, last: dt_.date, mode: str | None = None) -> None:
    record(
        ctx,
        Stage.CELL_CONTEXT,
        CellScope(cell_config.name),
        days_between(first, last),
        cell_config.to_record(),
        mode or ("day" if first == last else "range"),
    )


def context_snapshots(first: DateLike, last: DateLike, every: int, *, ctx: Context | None = None, lake_root: str | None = None) -> list[dt_.date]:
    """silver.geo_cells snapshots every `every` days of [first, last) that are missing
    (context only: no item_geo); returns the days computed. Daily snapshots (every=1)
    are one range job (windowed aggregates over all the days at once)."""

    first, last = as_date(first), as_date(last)
    with use(ctx, lake_root, writes="context_snapshots") as ctx:
        config = geo_config(ctx)
        have = set()
        if ctx.lake.exists(silver.GEO_CELLS):
            cells = ctx.lake.read(silver.GEO_CELLS).filter(F.col("cell_system") == config.cells().name)
            have = {r.dt for r in cells.select("dt").distinct().collect()}
        wanted = [first + dt_.timedelta(days=k) for k in range(every - 1, (last - first).days, every)]
        todo = [d for d in wanted if d not in have]
        with ctx.stage(f"geo context snapshots every {every} days for the cell context ({len(todo)} to compute)", timed="geo snapshots"):
            if todo:
                require_arrived(ctx, max(todo))
            if every == 1 and len(todo) > 1:
                ctx.log(run_geo_range(ctx.lake, min(todo), max(todo), config, with_items=False).summary())  # rewrites the days between too: same rows
                record_geo(ctx, config, days_between(min(todo), max(todo)), with_items=False, mode="range")
            else:
                for day in todo:
                    run_geo(ctx.lake, day, config, with_items=False)
                    record_geo(ctx, config, [day], with_items=False)
        return todo


@dataclass
class CorpusOutcome:
    codebook_version: str
    context: object | None  # CellContextReport
    sequences: object  # CorpusReport
    gate: GateReport | None = None

    @property
    def passed(self) -> bool:
        return self.gate is None or self.gate.passed

    def to_dict(self) -> dict:
        return {
            **self.sequences.to_dict(),
            "dt": self.sequences.last.isoformat(),
            "context_rows": self.context.rows if self.context else None,
            "gate": self.gate.to_dict() if self.gate else None,
        }


def corpus_build(
    source: str,
    first: DateLike | None = None,
    last: DateLike | None = None,
    codebook_version: str | None = None,
    split=None,
    *,
    validate: bool = True,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> CorpusOutcome:
    """Cell context and training sequences of [first, last] (default: every day of the
    source) from scratch under a version (default: the one in force on the last day),
    then the corpus gate."""

    with use(ctx, lake_root, writes="corpus_build") as ctx:
        days = source_days(ctx, source)
        first = as_date(first) if first is not None else days[0]
        last = as_date(last) if last is not None else days[1]
        version = _require_version(ctx, last, codebook_version)
        require_arrived(ctx, last)
        config = corpus_config(ctx, source, split)
        context = cell_context(first, last, ctx=ctx)
        s = config.split
        detail = f"test from {s.test_start}, valid from {s.valid_start}" if s.protocol == "time" else f"split {s.protocol}"
        with ctx.stage(f"training sequences {first} .. {last} under {version} (from scratch; {detail})", timed="sequences"):
            report = build_range(ctx.lake, version, first, last, config)
            record_sequences(ctx, version, config, first, last, "range")
        keep_build_report(ctx, report)
        ctx.log(report.summary())
        ctx.log(f"    {report.input_events / max(report.seconds, 1e-9):,.0f} events/s")
        ctx.log("targets per split: " + ", ".join(f"{k} {report.splits.get(k, 0):,}" for k in ("train", "valid", "test")))
        gate = validate_corpus(first, last, version, protocol=config.split.protocol, ctx=ctx) if validate else None
        return CorpusOutcome(version, context, report, gate)


def keep_build_report(ctx: Context, report) -> Path:
    """The build's own counts (targets per split, events left out and why) as JSON under
    `_reports/corpus/builds/`, where the lake's report reads them."""
    folder = ctx.lake.reports_dir("corpus", "builds")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report.codebook_version}-{report.protocol}-{report.mode}-{report.first}_{report.last}.json"
    path.write_text(json.dumps(report.to_dict(), indent=1, default=str))
    return path


def record_sequences(ctx: Context, version: str, config, first: dt_.date, last: dt_.date, mode: str, continued_from: dt_.date | None = None) -> None:
    """Record a corpus build: its days, and for a day continued from a state checkpoint, which."""

    span = (first, last) if mode == "range" else (None, None)
    params = corpus_params(config, *span)
    record(
        ctx,
        Stage.SEQUENCES,
        CorpusScope.of(version, config),
        days_between(first, last),
        params,
        mode,
        version,
        {last: continued_from} if continued_from else None,
    )


def corpus_day(
    day: DateLike,
    source: str,
    codebook_version: str | None = None,
    split: SplitConfig | None = None,
    *,
    validate: bool = False,
    ctx: Context | None = None,
    lake_root: str | None = None,
):
    """Cell context and the day's sequences under the version in force on the day,
    continuing yesterday's history state. Without a state as of yesterday (a skipped or
    failed day) the state is taken back to its nearest checkpoint and the days after it
    are built again in order; with no checkpoint at all (a new version's first run) the
    corpus is rebuilt from the source's first day. `split`: the time split's boundaries
    (default: every target is train)."""
    day = as_date(day)
    split = daily_split(split)
    with use(ctx, lake_root, writes=f"corpus day {day}") as ctx:
        version = version_in_force(ctx, day, codebook_version)
        if version is None:
            skipped = SkippedStep(day, f"no codebook version published as of {day}")
            ctx.log(skipped.summary())
            return skipped
        require_arrived(ctx, day)
        config = corpus_config(ctx, source, split)
        context = cell_context(day, day, ctx=ctx)
        report = sequences_day(ctx, version, config, day)
        ctx.log(report.summary())
        gate = validate_corpus(day, day, version, ctx=ctx) if validate else None
        return CorpusOutcome(version, context, report, gate)


def sequences_day(ctx: Context, version: str, config, day: dt_.date, mode: str = "day"):
    """The day's sequences from yesterday's state (see corpus_day), recorded."""

    try:
        with ctx.stage(f"training sequences {day} under {version} (incremental)", timed="sequences"):
            report = build_day(ctx.lake, version, day, config)
            record_sequences(ctx, version, config, day, day, mode, day - dt_.timedelta(days=1))
        keep_build_report(ctx, report)
        return report
    except MissingStateError as exc:
        checkpoint = rollback_state(ctx.lake, config, version, day)
        if checkpoint is None:
            ctx.log(f"    {exc}; no state checkpoint before it: rebuilding from the first day")
            first = source_days(ctx, config.source)[0]
            with ctx.stage(f"training sequences {first} .. {day} under {version} (rebuild)", timed="sequences"):
                report = build_range(ctx.lake, version, first, day, config)
                record_sequences(ctx, version, config, first, day, "range")
            keep_build_report(ctx, report)
            return report
        ctx.log(f"    {exc}: continuing from the state checkpoint of {checkpoint}")
    for missed in days_between(checkpoint + dt_.timedelta(days=1), day - dt_.timedelta(days=1)):
        sequences_day(ctx, version, config, missed, "repair")
    return sequences_day(ctx, version, config, day, mode)


def rebuild_corpus(
    codebook_version: str,
    first: DateLike,
    last: DateLike,
    source: str,
    split: SplitConfig | None = None,
    *,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> CorpusOutcome:
    """The backfill path: cell context and sequences of [first, last] under a version,
    from scratch, with the history state as of `last` (`split`: default the time split
    with every target train)."""
    split = split or split_config("time", as_date(last))
    return corpus_build(source, first, last, codebook_version, split, validate=False, ctx=ctx, lake_root=lake_root)


def validate_corpus(
    first: DateLike,
    last: DateLike | None = None,
    codebook_version: str | None = None,
    protocol: str = "time",
    *,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> GateReport | SkippedStep:
    """The corpus suites of a day or range under a version (default: in force on the last
    day) and split protocol."""

    first = as_date(first)
    last = as_date(last) if last is not None else first
    if last < first:
        raise InvalidRequestError(f"empty date range: {first} .. {last}")
    with use(ctx, lake_root, writes="validate_corpus") as ctx:
        version = version_in_force(ctx, last, codebook_version)
        if version is None:
            skipped = SkippedStep(last, f"no codebook version published as of {last}: no corpus to validate")
            ctx.log(skipped.summary())
            return skipped
        with ctx.stage("data quality (great-expectations)", timed="validate corpus"):
            results = validate_job.validate_corpus(
                ctx.lake, (first, last), version, level_sizes_of(ctx.lake, version), ctx.settings.cells.name, protocol
            )
            gate = GateReport("corpus", first, last, results)
        ctx.log(gate.summary())
        return gate
