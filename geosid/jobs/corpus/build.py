"""Training sequences: bronze events + SIDs + geo -> corpus.training_sequences.

Two ways to build, one kernel (`geosid.jobs.sequences_kernel`):

- `build_range` (from scratch, what a backfill runs): every past event of the source
  feeds the kernel; targets are the events of [first, last]; the history state is
  written as of the range's checkpoint days.
- `build_day` (incremental, what the daily run does): the state as of the day before of
  the users the day touched, plus the day's events, feed the kernel; it writes the day's
  sequences and new state rows for those users only, then compacts the few user buckets
  whose turn it is. A day costs its own events and touched users, not the history's length.

Both give the same rows (tested), so a backfill and a year of daily runs agree.
"""

from __future__ import annotations

import datetime as dt_
import functools
import math
import time

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from geosid.errors import InvalidRequestError, MissingStateError, NotFoundError
from geosid.geo.geometry import CellSystem
from geosid.geo.sql import add_cells
from geosid.jobs import sequences_kernel as kernel
from geosid.jobs.corpus.config import CorpusConfig, corpus_predicate, sequence_predicate
from geosid.jobs.corpus.protocols import label_splits, libcity_sessions, trajectory_bounds, trajectory_filter, trajectory_targets
from geosid.jobs.corpus.report import CorpusReport
from geosid.jobs.corpus.state import checkpoint_days, latest_states, state_events, state_layout_current, write_state
from geosid.lake import Lake, as_date
from geosid.schemas import bronze, corpus, index


def sid_items(sid_map: DataFrame, cells: CellSystem) -> DataFrame:
    """index.sid_map rows of one version -> (source, item_id, codes, digit, sid, item cell)."""
    return add_cells(sid_map, cells, "lat", "lon", cell="item_cell").select("source", "item_id", "codes", "disambiguation", "sid", "item_cell")


def kernel_events(events: DataFrame, items: DataFrame, cells: CellSystem, first: dt_.date) -> DataFrame:
    """bronze.events + SID items -> kernel input rows; events of days >= first are new.

    Events whose item has no SID under the version are left out (they cannot be
    written as tokens); `run` reports how many.
    """
    with_cells = add_cells(events, cells, "user_lat", "user_lon", cell="user_cell")
    if "is_target" not in events.columns:
        with_cells = with_cells.withColumn("is_target", F.lit(True))
    return with_cells.join(items, ["source", "item_id"]).select(
        "source",
        "user_id",
        "event_id",
        "request_id",
        "event_ts",
        "dt",
        "action",
        "item_id",
        "codes",
        "disambiguation",
        "sid",
        "item_cell",
        "user_cell",
        "gmv",
        (F.col("dt") >= F.lit(first)).alias("is_new"),
        "is_target",
    )


KERNEL_OUTPUT = T.StructType(
    [
        T.StructField("kind", T.StringType()),
        *[
            T.StructField(f.name, f.dataType)
            for f in corpus.TRAINING_SEQUENCES.schema.fields
            if f.name not in ("cell_system", "split", "codebook_version", "protocol")
        ],
        T.StructField("last_event_ts", T.TimestampType()),
        T.StructField("last_cell_id", T.StringType()),
        T.StructField("state_histories", T.ArrayType(corpus.STATE_HISTORY)),
        T.StructField("user_bucket", T.IntegerType()),
        T.StructField("n_unlocated", T.LongType()),
        T.StructField("n_input", T.LongType()),  # the task's input events (stats rows)
        T.StructField("n_new", T.LongType()),  # of which new (not from a state)
    ]
)


def run_kernel(rows: DataFrame, params: kernel.KernelParams, cells: CellSystem, partitions: int) -> DataFrame:
    """Kernel input rows -> KERNEL_OUTPUT rows (kind 'target', 'state' or 'stats').

    Rows are hash-partitioned by user, so every task holds whole users; a task gathers
    its batches, runs the kernel once and streams the result back.
    """

    out_schema = to_arrow_schema(KERNEL_OUTPUT, timezone="UTC")

    def shaped(table: pa.Table, kind: str) -> pa.Table:
        columns = {f.name: table[f.name] if f.name in table.column_names else pa.nulls(table.num_rows, f.type) for f in out_schema}
        columns["kind"] = pa.array([kind] * table.num_rows, pa.string())
        return pa.table(columns).cast(out_schema)

    def task(batches):
        batches = list(batches)
        if not batches or not sum(b.num_rows for b in batches):
            return
        table = pa.Table.from_batches(batches)
        n_new = int(pc.sum(table["is_new"].cast(pa.int64())).as_py() or 0)
        result = kernel.build(table, params, cells.neighbours)
        parts = [shaped(result.targets, "target")]
        if result.states is not None:  # no state days: a per-user protocol's range build
            state = result.states.rename_columns(["state_histories" if c == "histories" else c for c in result.states.column_names])
            parts.append(shaped(state, "state"))
        stats = {"n_unlocated": [result.targets_without_location], "n_input": [table.num_rows], "n_new": [n_new]}
        parts.append(shaped(pa.table({k: pa.array(v, pa.int64()) for k, v in stats.items()}), "stats"))
        for part in parts:
            yield from part.to_batches(max_chunksize=8192)

    return rows.repartition(partitions, "source", "user_id").mapInArrow(task, KERNEL_OUTPUT)


def sequence_rows(output: DataFrame, config: CorpusConfig, codebook_version: str) -> DataFrame:
    """Kernel targets -> corpus.training_sequences rows (tagged with the split protocol)."""
    targets = output.filter(F.col("kind") == "target").select(*[f.name for f in KERNEL_OUTPUT.fields if f.name in corpus.TRAINING_SEQUENCES.columns])
    return targets.transform(label_splits, config.split).select(
        *[
            F.lit(config.cells().name).alias(c)
            if c == "cell_system"
            else F.lit(codebook_version).alias(c)
            if c == "codebook_version"
            else F.lit(config.split.protocol).alias(c)
            if c == "protocol"
            else F.col(c)
            for c in corpus.TRAINING_SEQUENCES.columns
        ]
    )


def _source_events(lake: Lake, config: CorpusConfig, last: dt_.date) -> DataFrame:
    return lake.read(bronze.EVENTS).filter((F.col("source") == config.source) & (F.col("dt") <= F.lit(last)))


def _version_items(lake: Lake, codebook_version: str, cells: CellSystem) -> DataFrame:
    if not lake.exists(index.SID_MAP):
        raise NotFoundError("index.sid_map does not exist: assign SIDs under a codebook version first")
    return sid_items(lake.read(index.SID_MAP).filter(F.col("version") == codebook_version), cells)


def _finish(
    lake: Lake,
    outputs: list[DataFrame],
    config: CorpusConfig,
    codebook_version: str,
    report: CorpusReport,
    targets_span: tuple[dt_.date, dt_.date],
    state_days: tuple[dt_.date, ...],
) -> CorpusReport:
    """Write the kernel's outputs (one per pass over a slice of the users, each holding
    whole users, so per-user splits label correctly pass by pass) in one commit per table."""
    sequences = sequence_predicate(config, codebook_version)
    report.table_versions["corpus.training_sequences"] = lake.write(
        [sequence_rows(out, config, codebook_version) for out in outputs],
        corpus.TRAINING_SEQUENCES,
        dt=targets_span,
        where=sequences,
    )
    output = functools.reduce(DataFrame.unionByName, outputs)
    if not config.split.range_only:
        # The history state continues the time protocol's daily builds; the other protocols
        # are range builds only and leave it alone.
        write_state(lake, outputs, output, config, codebook_version, report, state_days)
    stats = (
        output.filter(F.col("kind") == "stats").agg(*[F.coalesce(F.sum(c), F.lit(0)).alias(c) for c in ("n_unlocated", "n_input", "n_new")]).first()
    )
    report.targets_without_location, report.input_events = int(stats["n_unlocated"]), int(stats["n_input"])
    # events_without_sid holds the events read until here: a range feeds all of them to the
    # kernel, a day its new ones (the rest is the state)
    report.events_without_sid -= int(stats["n_input"] if report.mode == "range" else stats["n_new"])
    written = lake.read(corpus.TRAINING_SEQUENCES, dt=targets_span).filter(sequences)
    report.splits = {r["split"]: int(r["n"]) for r in written.groupBy("split").agg(F.count(F.lit(1)).alias("n")).collect()}
    report.targets = sum(report.splits.values())
    return report


def _partitions(n_events: int, config: CorpusConfig) -> int:
    return max(2, math.ceil(n_events / config.events_per_partition))


def build_range(lake: Lake, codebook_version: str, first, last, config: CorpusConfig) -> CorpusReport:
    """From scratch: the sequences of [first, last] and the states as of its last days."""
    started = time.perf_counter()
    first, last = as_date(first), as_date(last)
    if first > last:
        raise InvalidRequestError(f"first {first} is after last {last}")
    report = CorpusReport(codebook_version, config.source, first, last, "range", config.split.protocol)
    cells = config.cells()
    run = f"corpus-{codebook_version}-{config.source}-{first}-{last}"
    events = _source_events(lake, config, last)
    filtering = config.split.protocol in ("libcity", "trajectory")
    before = events.count() if filtering else 0
    if config.split.protocol == "libcity":
        events = events.transform(libcity_sessions, config.split.libcity).drop("session", "position")
    items = _version_items(lake, codebook_version, cells)
    if not config.split.range_only and not state_layout_current(lake):
        # derived data in an older layout: the range rebuilds this scope's state; other
        # scopes are rebuilt by their own range builds (their daily runs say so)
        lake.drop(corpus.USER_HISTORY_STATE)
    try:
        if config.split.protocol == "trajectory":
            events, config = _trajectory_events(lake, events, config, run)
            report.split_days = {"valid_start": config.split.valid_start, "test_start": config.split.test_start}
        n_events = report.events_without_sid = events.count()
        report.events_filtered = before - n_events if filtering else 0
        state_days = () if config.split.range_only else checkpoint_days(config, last, first)
        # The kernel's input is read by the kernel job (no input checkpoint; its stats rows
        # count the events that had a SID), in passes over slices of the users: an engine
        # holds one slice's shuffle and output at a time, whatever the source's size.
        passes = max(1, math.ceil(n_events / config.events_per_pass))
        outputs = []
        for s in range(passes):
            part = events if passes == 1 else events.filter(F.pmod(F.hash("source", "user_id"), F.lit(passes)) == s)
            rows = kernel_events(part, items, cells, first)
            kernel_job = run_kernel(rows, config.kernel_params(state_days), cells, _partitions(n_events // passes, config))
            outputs.append(lake.checkpoint(kernel_job, f"{run}-out-{s}"))
        report.passes = passes
        _finish(lake, outputs, config, codebook_version, report, (first, last), state_days)
    finally:
        lake.drop_checkpoints(run)
    report.seconds = time.perf_counter() - started
    return report


def _trajectory_events(lake: Lake, events: DataFrame, config: CorpusConfig, run: str) -> tuple[DataFrame, CorpusConfig]:
    """The trajectory protocol's events (filtered, targets marked) and the config whose
    split carries the global day bounds (those given, else the filtered data's)."""
    split = config.split
    kept = lake.checkpoint(events.transform(trajectory_filter, split.trajectory), f"{run}-trajectory")
    if not (split.valid_start and split.test_start):
        first_day, last_day = kept.agg(F.min("dt"), F.max("dt")).first()
        if first_day is None:
            raise InvalidRequestError(f"no check-ins of {config.source} survive the trajectory filters ({split.trajectory})")
        valid_start, test_start = trajectory_bounds(first_day, last_day, split.fractions)
        split = split.model_copy(update={"valid_start": valid_start, "test_start": test_start})
    marked = kept.transform(trajectory_targets, split.trajectory, split.valid_start, split.test_start)
    return marked.drop("trajectory", "position"), config.model_copy(update={"split": split})


def build_day(lake: Lake, codebook_version: str, day, config: CorpusConfig) -> CorpusReport:
    """Incremental: the day's sequences from the state as of the day before plus the
    day's events; writes the state as of the day."""
    started = time.perf_counter()
    day = as_date(day)
    if config.split.range_only:
        raise InvalidRequestError(
            f"split protocol {config.split.protocol!r} labels a target by the user's whole range; "
            "build the range (build_range / `geosid corpus build --from --to`) instead of one day"
        )
    report = CorpusReport(codebook_version, config.source, day, day, "day")
    cells = config.cells()
    scope = corpus_predicate(config, codebook_version)
    yesterday = day - dt_.timedelta(days=1)
    rebuild = f"run the day before, or rebuild with `geosid corpus build --to {day}`"
    if not state_layout_current(lake):
        raise MissingStateError(f"corpus.user_history_state was written by an older geosid (another layout): {rebuild}")
    complete = (
        lake.exists(corpus.STATE_BUILDS) and lake.read(corpus.STATE_BUILDS).filter(scope).filter(F.col("dt") == F.lit(yesterday)).limit(1).count()
    )
    if not complete:
        earlier = lake.read(bronze.EVENTS).filter((F.col("source") == config.source) & (F.col("dt") < F.lit(day)))
        if earlier.limit(1).count():
            raise MissingStateError(
                f"no history state of {config.source} under {codebook_version} as of {yesterday}, but earlier events exist: {rebuild}"
            )
    run = f"corpus-{codebook_version}-{config.source}-{day}"
    day_events = lake.read(bronze.EVENTS, dt=day).filter(F.col("source") == config.source)
    rows = kernel_events(day_events, _version_items(lake, codebook_version, cells), cells, day)
    # The kernel's input is read once, by the kernel job; it is sized from the day's events
    # and the touched users' states at their largest (the kernel's stats rows count it).
    report.events_without_sid = day_events.count()  # _finish takes the new events with a SID off
    estimate = report.events_without_sid
    if complete:  # the states of the users the day touched (the others' rows stay as they are)
        touched = day_events.select("source", "user_id").distinct()
        state = lake.read(corpus.USER_HISTORY_STATE).filter(scope).join(touched, ["source", "user_id"], "left_semi")
        rows = rows.unionByName(state_events(latest_states(state, yesterday)))
        estimate += touched.count() * sum(b.max_len for b in config.behaviors)
    try:
        output = lake.checkpoint(run_kernel(rows, config.kernel_params((day,)), cells, _partitions(estimate, config)), f"{run}-out")
        _finish(lake, [output], config, codebook_version, report, (day, day), (day,))
    finally:
        lake.drop_checkpoints(run)
    report.seconds = time.perf_counter() - started
    return report


def corpus_scan(lake: Lake, source: str) -> tuple[dt_.date, dt_.date] | None:
    """First and last day of a source's bronze events."""
    row = lake.read(bronze.EVENTS).filter(F.col("source") == source).agg(F.min("dt"), F.max("dt")).first()
    return (row[0], row[1]) if row and row[0] else None
