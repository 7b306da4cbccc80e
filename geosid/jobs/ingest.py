"""Ingest: raw sources -> bronze.events, bronze.items, bronze.rejects for a date range.

Every landed line ends in exactly one place: a bronze row or a bronze.rejects row with a
reason code (or, for whole-history files, outside the run's date range, where another
run will take it; the report counts those too). Nothing is dropped silently.

The transforms are pure (`DataFrame -> DataFrame`) and run on any engine; `run_ingest`
does the I/O: land raw files, classify, stage once, write the three tables.
"""

from __future__ import annotations

import datetime as dt_
import functools
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from geosid.errors import NotFoundError
from geosid.lake import Lake, date_bounds, day_runs, days_between
from geosid.schemas import bronze
from geosid.sources import landing
from geosid.sources.registry import get_source

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# Pure transforms


def attribute_dates(candidates: DataFrame, fallback: dt_.date) -> DataFrame:
    """Add `dt`, the logical date of each line.

    A drop's lines belong to the drop's date. A line of a whole-history file belongs to
    its event's date; a line whose date cannot be read belongs to the date of the nearest
    readable line before it in the same file (after it, for a file's first lines), so a
    broken line is reported by the run of the day it arrived among. `fallback` dates the
    lines of a file where no line has a readable date.
    """
    event_date = F.to_date("event_ts")
    # Both look-ups are running frames (from the file's start, and from its end in reverse
    # order): JVM Spark evaluates a frame ending at UNBOUNDED FOLLOWING anew for every row,
    # quadratic on a whole-history file (NYC: minutes on a cluster instead of seconds).
    before = Window.partitionBy("source_file").orderBy("line_no").rowsBetween(Window.unboundedPreceding, 0)
    after = Window.partitionBy("source_file").orderBy(F.col("line_no").desc()).rowsBetween(Window.unboundedPreceding, 0)
    return candidates.withColumn(
        "dt",
        F.coalesce(
            F.col("drop_date"),
            event_date,
            F.last(event_date, ignorenulls=True).over(before),
            F.last(event_date, ignorenulls=True).over(after),
            F.lit(fallback),
        ),
    )


def flag_drop_timing(candidates: DataFrame) -> DataFrame:
    """In a daily drop, an event dated after the drop is from the future; before it, late."""
    event_date = F.to_date("event_ts")
    has_drop = F.col("drop_date").isNotNull() & F.col("reason").isNull()
    return candidates.withColumn(
        "reason",
        F.when(has_drop & (event_date > F.col("drop_date")), F.lit("future_event"))
        .when(has_drop & (event_date < F.col("drop_date")), F.lit("late_event"))
        .otherwise(F.col("reason")),
    ).withColumn(
        "detail",
        F.when(
            F.col("reason").isin("future_event", "late_event") & F.col("detail").isNull(),
            F.format_string("event date %s, drop date %s", F.to_date("event_ts").cast("string"), F.col("drop_date").cast("string")),
        ).otherwise(F.col("detail")),
    )


def flag_duplicates(candidates: DataFrame) -> DataFrame:
    """Exact duplicates (same raw text, same source): the first line by (file, line) stays."""
    window = Window.partitionBy("source", "raw").orderBy("source_file", "line_no")
    first_file = F.first("source_file").over(window)
    first_line = F.first("line_no").over(window)
    is_duplicate = (F.row_number().over(window) > 1) & F.col("reason").isNull()
    return (
        candidates.withColumn("_dup", is_duplicate)
        .withColumn("_dup_of", F.format_string("duplicate of %s line %d", first_file, first_line))
        .withColumn("reason", F.when(F.col("_dup"), F.lit("duplicate")).otherwise(F.col("reason")))
        .withColumn("detail", F.when(F.col("_dup"), F.col("_dup_of")).otherwise(F.col("detail")))
        .drop("_dup", "_dup_of")
    )


def in_range(candidates: DataFrame, first: dt_.date, last: dt_.date) -> DataFrame:
    return candidates.filter((F.col("dt") >= F.lit(first)) & (F.col("dt") <= F.lit(last)))


def classify(candidates: DataFrame, first: dt_.date, last: dt_.date) -> DataFrame:
    """Parsed candidates -> the run's lines, each with its date and final reason (or null)."""
    return (
        candidates.transform(attribute_dates, fallback=last)
        .transform(flag_drop_timing)
        .transform(in_range, first=first, last=last)
        .transform(flag_duplicates)
    )


def to_events(classified: DataFrame, dataset: str) -> DataFrame:
    """Accepted lines -> bronze.events. event_id is a stable hash of source and raw text."""
    return classified.filter(F.col("reason").isNull()).select(
        F.substring(F.sha2(F.concat_ws("\u0001", F.col("source"), F.col("raw")), 256), 1, 32).alias("event_id"),
        F.lit(dataset).alias("source"),
        "user_id",
        "item_id",
        "action",
        "event_ts",
        "tz_offset_min",
        "user_lat",
        "user_lon",
        "request_id",
        "gmv",
        "source_file",
        "line_no",
        "dt",
    )


def to_rejects(classified: DataFrame) -> DataFrame:
    return classified.filter(F.col("reason").isNotNull()).select("source", "source_file", "line_no", "reason", "detail", "raw", "dt")


# ---------------------------------------------------------------------------------------
# run


@dataclass
class IngestReport:
    source: str
    first: dt_.date
    last: dt_.date
    lines_landed: int = 0
    lines_in_range: int = 0
    events: int = 0
    items: int = 0
    rejects: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    table_versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    passes: int = 0  # passes of whole days (a large range; see run_ingest)
    days: list[dt_.date] = field(default_factory=list)  # the days ingested (arrived)
    waiting: list[dt_.date] = field(default_factory=list)  # days of the range whose drops have not arrived

    @property
    def lines_out_of_range(self) -> int:
        return self.lines_landed - self.lines_in_range

    @property
    def reject_rate(self) -> float:
        return self.rejects / self.lines_in_range if self.lines_in_range else 0.0

    def summary(self) -> str:
        rows = [
            f"ingest {self.source} {self.first} .. {self.last} in {self.seconds:.1f}s",
            f"  lines landed        {self.lines_landed:>12,}",
            f"  outside the range   {self.lines_out_of_range:>12,}  (left for the runs of their days)",
            f"  bronze.events       {self.events:>12,}",
            f"  bronze.items        {self.items:>12,}",
            f"  bronze.rejects      {self.rejects:>12,}  ({self.reject_rate:.3%} of the range's lines)",
        ]
        rows += [f"    {reason:<18}{n:>12,}" for reason, n in sorted(self.rejects_by_reason.items())]
        if self.waiting:
            rows.append(f"  not arrived         {len(self.waiting):>12,}  day(s), left as they were: {_days_text(self.waiting)}")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "lines_landed": self.lines_landed,
            "lines_in_range": self.lines_in_range,
            "events": self.events,
            "items": self.items,
            "rejects": self.rejects,
            "rejects_by_reason": self.rejects_by_reason,
            "table_versions": self.table_versions,
            "seconds": round(self.seconds, 3),
            "passes": self.passes,
            "days": [d.isoformat() for d in self.days],
            "waiting": [d.isoformat() for d in self.waiting],
        }


def _days_text(days: list[dt_.date], shown: int = 5) -> str:
    text = ", ".join(d.isoformat() for d in days[:shown])
    return text + (f" and {len(days) - shown} more" if len(days) > shown else "")


# Lines one pass of a range ingest takes at most (whole drop days; an engine holds one
# pass's shuffle at a time): a large backfill runs as several passes, each like a run of
# its days.
MAX_LINES_PER_PASS = 2_000_000


@dataclass
class _Landed:
    """One landed raw file: its drop day (None: a whole-history file) and line count."""

    feed: str
    path: Path
    drop_date: dt_.date | None
    lines: int


def pass_windows(landed: list[_Landed], first: dt_.date, last: dt_.date, max_lines: int) -> list[tuple[dt_.date, dt_.date]]:
    """[first, last] cut into runs of whole days of at most `max_lines` landed lines (a day
    over the limit is a pass of its own); one pass when a file has no drop day (its lines
    are dated only after parsing)."""
    if any(f.drop_date is None for f in landed):
        return [(first, last)]
    per_day: dict[dt_.date, int] = {}
    for f in landed:
        per_day[f.drop_date] = per_day.get(f.drop_date, 0) + f.lines
    windows, start, lines = [], first, 0
    day = first
    while day <= last:
        n = per_day.get(day, 0)
        if lines and lines + n > max_lines:
            windows.append((start, day - dt_.timedelta(days=1)))
            start, lines = day, 0
        lines += n
        day += dt_.timedelta(days=1)
    windows.append((start, last))
    return windows


def arrived_runs(
    spec, path: str | Path, first: dt_.date, last: dt_.date, marker: str | None
) -> tuple[list[tuple[dt_.date, dt_.date]], list[dt_.date]]:
    """[first, last] cut into runs of consecutive days that have arrived, and the days that
    have not. A whole-history file holds every day of the range; a folder of drops holds
    a day when every feed's drop of it is complete (`landing.drop_days`)."""
    complete = spec.complete_days(path, marker)
    days = days_between(first, last)
    if complete is None:  # a whole-history file: every day up to its last
        through = spec.complete_through(path)
        if through is None or through >= last:
            return [(first, last)], []
        return ([(first, through)] if first <= through else []), [d for d in days if d > through]
    return day_runs(d for d in days if d in complete), [d for d in days if d not in complete]


def run_ingest(
    lake: Lake,
    source: str,
    path: str | Path,
    first: dt_.date | str,
    last: dt_.date | str | None = None,
    *,
    progress: bool = True,
    max_lines_per_pass: int = MAX_LINES_PER_PASS,
    marker: str | None = landing.DROP_MARKER,
) -> IngestReport:
    """Ingest `source` at `path` for the inclusive day range [first, last] into bronze.

    Replaces exactly this source's rows of those days in the three bronze tables, so a
    re-run gives identical tables. Only days that have arrived are touched: of a folder of
    drops, the days whose drops are complete (the `marker`); the others are reported as
    waiting and keep what they hold. A range of more than `max_lines_per_pass` landed lines
    in daily drops runs in passes of whole days (`pass_windows`), each committed on its own
    and each like a run of its days: a line dated in another pass's days is left to that
    pass (counted outside the range), and duplicates are found within a pass.
    """
    spec = get_source(source)
    first, last = date_bounds((first, last if last is not None else first))
    started = time.perf_counter()
    report = IngestReport(source=source, first=first, last=last)
    runs, report.waiting = arrived_runs(spec, path, first, last, marker)
    by_reason: dict[str, int] = {}
    for run_first, run_last in runs:
        _ingest_run(
            lake, spec, path, run_first, run_last, progress=progress, max_lines_per_pass=max_lines_per_pass, report=report, by_reason=by_reason
        )
        report.days += [run_first + dt_.timedelta(days=k) for k in range((run_last - run_first).days + 1)]
    report.lines_in_range = sum(by_reason.values())
    report.rejects_by_reason = {k: v for k, v in by_reason.items() if k}
    report.rejects = sum(report.rejects_by_reason.values())
    if runs:
        dt_range = (first, last)
        report.events = lake.read(bronze.EVENTS, dt=dt_range).filter(F.col("source") == spec.name).count()
        report.items = lake.read(bronze.ITEMS, dt=dt_range).filter(F.col("source") == spec.name).count()
    report.seconds = time.perf_counter() - started
    return report


def _ingest_run(
    lake: Lake,
    spec,
    path: str | Path,
    first: dt_.date,
    last: dt_.date,
    *,
    progress: bool,
    max_lines_per_pass: int,
    report: IngestReport,
    by_reason: dict[str, int],
) -> None:
    """Land the raw files of [first, last] (consecutive days that have arrived) and ingest
    them in passes of whole days."""
    run_dir = lake.root / "_work" / "ingest" / spec.name / f"{first}_{last}"
    try:
        landed: list[_Landed] = []
        for feed in spec.feeds:
            files = landing.discover(feed.root(path), first, last)
            landed_dir, n_lines = landing.land(files, feed.name, feed.encoding, run_dir / "landed" / feed.kind, progress=progress)
            report.lines_landed += n_lines
            for index, raw in enumerate(files):  # land() writes part-<index> per file, in order
                part = landed_dir / f"part-{index:05d}.parquet"
                landed.append(_Landed(feed.kind, part, raw.drop_date, pq.ParquetFile(part).metadata.num_rows))
        empty = run_dir / "landed" / "empty.parquet"  # what a feed without files in a pass reads
        pq.write_table(landing.LANDED_SCHEMA.empty_table(), empty)
        windows = pass_windows(landed, first, last, max_lines_per_pass)
        report.passes += len(windows)
        for window in windows:
            _ingest_pass(
                lake, spec, window, [f for f in landed if f.drop_date is None or window[0] <= f.drop_date <= window[1]], report, by_reason, empty
            )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _ingest_pass(
    lake: Lake, spec, window: tuple[dt_.date, dt_.date], landed: list[_Landed], report: IngestReport, by_reason: dict[str, int], empty: Path
) -> None:
    """Classify the landed lines of one pass's days and replace those days in bronze."""
    spark = lake.spark
    first, last = window
    run = f"ingest-{spec.name}-{first}_{last}"
    try:
        staged: dict[str, DataFrame] = {}
        for feed in spec.feeds:
            paths = [str(f.path) for f in landed if f.feed == feed.kind] or [str(empty)]
            lines = spark.read.parquet(*paths)
            classified = lines.transform(feed.parse).transform(classify, first=first, last=last)
            # Materialize once: events, items, rejects and the counts all read the staged rows.
            staged[feed.kind] = lake.checkpoint(classified, f"{run}-{feed.kind}")

        events_stage = staged["events"]
        events = events_stage.transform(to_events, dataset=spec.name)
        valid_items = staged["items"].filter(F.col("reason").isNull()) if "items" in staged else None
        if spec.items_from == "events":
            items = spec.make_items(events_stage.filter(F.col("reason").isNull()).withColumn("source", F.lit(spec.name)))
        else:
            items = spec.make_items(valid_items)
        rejects = events_stage.transform(to_rejects)
        if "items" in staged:
            rejects = rejects.unionByName(staged["items"].transform(to_rejects))

        feed_names = ", ".join(f"'{feed.name}'" for feed in spec.feeds)
        dt_range = (first, last)
        report.table_versions["bronze.events"] = lake.write(events, bronze.EVENTS, dt=dt_range, where=f"source = '{spec.name}'")
        report.table_versions["bronze.items"] = lake.write(items, bronze.ITEMS, dt=dt_range, where=f"source = '{spec.name}'")
        report.table_versions["bronze.rejects"] = lake.write(rejects, bronze.REJECTS, dt=dt_range, where=f"source IN ({feed_names})")

        reasons = functools.reduce(DataFrame.unionByName, [frame.select("reason") for frame in staged.values()])
        for row in reasons.groupBy(F.coalesce("reason", F.lit("")).alias("reason")).count().collect():
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + row["count"]
    finally:
        lake.drop_checkpoints(run)


def scan_date_range(lake: Lake, source: str, path: str | Path) -> tuple[dt_.date, dt_.date]:
    """The first and last event dates of a source: drop dates, or the file's readable times."""
    feed = get_source(source).feed("events")
    files = landing.discover(feed.root(path))
    drop_dates = [f.drop_date for f in files if f.drop_date is not None]
    if drop_dates and len(drop_dates) == len(files):
        return min(drop_dates), max(drop_dates)
    with tempfile.TemporaryDirectory() as scratch:
        landed_dir, _ = landing.land(files, feed.name, feed.encoding, Path(scratch) / "landed", progress=False)
        row = (
            lake.spark.read.parquet(str(landed_dir))
            .transform(feed.parse)
            .filter(F.col("reason").isNull())
            .agg(F.min(F.to_date("event_ts")).alias("first"), F.max(F.to_date("event_ts")).alias("last"))
            .collect()[0]
        )
    if row["first"] is None:
        raise NotFoundError(f"no readable event date in {path}: is it a {source} file?")
    return row["first"], row["last"]
