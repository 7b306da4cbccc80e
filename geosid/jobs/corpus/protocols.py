"""The split protocols as pure DataFrame transforms: LibCity's sessions, the next-POI
papers' trajectories, and the train / valid / test label of every target.
"""

from __future__ import annotations

import datetime as dt_

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from geosid.jobs.corpus.config import LibCityConfig, SplitConfig, TrajectoryConfig


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


def trajectory_filter(events: DataFrame, config: TrajectoryConfig) -> DataFrame:
    """Check-ins -> those of POIs with at least `min_poi_checkins` check-ins, then of the
    users left with at least `min_user_checkins` (POIs first, one pass each, as STHGCN's
    preprocess filters)."""
    poi = Window.partitionBy("source", "item_id")
    user = Window.partitionBy("source", "user_id")
    kept = events.withColumn("_n", F.count(F.lit(1)).over(poi)).filter(F.col("_n") >= config.min_poi_checkins).drop("_n")
    return kept.withColumn("_n", F.count(F.lit(1)).over(user)).filter(F.col("_n") >= config.min_user_checkins).drop("_n")


def trajectory_bounds(first: dt_.date, last: dt_.date, fractions: tuple[float, float, float]) -> tuple[dt_.date, dt_.date]:
    """The global split by days of data spanning [first, last]: (valid_start, test_start),
    `first + int(f_train * span)` and `first + int((f_train + f_valid) * span)` days, span
    = last - first in days (STHGCN's `global_time` split)."""
    span = (last - first).days
    valid_start = first + dt_.timedelta(days=int(fractions[0] * span))
    test_start = first + dt_.timedelta(days=int((fractions[0] + fractions[1]) * span))
    return valid_start, test_start


def trajectory_targets(events: DataFrame, config: TrajectoryConfig, valid_start: dt_.date, test_start: dt_.date) -> DataFrame:
    """Filtered check-ins -> the same rows with `trajectory` (per user, from 0), `position`
    (within it, from 0) and `is_target` (see TrajectoryConfig): the split period is the
    check-in's day against the bounds."""
    timeline = Window.partitionBy("source", "user_id").orderBy("event_ts", "event_id")
    # (the seconds are a column first: Sail 0.7 cannot lag over an expression)
    marked = events.withColumn("_s", F.unix_seconds("event_ts"))
    marked = marked.withColumn("_gap", F.col("_s") - F.lag("_s").over(timeline))
    new = F.coalesce(F.col("_gap") > F.lit(int(config.window_hours * 3600)), F.lit(True)).cast("int")
    marked = marked.withColumn("_new", new).withColumn("trajectory", F.sum("_new").over(timeline.rowsBetween(Window.unboundedPreceding, 0)) - 1)
    trajectory = Window.partitionBy("source", "user_id", "trajectory")
    marked = marked.withColumn("position", F.row_number().over(trajectory.orderBy("event_ts", "event_id")) - 1)
    marked = marked.withColumn("_len", F.count(F.lit(1)).over(trajectory))
    in_train = F.col("dt") < F.lit(valid_start)
    # what train saw: a valid / test target's POI and user must have a train-period check-in
    seen_item = F.max(in_train.cast("int")).over(Window.partitionBy("source", "item_id")) > 0
    seen_user = F.max(in_train.cast("int")).over(Window.partitionBy("source", "user_id")) > 0
    last = F.col("position") == F.col("_len") - 1
    target = (F.col("position") > 0) & (in_train | (last & seen_item & seen_user))
    return marked.withColumn("is_target", target).drop("_s", "_gap", "_new", "_len")


def label_splits(targets: DataFrame, split: SplitConfig) -> DataFrame:
    """Add `split` by the configured protocol (see SplitConfig)."""
    if split.protocol == "trajectory" and not (split.valid_start and split.test_start):
        raise ValueError("the trajectory split labels by its day bounds: set valid_start and test_start (the range build does)")
    if split.protocol in ("time", "trajectory"):
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
