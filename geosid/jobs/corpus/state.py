"""The history state of the corpus: the rows the kernel carries from day to day, the
checkpoint calendar (every day of the last `checkpoint_days`, the Sundays of the
`checkpoint_weeks` weeks before), compaction driven by it, and the roll-back a repair
continues from.
"""

from __future__ import annotations

import datetime as dt_

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from geosid.jobs.corpus.config import CorpusConfig, corpus_predicate
from geosid.jobs.corpus.report import CorpusReport
from geosid.lake import Lake
from geosid.schemas import corpus


def state_events(state: DataFrame) -> DataFrame:
    """corpus.user_history_state rows -> kernel input rows (never targets)."""
    exploded = state.select("source", "user_id", F.explode("histories").alias("h")).select("source", "user_id", F.explode("h.events").alias("e"))
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


def state_rows(output: DataFrame, codebook_version: str) -> DataFrame:
    """Kernel states -> corpus.user_history_state rows."""
    return output.filter(F.col("kind") == "state").select(
        "source",
        "user_id",
        "last_event_ts",
        "last_cell_id",
        F.col("state_histories").alias("histories"),
        F.lit(codebook_version).alias("codebook_version"),
        "dt",
        "user_bucket",
    )


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


def write_state(
    lake: Lake,
    outputs: list[DataFrame],
    output: DataFrame,
    config: CorpusConfig,
    codebook_version: str,
    report: CorpusReport,
    state_days: tuple[dt_.date, ...],
) -> None:
    """The kernel's state rows (`outputs`, one per pass; `output`, their union) into
    corpus.user_history_state (a range replaces the scope's rows, a day adds its day's
    rows), the state days into corpus.state_builds, then (a day) the buckets whose turn it
    is are compacted."""
    scope = corpus_predicate(config, codebook_version)
    last = max(state_days)
    replaced = scope if report.mode == "range" else f"{scope} AND dt = DATE'{last.isoformat()}'"
    # one file per bucket and write: the next day adds one more, compaction folds them
    report.table_versions[corpus.USER_HISTORY_STATE.name] = lake.write(
        [state_rows(out, codebook_version).repartition("user_bucket") for out in outputs],
        corpus.USER_HISTORY_STATE,
        where=replaced,
    )
    written = dict(output.filter(F.col("kind") == "state").groupBy("dt").agg(F.count(F.lit(1)).alias("n")).collect())
    report.states_written = sum(int(n) for n in written.values())
    now = dt_.datetime.now(dt_.timezone.utc).replace(tzinfo=None)
    log = [(codebook_version, config.source, day, report.mode, int(written.get(day, 0)), now) for day in state_days]
    spark = output.sparkSession
    report.table_versions[corpus.STATE_BUILDS.name] = lake.write(
        spark.createDataFrame(log, corpus.STATE_BUILDS.schema), corpus.STATE_BUILDS, where=replaced
    )
    if report.mode == "day":
        compact_state(lake, config, codebook_version, report, last)
    report.states = lake.read(corpus.USER_HISTORY_STATE).filter(scope).filter(F.col("dt") <= F.lit(last)).select("user_id").distinct().count()


def compact_state(lake: Lake, config: CorpusConfig, codebook_version: str, report: CorpusReport, day: dt_.date) -> None:
    """On `day`, the state keeps its checkpoints as of the day (`checkpoint_days`): build
    days that are no longer checkpoints leave corpus.state_builds first (so a kill never
    leaves a listed day without its rows), then the user buckets whose turn it is (bucket
    b every `state_compact_days` days, staggered, so each day rewrites about the same
    share) drop the rows no checkpoint needs. A function of the calendar and the rows, not
    of the files: the same days give the same table, whatever runs and re-runs led there."""
    scope = corpus_predicate(config, codebook_version)
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
    report.table_versions[corpus.USER_HISTORY_STATE.name] = lake.write(kept.repartition("user_bucket"), corpus.USER_HISTORY_STATE, where=where)
    report.compacted_buckets = due


def _days_sql(days) -> str:
    return "dt IN (" + ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(days)) + ")"


def rollback_state(lake: Lake, config: CorpusConfig, codebook_version: str, before: dt_.date) -> dt_.date | None:
    """Take the history state of a scope back to its nearest checkpoint before `before`
    (state rows and build days after it go); returns that checkpoint, or None when there is
    none (the scope must then be rebuilt from its first day)."""
    scope = corpus_predicate(config, codebook_version)
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


def state_layout_current(lake: Lake) -> bool:
    """Whether the state table (if any) has the registered layout (an older geosid wrote
    one partitioned by day)."""
    return not lake.exists(corpus.USER_HISTORY_STATE) or lake.partition_columns(corpus.USER_HISTORY_STATE) == corpus.USER_HISTORY_STATE.partition_by
