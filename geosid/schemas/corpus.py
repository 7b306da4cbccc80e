"""Corpus tables: what downstream trainers read.

`corpus.training_sequences` holds one row per target event with the user's real-time
cell, its neighbour cells and one history per configured behavior; its incremental
companion `corpus.user_history_state` keeps each user's last N events per behavior as
of the end of the days on which they changed (laid out by user hash, so a day rewrites
only the users it touched), and `corpus.state_builds` records through which days the
state is complete, so a day's sequences never re-read past days. `corpus.cell_context`
is the context of every cell that a request on day dt may see.
"""

from __future__ import annotations

from typing import Literal, get_args

from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from geosid.schemas.registry import Check, TableSpec
from geosid.schemas.silver import HISTOGRAM

SPLITS = ("train", "valid", "test")
# The split protocols, defined here once: `time` (day boundaries), `user_chrono` (each
# user's own chronology), `libcity` (LibCity's sessions and ratios), `trajectory` (the
# next-POI papers': 24-hour trajectories, last check-ins, one global split by days).
Protocol = Literal["time", "user_chrono", "libcity", "trajectory"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)
# The protocols a benchmark compares (time is the daily corpus's).
BENCHMARK_PROTOCOLS: tuple[str, ...] = ("trajectory", "user_chrono", "libcity")


def protocol_predicate(protocol: str) -> str:
    """SQL: the rows of a protocol (rows written before the column existed are time's)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {PROTOCOLS}")
    return "(protocol = 'time' OR protocol IS NULL)" if protocol == "time" else f"protocol = '{protocol}'"


# One past event as a trainer sees it: the item, its SID codes under the table's
# codebook version, the item's cell, when, and what the user did.
HISTORY_EVENT = StructType(
    [
        StructField("item_id", StringType()),
        StructField("codes", ArrayType(IntegerType())),
        StructField("cell_id", StringType()),
        StructField("event_ts", TimestampType()),
        StructField("action", StringType()),
    ]
)
# One behavior's history: the last `max_len` events of its actions, oldest first.
HISTORY = StructType(
    [
        StructField("behavior", StringType()),
        StructField("max_len", IntegerType()),
        StructField("events", ArrayType(HISTORY_EVENT)),
    ]
)

# The state keeps what the next day's run needs to continue a history exactly: the
# event id (dedup, tie order) and where the user was (the next real-time cell).
STATE_EVENT = StructType(
    [
        StructField("event_id", StringType()),
        StructField("item_id", StringType()),
        StructField("codes", ArrayType(IntegerType())),
        StructField("cell_id", StringType()),
        StructField("user_cell_id", StringType()),
        StructField("event_ts", TimestampType()),
        StructField("action", StringType()),
    ]
)
STATE_HISTORY = StructType(
    [
        StructField("behavior", StringType()),
        StructField("max_len", IntegerType()),
        StructField("events", ArrayType(STATE_EVENT)),
    ]
)

# Order of corpus.cell_context.features (log1p of counts; price median, 0 when unknown).
CELL_FEATURES = (
    "log_n_items",
    "log_n_categories",
    "log_events_day",
    "log_events_window",
    "log_users_window",
    "log_pays_window",
    "log_gmv_window",
    "log_price_median",
    "has_price",
    "log_area_n_items",
    "log_area_events_window",
)

_HISTORY_LENGTHS_OK = "forall(histories, h -> size(h.events) <= h.max_len)"

TRAINING_SEQUENCES = TableSpec(
    name="corpus.training_sequences",
    description=(
        "One row per target event of day dt under a codebook version: the target item (SID "
        "codes, disambiguation digit, cell), the user's real-time cell at request time (for "
        "check-ins the previous check-in's cell, never the target's) and its neighbour cells "
        "(order N, NE, E, SE, S, SW, W, NW), one history per configured behavior (events "
        "strictly before the target's timestamp, oldest first), and the split label of the "
        "row's protocol (time, user_chrono, libcity, trajectory: one table, the protocols side by side)."
    ),
    schema=StructType(
        [
            StructField("source", StringType(), False),
            StructField("user_id", StringType(), False),
            StructField("event_id", StringType(), False),
            StructField("request_id", StringType(), True),
            StructField("target_ts", TimestampType(), False),
            StructField("target_action", StringType(), False),
            StructField("target_item_id", StringType(), False),
            StructField("target_codes", ArrayType(IntegerType()), False),
            StructField("target_disambiguation", IntegerType(), False),
            StructField("target_sid", StringType(), False),
            StructField("target_cell_id", StringType(), False),
            StructField("target_gmv", DoubleType(), True),
            StructField("cell_system", StringType(), False),
            StructField("user_cell_id", StringType(), False),
            StructField("neighbour_cell_ids", ArrayType(StringType()), False),
            StructField("histories", ArrayType(HISTORY), False),
            StructField("split", StringType(), False),
            StructField("codebook_version", StringType(), False),
            StructField("dt", DateType(), False),
            # The split protocol that chose and labelled the row (time, user_chrono, libcity, trajectory);
            # protocols live side by side. Null on rows written before the column: time.
            StructField("protocol", StringType(), True),
        ]
    ),
    partition_by=("dt", "codebook_version"),
    keys=("codebook_version", "source", "protocol", "event_id"),
    checks=(
        Check("not_null", "event_id"),
        Check("not_null", "user_id"),
        Check("not_null", "target_item_id"),
        Check("not_null", "user_cell_id"),
        Check("compound_unique", args={"columns": ["codebook_version", "source", "protocol", "event_id"]}),
        Check("in_set", "split", args={"values": list(SPLITS)}),
        Check("in_set", "protocol", args={"values": list(PROTOCOLS)}),
        Check("in_set", "dt_matches_target_date", sql="to_date(target_ts) = dt", args={"values": [True]}),
        Check("in_set", "history_lengths_within_max", sql=_HISTORY_LENGTHS_OK, args={"values": [True]}),
        Check(
            "in_set",
            "history_before_target",
            sql="forall(histories, h -> forall(h.events, e -> e.event_ts < target_ts))",
            args={"values": [True]},
        ),
        Check(
            "in_set",
            "history_in_time_order",
            sql=("forall(histories, h -> transform(h.events, e -> e.event_ts) = array_sort(transform(h.events, e -> e.event_ts)))"),
            args={"values": [True]},
        ),
        Check("between", "n_neighbours", sql="size(neighbour_cell_ids)", args={"min_value": 5, "max_value": 8}),
        Check(
            "in_set",
            "user_cell_not_a_neighbour",
            sql="NOT array_contains(neighbour_cell_ids, user_cell_id)",
            args={"values": [True]},
        ),
    ),
)

USER_HISTORY_STATE = TableSpec(
    name="corpus.user_history_state",
    description=(
        "Per user, codebook version and day dt on which the user's state changed: the last "
        "max_len events of each behavior with a date <= dt, and the cell of the user's latest "
        "event. The state of a user as of day D is the user's row with the latest dt <= D "
        "(valid for the days corpus.state_builds lists). Partitioned by user_bucket "
        "(crc32(user_id) % buckets): a daily run adds rows for the users it touched only, and "
        "compacts a few buckets (superseded rows older than the retention go); a backfill "
        "rebuilds it. Removed rows remain readable by time travel until vacuum."
    ),
    schema=StructType(
        [
            StructField("source", StringType(), False),
            StructField("user_id", StringType(), False),
            StructField("last_event_ts", TimestampType(), False),
            StructField("last_cell_id", StringType(), False),
            StructField("histories", ArrayType(STATE_HISTORY), False),
            StructField("codebook_version", StringType(), False),
            StructField("dt", DateType(), False),
            StructField("user_bucket", IntegerType(), False),
        ]
    ),
    partition_by=("codebook_version", "source", "user_bucket"),
    keys=("codebook_version", "source", "user_id", "dt"),
    checks=(
        Check("compound_unique", args={"columns": ["codebook_version", "source", "user_id", "dt"]}),
        Check("in_set", "history_lengths_within_max", sql=_HISTORY_LENGTHS_OK, args={"values": [True]}),
        Check(
            "in_set",
            "events_not_after_dt",
            sql="forall(histories, h -> forall(h.events, e -> to_date(e.event_ts) <= dt))",
            args={"values": [True]},
        ),
        Check("in_set", "last_event_not_after_dt", sql="to_date(last_event_ts) <= dt", args={"values": [True]}),
    ),
)

STATE_BUILDS = TableSpec(
    name="corpus.state_builds",
    description=(
        "Per codebook version, source and day dt: corpus.user_history_state is complete as of "
        "the end of dt (a range build lists its retained state days, a daily run its day). A "
        "daily run needs the day before listed; days whose states compaction removed are "
        "removed here too."
    ),
    schema=StructType(
        [
            StructField("codebook_version", StringType(), False),
            StructField("source", StringType(), False),
            StructField("dt", DateType(), False),
            StructField("mode", StringType(), False),
            StructField("users_written", LongType(), False),
            StructField("built_at", TimestampType(), False),
        ]
    ),
    keys=("codebook_version", "source", "dt"),
    volatile=("mode", "built_at"),
    checks=(
        Check("compound_unique", args={"columns": ["codebook_version", "source", "dt"]}),
        Check("in_set", "mode", args={"values": ["range", "day"]}),
    ),
)

CELL_CONTEXT = TableSpec(
    name="corpus.cell_context",
    description=(
        "Per cell and day dt: the context a request on dt sees, taken from the latest "
        "silver.geo_cells snapshot strictly before dt (context_dt), so a day's targets never "
        "see that day's activity. features follow geosid.schemas.corpus.CELL_FEATURES. "
        "A cell absent on a day has no items and no activity in the snapshot: zero context."
    ),
    schema=StructType(
        [
            StructField("cell_system", StringType(), False),
            StructField("cell_id", StringType(), False),
            StructField("context_dt", DateType(), False),
            StructField("neighbour_ids", ArrayType(StringType()), False),
            StructField("n_items", IntegerType(), False),
            StructField("top_categories", HISTOGRAM, False),
            StructField("top_brands", HISTOGRAM, False),
            StructField("area_top_categories", HISTOGRAM, False),
            StructField("features", ArrayType(FloatType()), False),
            StructField("dt", DateType(), False),
        ]
    ),
    partition_by=("dt",),
    keys=("cell_system", "cell_id", "dt"),
    checks=(
        Check("not_null", "cell_id"),
        Check("compound_unique", args={"columns": ["cell_system", "cell_id", "dt"]}),
        Check("in_set", "context_before_dt", sql="context_dt < dt", args={"values": [True]}),
        Check("in_set", "n_features", sql=f"size(features) = {len(CELL_FEATURES)}", args={"values": [True]}),
        Check("between", "n_neighbours", sql="size(neighbour_ids)", args={"min_value": 5, "max_value": 8}),
    ),
)

PREFERENCE_PAIRS = TableSpec(
    name="corpus.preference_pairs",
    description=(
        "DPO pairs of one alignment run: for a train request, the best and worst of N "
        "candidates sampled by beam search from the reference model, by the run's reward "
        "(`reward` says which). Tokens are SID tokens (level codes then digit)."
    ),
    schema=StructType(
        [
            StructField("run_id", StringType(), False),
            StructField("codebook_version", StringType(), False),
            StructField("source", StringType(), False),
            StructField("event_id", StringType(), False),
            StructField("dt", DateType(), False),
            StructField("n_candidates", IntegerType(), False),
            StructField("reward", StringType(), False),
            StructField("chosen_item_id", StringType(), False),
            StructField("chosen_tokens", ArrayType(IntegerType()), False),
            StructField("chosen_reward", DoubleType(), False),
            StructField("rejected_item_id", StringType(), False),
            StructField("rejected_tokens", ArrayType(IntegerType()), False),
            StructField("rejected_reward", DoubleType(), False),
        ]
    ),
    partition_by=("dt",),
    keys=("run_id", "event_id"),
    checks=(
        Check("compound_unique", args={"columns": ["run_id", "event_id"]}),
        Check("in_set", "chosen_beats_rejected", sql="chosen_reward > rejected_reward", args={"values": [True]}),
    ),
)

TABLES = [TRAINING_SEQUENCES, USER_HISTORY_STATE, STATE_BUILDS, CELL_CONTEXT, PREFERENCE_PAIRS]
