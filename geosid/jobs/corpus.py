"""Training corpus: bronze events + SIDs + geo -> corpus.training_sequences, its history
state, and corpus.cell_context.

Two ways to build, one kernel (`geosid.jobs.sequences_kernel`):

- `build_range` (from scratch, what a backfill runs): every past event of the source
  feeds the kernel; targets are the events of [first, last]; the history state is
  written as of the range's checkpoint days (`checkpoint_days`: every day of the last
  `checkpoint_days`, and the Sundays of the `checkpoint_weeks` weeks before).
- `build_day` (incremental, what the daily run does): the state as of the day before
  of the users the day touched, plus the day's events, feed the kernel; it writes the
  day's sequences and new state rows for those users only (the state table holds a row
  per user and day of change, laid out by user hash), then compacts the few user
  buckets whose turn it is (calendar-driven, keeping the checkpoints). Past days are
  never re-read; a day costs its own events and touched users, not the history's length.

The checkpoints are what a repair continues from: after a late or corrected input day,
`rollback_state` takes the state back to the nearest checkpoint before it and the days
after are rebuilt one by one (`build_day`), not from the source's first day.

Both give the same rows (tested), so a backfill and a year of daily runs agree.
"""

from __future__ import annotations

import datetime as dt_
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from geosid.errors import InvalidRequestError, MissingStateError, NotFoundError
from geosid.geo.geometry import CellConfig, CellSystem
from geosid.geo.sql import add_cells
from geosid.jobs import sequences_kernel as kernel
from geosid.lake import Lake, as_date
from geosid.schemas import bronze, corpus, index, silver
from geosid.schemas.corpus import protocol_predicate
from geosid.sources.registry import BehaviorConfig, CorpusShape, get_source

# ---------------------------------------------------------------------------------------
# Configuration


class LibCityConfig(BaseModel):
    """LibCity's trajectory pre-processing of check-ins (the OneLoc paper's protocol for
    Foursquare): POIs with fewer than `min_poi_checkins` check-ins are dropped; a user's
    check-ins are cut into sessions at gaps longer than `session_gap_hours` or every
    `max_session_len` check-ins; sessions shorter than `min_session_len` are dropped, then
    users with fewer than `min_sessions` sessions. Every check-in after the first of a
    non-first session is a target; its history is the earlier sessions plus the session
    so far (what is dropped is in no history)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_poi_checkins: int = Field(default=3, ge=1)
    session_gap_hours: float = Field(default=12.0, gt=0)
    max_session_len: int = Field(default=50, ge=2)
    min_session_len: int = Field(default=5, ge=1)
    min_sessions: int = Field(default=2, ge=1)


class SplitConfig(BaseModel):
    """How targets are labelled train / valid / test.

    time (OneLoc): by day: dt >= test_start is test, dt >= valid_start valid, the rest
    train; with no test_start every row is train. A function of dt alone, so daily runs
    and rebuilds agree.
    user_chrono (public next-POI benchmarks): per user, the chronologically first 80% of
    the user's targets in the built range are train, the next 10% valid, the rest test
    (floor of 0.8n and 0.9n; a user with one target is test). Needs the whole range, so
    only range builds use it.
    libcity (the OneLoc paper on Foursquare): the events and targets of LibCity's
    pre-processing (`LibCityConfig`), split per user 80/10/10 like user_chrono.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    protocol: Literal["time", "user_chrono", "libcity"] = "time"
    valid_start: dt_.date | None = None
    test_start: dt_.date | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    libcity: LibCityConfig = LibCityConfig()

    @property
    def per_user(self) -> bool:
        """Labels that depend on the user's whole range (range builds only)."""
        return self.protocol in ("user_chrono", "libcity")

    @model_validator(mode="after")
    def _consistent(self) -> SplitConfig:
        if abs(sum(self.fractions) - 1.0) > 1e-9 or min(self.fractions) < 0:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {self.fractions}")
        if self.valid_start and self.test_start and self.valid_start > self.test_start:
            raise ValueError("valid_start must not be after test_start")
        if self.valid_start and not self.test_start:
            raise ValueError("valid_start needs a test_start")
        return self

    @classmethod
    def for_range(cls, protocol: str, last: dt_.date, test_start=None, valid_start=None, test_days: int | None = None,
                  valid_days: int | None = None) -> SplitConfig:  # fmt: skip
        """A split for a range ending on `last`: the time split's boundaries given as days,
        or as the range's last `test_days` (test) and the `valid_days` before them (valid)."""
        if protocol != "time":
            return cls(protocol=protocol)
        if test_days and not test_start:
            test_start = last - dt_.timedelta(days=test_days - 1)
        if valid_days and test_start and not valid_start:
            valid_start = as_date(test_start) - dt_.timedelta(days=valid_days)
        return cls(protocol="time", test_start=test_start or None, valid_start=valid_start or None)


class CorpusConfig(BaseModel):
    """What a source's training rows look like (its registry shape, overridable) and how
    they are cut: cells, split, state retention."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str
    target_actions: tuple[str, ...]
    behaviors: tuple[BehaviorConfig, ...]
    location: Literal["request", "previous_event"]
    cell_config: CellConfig = CellConfig()
    split: SplitConfig = SplitConfig()
    checkpoint_days: int = Field(default=35, ge=1, description="the state as of each of the last this many days is kept")
    checkpoint_weeks: int = Field(default=8, ge=0, description="... and as of each Sunday of this many weeks before them")
    state_buckets: int = Field(default=16, ge=1, le=4096, description="user-hash buckets of the history state")
    state_compact_days: int = Field(default=7, ge=1, description="a state bucket is compacted every this many days")
    events_per_partition: int = Field(default=400_000, ge=1_000, description="kernel memory per task")
    events_per_pass: int = Field(
        default=1_000_000, ge=1, description="a range build runs the kernel in passes over user-hash slices of about this many events"
    )

    @model_validator(mode="after")
    def _valid(self) -> CorpusConfig:
        CorpusShape(target_actions=self.target_actions, behaviors=self.behaviors, location=self.location)
        return self

    @classmethod
    def for_source(cls, source: str, **overrides) -> CorpusConfig:
        """The source's corpus shape from the registry (`geosid.sources.registry`), with
        `overrides` on top."""
        shape = get_source(source).corpus
        return cls.model_validate({"source": source, **shape.model_dump(), **overrides})

    def cells(self) -> CellSystem:
        return self.cell_config.cells()

    def kernel_params(self, state_days: tuple[dt_.date, ...]) -> kernel.KernelParams:
        return kernel.KernelParams(
            behaviors=tuple(kernel.KernelBehavior(b.name, tuple(b.actions), b.max_len) for b in self.behaviors),
            target_actions=tuple(self.target_actions),
            location=self.location,
            state_days=state_days,
            state_buckets=self.state_buckets,
        )


# ---------------------------------------------------------------------------------------
# Pure transforms


def sid_items(sid_map: DataFrame, cells: CellSystem) -> DataFrame:
    """index.sid_map rows of one version -> (source, item_id, codes, digit, sid, item cell)."""
    return add_cells(sid_map, cells, "lat", "lon", cell="item_cell").select(
        "source", "item_id", "codes", "disambiguation", "sid", "item_cell"
    )


def kernel_events(events: DataFrame, items: DataFrame, cells: CellSystem, first: dt_.date) -> DataFrame:
    """bronze.events + SID items -> kernel input rows; events of days >= first are new.

    Events whose item has no SID under the version are left out (they cannot be
    written as tokens); `run` reports how many.
    """
    with_cells = add_cells(events, cells, "user_lat", "user_lon", cell="user_cell")
    if "is_target" not in events.columns:
        with_cells = with_cells.withColumn("is_target", F.lit(True))
    return with_cells.join(items, ["source", "item_id"]).select(
        "source", "user_id", "event_id", "request_id", "event_ts", "dt", "action", "item_id", "codes",
        "disambiguation", "sid", "item_cell", "user_cell", "gmv", (F.col("dt") >= F.lit(first)).alias("is_new"),
        "is_target",
    )  # fmt: skip


def state_events(state: DataFrame) -> DataFrame:
    """corpus.user_history_state rows -> kernel input rows (never targets)."""
    exploded = state.select("source", "user_id", F.explode("histories").alias("h")).select(
        "source", "user_id", F.explode("h.events").alias("e")
    )
    return exploded.select(
        "source",
        "user_id",
        F.col("e.event_id").alias("event_id"),
        F.lit(None).cast("string").alias("request_id"),
        F.col("e.event_ts").alias("event_ts"),
        F.to_date("e.event_ts").alias("dt"),
        F.col("e.action").alias("action"),
        F.col("e.item_id").alias("item_id"),
        F.col("e.codes").alias("codes"),
        F.lit(None).cast("int").alias("disambiguation"),
        F.lit(None).cast("string").alias("sid"),
        F.col("e.cell_id").alias("item_cell"),
        F.col("e.user_cell_id").alias("user_cell"),
        F.lit(None).cast("double").alias("gmv"),
        F.lit(False).alias("is_new"),
        F.lit(False).alias("is_target"),
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
    from pyspark.sql.pandas.types import to_arrow_schema

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
            state = result.states.rename_columns(
                ["state_histories" if c == "histories" else c for c in result.states.column_names]
            )
            parts.append(shaped(state, "state"))
        stats = {"n_unlocated": [result.targets_without_location], "n_input": [table.num_rows], "n_new": [n_new]}
        parts.append(shaped(pa.table({k: pa.array(v, pa.int64()) for k, v in stats.items()}), "stats"))
        for part in parts:
            yield from part.to_batches(max_chunksize=8192)

    return rows.repartition(partitions, "source", "user_id").mapInArrow(task, KERNEL_OUTPUT)


def libcity_sessions(events: DataFrame, config: LibCityConfig) -> DataFrame:
    """Check-ins -> the check-ins LibCity keeps, with `session` (per user, from 0),
    `position` (within the session, from 0) and `is_target` (see LibCityConfig)."""
    poi = Window.partitionBy("source", "item_id")
    kept = events.withColumn("_poi_n", F.count(F.lit(1)).over(poi)).filter(F.col("_poi_n") >= config.min_poi_checkins)
    timeline = Window.partitionBy("source", "user_id").orderBy("event_ts", "event_id")
    # (the seconds are a column first: Sail 0.7 cannot lag over an expression)
    kept = kept.withColumn("_s", F.unix_seconds("event_ts"))
    kept = kept.withColumn("_gap", F.col("_s") - F.lag("_s").over(timeline))
    new_run = F.coalesce(F.col("_gap") > F.lit(int(config.session_gap_hours * 3600)), F.lit(True)).cast("int")
    runs = kept.withColumn("_new", new_run).withColumn("_run", F.sum("_new").over(timeline.rowsBetween(Window.unboundedPreceding, 0)))
    in_run = Window.partitionBy("source", "user_id", "_run").orderBy("event_ts", "event_id")
    # a run longer than max_session_len is cut every max_session_len check-ins
    chunks = runs.withColumn("_chunk", F.floor((F.row_number().over(in_run) - 1) / config.max_session_len))
    session = Window.partitionBy("source", "user_id", "_run", "_chunk")
    sized = chunks.withColumn("_len", F.count(F.lit(1)).over(session)).filter(F.col("_len") >= config.min_session_len)
    user = Window.partitionBy("source", "user_id")
    numbered = sized.withColumn("session", F.dense_rank().over(user.orderBy("_run", "_chunk")) - 1)
    numbered = numbered.withColumn("_sessions", F.max("session").over(user) + 1).filter(F.col("_sessions") >= config.min_sessions)
    numbered = numbered.withColumn(
        "position", F.row_number().over(Window.partitionBy("source", "user_id", "session").orderBy("event_ts", "event_id")) - 1
    )
    return numbered.withColumn("is_target", (F.col("session") > 0) & (F.col("position") > 0)).drop(
        "_poi_n", "_s", "_gap", "_new", "_run", "_chunk", "_len", "_sessions"
    )


def label_splits(targets: DataFrame, split: SplitConfig) -> DataFrame:
    """Add `split` by the configured protocol (see SplitConfig)."""
    if split.protocol == "time":
        label = F.lit("train")
        if split.valid_start:
            label = F.when(F.col("dt") >= F.lit(split.valid_start), "valid").otherwise(label)
        if split.test_start:
            label = F.when(F.col("dt") >= F.lit(split.test_start), "test").otherwise(label)
        return targets.withColumn("split", label)
    user = Window.partitionBy("source", "user_id")  # user_chrono and libcity: per user, in time order
    rank = F.row_number().over(user.orderBy("target_ts", "event_id")) - 1
    n = F.count(F.lit(1)).over(user)
    train_end = F.floor(n * split.fractions[0])
    valid_end = F.floor(n * (split.fractions[0] + split.fractions[1]))
    return (
        targets.withColumn("_rank", rank)
        .withColumn("_n", n)
        .withColumn(
            "split",
            F.when(F.col("_rank") < train_end, "train").when(F.col("_rank") < valid_end, "valid").otherwise("test"),
        )
        .drop("_rank", "_n")
    )


def sequence_rows(output: DataFrame, config: CorpusConfig, codebook_version: str) -> DataFrame:
    """Kernel targets -> corpus.training_sequences rows (tagged with the split protocol)."""
    targets = output.filter(F.col("kind") == "target").select(
        *[f.name for f in KERNEL_OUTPUT.fields if f.name in corpus.TRAINING_SEQUENCES.columns]
    )
    return targets.transform(label_splits, config.split).select(
        *[
            F.lit(config.cells().name).alias(c) if c == "cell_system"
            else F.lit(codebook_version).alias(c) if c == "codebook_version"
            else F.lit(config.split.protocol).alias(c) if c == "protocol"
            else F.col(c)
            for c in corpus.TRAINING_SEQUENCES.columns
        ]
    )  # fmt: skip


def state_rows(output: DataFrame, codebook_version: str) -> DataFrame:
    """Kernel states -> corpus.user_history_state rows."""
    return output.filter(F.col("kind") == "state").select(
        "source", "user_id", "last_event_ts", "last_cell_id", F.col("state_histories").alias("histories"),
        F.lit(codebook_version).alias("codebook_version"), "dt", "user_bucket",
    )  # fmt: skip


def latest_states(state: DataFrame, day: dt_.date) -> DataFrame:
    """corpus.user_history_state rows -> each user's state as of the end of `day` (the
    user's row with the latest dt <= day)."""
    upto = state.filter(F.col("dt") <= F.lit(day))
    latest = upto.groupBy("codebook_version", "source", "user_id").agg(F.max("dt").alias("dt"))
    return upto.join(latest, ["codebook_version", "source", "user_id", "dt"], "left_semi")


def checkpoint_window(as_of: dt_.date, days: int, weeks: int) -> tuple[dt_.date, dt_.date]:
    """(first day of the daily window, first day of the weekly checkpoints before it) as of
    `as_of`: the state is kept as of every day from the first, and as of every Sunday from
    the second until the first."""
    window_first = as_of - dt_.timedelta(days=days - 1)
    return window_first, window_first - dt_.timedelta(weeks=weeks)


def checkpoint_days(config: CorpusConfig, as_of: dt_.date, first: dt_.date | None = None) -> tuple[dt_.date, ...]:
    """The days, up to `as_of` (and from `first`), as of which the state is kept."""
    window_first, weekly_first = checkpoint_window(as_of, config.checkpoint_days, config.checkpoint_weeks)
    days = [weekly_first + dt_.timedelta(days=k) for k in range((as_of - weekly_first).days + 1)]
    kept = [d for d in days if d >= window_first or d.isoweekday() == 7]
    return tuple(d for d in kept if first is None or d >= first)


def compacted_states(state: DataFrame, as_of: dt_.date, config: CorpusConfig) -> DataFrame:
    """State rows -> the rows still needed to answer "as of day W" for every checkpoint day
    W as of `as_of` (and every later day): a user's row of day a, followed by the user's
    next row of day b (none: the latest), answers every W in [a, b), so it stays when a
    checkpoint day falls in [a, b)."""
    window_first, weekly_first = checkpoint_window(as_of, config.checkpoint_days, config.checkpoint_weeks)
    following = Window.partitionBy("codebook_version", "source", "user_id").orderBy("dt")
    start = F.greatest(F.col("dt"), F.lit(weekly_first))
    sunday = F.date_add(start, (F.lit(8) - F.dayofweek(start)) % 7)  # the first Sunday on or after start
    needed = (
        (F.col("dt") >= F.lit(window_first))
        | F.col("_next").isNull()
        | (F.col("_next") > F.lit(window_first))
        | ((sunday < F.col("_next")) & (sunday < F.lit(window_first)))
    )
    return state.withColumn("_next", F.lead("dt").over(following)).filter(needed).drop("_next")


def cell_features(geo_cells: DataFrame) -> DataFrame:
    """silver.geo_cells -> the features vector in CELL_FEATURES order."""
    log = lambda c: F.log1p(F.greatest(F.coalesce(F.col(c).cast("double"), F.lit(0.0)), F.lit(0.0)))
    values = [
        log("n_items"), log("n_categories"), log("events_day"), log("events_window"), log("users_window"),
        log("pays_window"), log("gmv_window"), log("price_median"), F.col("price_median").isNotNull().cast("double"),
        log("area_n_items"), log("area_events_window"),
    ]  # fmt: skip
    assert len(values) == len(corpus.CELL_FEATURES), "features and CELL_FEATURES disagree"
    return geo_cells.withColumn("features", F.array(*[v.cast("float") for v in values]))


def cell_context_rows(geo_cells: DataFrame, day_to_snapshot: DataFrame) -> DataFrame:
    """silver.geo_cells snapshots + (dt, context_dt) pairs -> corpus.cell_context rows."""
    snapshots = geo_cells.withColumnRenamed("dt", "context_dt").transform(cell_features)
    return snapshots.join(day_to_snapshot, "context_dt").select(
        "cell_system", "cell_id", "context_dt", "neighbour_ids", F.col("n_items").cast("int").alias("n_items"),
        "top_categories", "top_brands", "area_top_categories", "features", "dt",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# run


@dataclass
class CorpusReport:
    codebook_version: str
    source: str
    first: dt_.date
    last: dt_.date
    mode: str  # "range" | "day"
    input_events: int = 0
    events_without_sid: int = 0
    targets: int = 0
    targets_without_location: int = 0
    states: int = 0  # users with a state as of `last`
    states_written: int = 0  # state rows this build wrote (a day: the users it touched)
    compacted_buckets: list = field(default_factory=list)
    passes: int = 1  # kernel passes over user slices (a range build of a large source)
    splits: dict = field(default_factory=dict)
    table_versions: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        span = f"{self.first}" if self.first == self.last else f"{self.first}..{self.last}"
        splits = ", ".join(f"{k} {v:,}" for k, v in sorted(self.splits.items()))
        return (
            f"sequences {self.source} {span} under {self.codebook_version} ({self.mode}): {self.targets:,} targets "
            f"[{splits}] from {self.input_events:,} events, {self.states:,} user states ({self.states_written:,} written); "
            f"left out: {self.events_without_sid:,} events without SID, {self.targets_without_location:,} "
            f"targets without a prior location; {self.seconds:.1f}s"
        )

    def to_dict(self) -> dict:
        return {
            "codebook_version": self.codebook_version, "source": self.source, "first": self.first.isoformat(),
            "last": self.last.isoformat(), "mode": self.mode, "input_events": self.input_events,
            "events_without_sid": self.events_without_sid, "targets": self.targets,
            "targets_without_location": self.targets_without_location, "states": self.states,
            "states_written": self.states_written, "compacted_buckets": list(self.compacted_buckets), "passes": self.passes,
            "splits": self.splits, "table_versions": self.table_versions, "seconds": round(self.seconds, 2),
        }  # fmt: skip


def _scope(config: CorpusConfig, codebook_version: str) -> str:
    return f"codebook_version = '{codebook_version}' AND source = '{config.source}'"


def _sequence_scope(config: CorpusConfig, codebook_version: str) -> str:
    return f"{_scope(config, codebook_version)} AND {protocol_predicate(config.split.protocol)}"


def _source_events(lake: Lake, config: CorpusConfig, last: dt_.date) -> DataFrame:
    return lake.read(bronze.EVENTS).filter((F.col("source") == config.source) & (F.col("dt") <= F.lit(last)))


def _version_items(lake: Lake, codebook_version: str, cells: CellSystem) -> DataFrame:
    if not lake.exists(index.SID_MAP):
        raise NotFoundError("index.sid_map does not exist: assign SIDs under a codebook version first")
    return sid_items(lake.read(index.SID_MAP).filter(F.col("version") == codebook_version), cells)


def _finish(lake: Lake, outputs: list[DataFrame], config: CorpusConfig, codebook_version: str, report: CorpusReport,
            targets_span: tuple[dt_.date, dt_.date], state_days: tuple[dt_.date, ...]) -> CorpusReport:  # fmt: skip
    """Write the kernel's outputs (one per pass over a slice of the users, each holding
    whole users, so per-user splits label correctly pass by pass) in one commit per table."""
    sequences = _sequence_scope(config, codebook_version)
    report.table_versions["corpus.training_sequences"] = lake.write(
        [sequence_rows(out, config, codebook_version) for out in outputs], corpus.TRAINING_SEQUENCES, dt=targets_span,
        where=sequences,
    )  # fmt: skip
    output = functools.reduce(DataFrame.unionByName, outputs)
    if not config.split.per_user:
        # The history state continues the time protocol's daily builds; per-user protocols
        # are range builds only and leave it alone.
        _write_state(lake, outputs, output, config, codebook_version, report, state_days)
    stats = output.filter(F.col("kind") == "stats").agg(
        *[F.coalesce(F.sum(c), F.lit(0)).alias(c) for c in ("n_unlocated", "n_input", "n_new")]
    ).first()
    report.targets_without_location, report.input_events = int(stats["n_unlocated"]), int(stats["n_input"])
    # events_without_sid holds the events read until here: a range feeds all of them to the
    # kernel, a day its new ones (the rest is the state)
    report.events_without_sid -= int(stats["n_input"] if report.mode == "range" else stats["n_new"])
    written = lake.read(corpus.TRAINING_SEQUENCES, dt=targets_span).filter(sequences)
    report.splits = {r["split"]: int(r["n"]) for r in written.groupBy("split").agg(F.count(F.lit(1)).alias("n")).collect()}
    report.targets = sum(report.splits.values())
    return report


def _write_state(lake: Lake, outputs: list[DataFrame], output: DataFrame, config: CorpusConfig, codebook_version: str,
                 report: CorpusReport, state_days: tuple[dt_.date, ...]) -> None:  # fmt: skip
    """The kernel's state rows (`outputs`, one per pass; `output`, their union) into
    corpus.user_history_state (a range replaces the scope's rows, a day adds its day's
    rows), the state days into corpus.state_builds, then (a day) the buckets whose turn it
    is are compacted."""
    scope = _scope(config, codebook_version)
    last = max(state_days)
    replaced = scope if report.mode == "range" else f"{scope} AND dt = DATE'{last.isoformat()}'"
    # one file per bucket and write: the next day adds one more, compaction folds them
    report.table_versions[corpus.USER_HISTORY_STATE.name] = lake.write(
        [state_rows(out, codebook_version).repartition("user_bucket") for out in outputs], corpus.USER_HISTORY_STATE,
        where=replaced,
    )  # fmt: skip
    written = dict(output.filter(F.col("kind") == "state").groupBy("dt").agg(F.count(F.lit(1)).alias("n")).collect())
    report.states_written = sum(int(n) for n in written.values())
    now = dt_.datetime.now(dt_.timezone.utc).replace(tzinfo=None)
    log = [(codebook_version, config.source, day, report.mode, int(written.get(day, 0)), now) for day in state_days]
    spark = output.sparkSession
    report.table_versions[corpus.STATE_BUILDS.name] = lake.write(
        spark.createDataFrame(log, corpus.STATE_BUILDS.schema), corpus.STATE_BUILDS, where=replaced
    )
    if report.mode == "day":
        _compact_state(lake, config, codebook_version, report, last)
    report.states = (
        lake.read(corpus.USER_HISTORY_STATE).filter(scope).filter(F.col("dt") <= F.lit(last)).select("user_id").distinct().count()
    )


def _compact_state(lake: Lake, config: CorpusConfig, codebook_version: str, report: CorpusReport, day: dt_.date) -> None:
    """On `day`, the state keeps its checkpoints as of the day (`checkpoint_days`): build
    days that are no longer checkpoints leave corpus.state_builds first (so a kill never
    leaves a listed day without its rows), then the user buckets whose turn it is (bucket
    b every `state_compact_days` days, staggered, so each day rewrites about the same
    share) drop the rows no checkpoint needs. A function of the calendar and the rows, not
    of the files: the same days give the same table, whatever runs and re-runs led there."""
    scope = _scope(config, codebook_version)
    kept_days = set(checkpoint_days(config, day))
    listed = [r["dt"] for r in lake.read(corpus.STATE_BUILDS).filter(scope).select("dt").collect()]
    dropped = [d for d in listed if d < day and d not in kept_days]
    if dropped:
        report.table_versions[corpus.STATE_BUILDS.name] = lake.delete(corpus.STATE_BUILDS, f"{scope} AND {_days_sql(dropped)}")
    every = config.state_compact_days
    due = [b for b in range(config.state_buckets) if (day.toordinal() - b) % every == 0]
    if not due:
        return
    where = f"{scope} AND user_bucket IN ({', '.join(str(b) for b in due)})"
    rows = lake.read(corpus.USER_HISTORY_STATE).filter(where)
    kept = compacted_states(rows, day, config)
    if kept.count() == rows.count():
        return  # nothing to drop: no rewrite
    report.table_versions[corpus.USER_HISTORY_STATE.name] = lake.write(
        kept.repartition("user_bucket"), corpus.USER_HISTORY_STATE, where=where
    )
    report.compacted_buckets = due


def _days_sql(days) -> str:
    return "dt IN (" + ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(days)) + ")"


def rollback_state(lake: Lake, config: CorpusConfig, codebook_version: str, before: dt_.date) -> dt_.date | None:
    """Take the history state of a scope back to its nearest checkpoint before `before`
    (state rows and build days after it go); returns that checkpoint, or None when there is
    none (the scope must then be rebuilt from its first day)."""
    scope = _scope(config, codebook_version)
    if not lake.exists(corpus.STATE_BUILDS):
        return None
    listed = [r["dt"] for r in lake.read(corpus.STATE_BUILDS).filter(scope).filter(F.col("dt") < F.lit(before)).select("dt").collect()]
    if not listed:
        return None
    checkpoint = max(listed)
    after = f"{scope} AND dt > DATE'{checkpoint.isoformat()}'"
    lake.delete(corpus.STATE_BUILDS, after)  # first: no listed day without its rows
    lake.delete(corpus.USER_HISTORY_STATE, after)
    return checkpoint


def _state_layout_current(lake: Lake) -> bool:
    """Whether the state table (if any) has the registered layout (an older geosid wrote
    one partitioned by day)."""
    return not lake.exists(corpus.USER_HISTORY_STATE) or lake.partition_columns(corpus.USER_HISTORY_STATE) == corpus.USER_HISTORY_STATE.partition_by


def _partitions(n_events: int, config: CorpusConfig) -> int:
    return max(2, math.ceil(n_events / config.events_per_partition))


def build_range(lake: Lake, codebook_version: str, first, last, config: CorpusConfig) -> CorpusReport:
    """From scratch: the sequences of [first, last] and the states as of its last days."""
    started = time.perf_counter()
    first, last = as_date(first), as_date(last)
    if first > last:
        raise InvalidRequestError(f"first {first} is after last {last}")
    report = CorpusReport(codebook_version, config.source, first, last, "range")
    cells = config.cells()
    run = f"corpus-{codebook_version}-{config.source}-{first}-{last}"
    events = _source_events(lake, config, last)
    if config.split.protocol == "libcity":
        events = events.transform(libcity_sessions, config.split.libcity).drop("session", "position")
    items = _version_items(lake, codebook_version, cells)
    if not config.split.per_user and not _state_layout_current(lake):
        # derived data in an older layout: the range rebuilds this scope's state; other
        # scopes are rebuilt by their own range builds (their daily runs say so)
        lake.drop(corpus.USER_HISTORY_STATE)
    try:
        n_events = report.events_without_sid = events.count()
        state_days = () if config.split.per_user else checkpoint_days(config, last, first)
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


def build_day(lake: Lake, codebook_version: str, day, config: CorpusConfig) -> CorpusReport:
    """Incremental: the day's sequences from the state as of the day before plus the
    day's events; writes the state as of the day."""
    started = time.perf_counter()
    day = as_date(day)
    if config.split.per_user:
        raise InvalidRequestError(
            f"split protocol {config.split.protocol!r} labels a target by the user's whole range; "
            "build the range (build_range / `geosid corpus build --from --to`) instead of one day"
        )
    report = CorpusReport(codebook_version, config.source, day, day, "day")
    cells = config.cells()
    scope = _scope(config, codebook_version)
    yesterday = day - dt_.timedelta(days=1)
    rebuild = f"run the day before, or rebuild with `geosid corpus build --to {day}`"
    if not _state_layout_current(lake):
        raise MissingStateError(f"corpus.user_history_state was written by an older geosid (another layout): {rebuild}")
    complete = lake.exists(corpus.STATE_BUILDS) and lake.read(corpus.STATE_BUILDS).filter(scope).filter(
        F.col("dt") == F.lit(yesterday)
    ).limit(1).count()  # fmt: skip
    if not complete:
        earlier = lake.read(bronze.EVENTS).filter((F.col("source") == config.source) & (F.col("dt") < F.lit(day)))
        if earlier.limit(1).count():
            raise MissingStateError(f"no history state of {config.source} under {codebook_version} as of {yesterday}, but earlier events exist: {rebuild}")
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
        output = lake.checkpoint(
            run_kernel(rows, config.kernel_params((day,)), cells, _partitions(estimate, config)), f"{run}-out"
        )
        _finish(lake, [output], config, codebook_version, report, (day, day), (day,))
    finally:
        lake.drop_checkpoints(run)
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class CellContextReport:
    first: dt_.date
    last: dt_.date
    rows: int
    days_without_context: list
    table_version: int
    seconds: float

    def summary(self) -> str:
        missing = f"; {len(self.days_without_context)} day(s) with no earlier geo snapshot" if self.days_without_context else ""
        return f"cell context {self.first}..{self.last}: {self.rows:,} rows{missing} in {self.seconds:.1f}s"


def build_cell_context(lake: Lake, first, last, cells: CellSystem) -> CellContextReport:
    """corpus.cell_context for [first, last]: each day takes the latest silver.geo_cells
    snapshot strictly before it."""
    started = time.perf_counter()
    first, last = as_date(first), as_date(last)
    geo = lake.read(silver.GEO_CELLS).filter((F.col("cell_system") == cells.name) & (F.col("dt") < F.lit(last)))
    snapshots = sorted(r["dt"] for r in geo.select("dt").distinct().collect())
    pairs, missing = [], []
    day = first
    while day <= last:
        earlier = [s for s in snapshots if s < day]
        if earlier:
            pairs.append((day, earlier[-1]))
        else:
            missing.append(day)
        day += dt_.timedelta(days=1)
    if pairs:
        rows = cell_context_rows(geo, lake.spark.createDataFrame(pairs, "dt date, context_dt date"))
    else:  # still replace the days: a re-run after a snapshot was removed must not keep stale rows
        rows = lake.spark.createDataFrame([], corpus.CELL_CONTEXT.schema)
    where = f"cell_system = '{cells.name}'"
    table_version = lake.write(rows, corpus.CELL_CONTEXT, dt=(first, last), where=where)
    n = lake.read(corpus.CELL_CONTEXT, dt=(first, last)).filter(where).count()
    return CellContextReport(first, last, n, missing, table_version, time.perf_counter() - started)


def corpus_scan(lake: Lake, source: str) -> tuple[dt_.date, dt_.date] | None:
    """First and last day of a source's bronze events."""
    row = lake.read(bronze.EVENTS).filter(F.col("source") == source).agg(F.min("dt"), F.max("dt")).first()
    return (row[0], row[1]) if row and row[0] else None


__all__ = [
    "BehaviorConfig", "CellContextReport", "CorpusConfig", "CorpusReport", "MissingStateError", "SplitConfig",
    "build_cell_context", "build_day", "build_range", "cell_context_rows", "corpus_scan", "kernel_events",
    "label_splits", "sequence_rows", "state_events", "state_rows",
]  # fmt: skip
