"""Bronze tables: typed, deduplicated source records, plus the quarantine of bad rows."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from geosid.schemas.registry import Check, TableSpec

# Actions: a check-in for TSMC2014; the local-life funnel for the synthetic world.
ACTIONS = ("checkin", "watch", "click", "pay")

EVENTS = TableSpec(
    name="bronze.events",
    description=(
        "One row per accepted user event. event_ts is UTC; dt is its UTC date. "
        "user_lat/user_lon is the user's location at request time (for a check-in, the venue's)."
    ),
    schema=StructType(
        [
            StructField("event_id", StringType(), False),
            StructField("source", StringType(), False),
            StructField("user_id", StringType(), False),
            StructField("item_id", StringType(), False),
            StructField("action", StringType(), False),
            StructField("event_ts", TimestampType(), False),
            StructField("tz_offset_min", IntegerType(), True),
            StructField("user_lat", DoubleType(), False),
            StructField("user_lon", DoubleType(), False),
            StructField("request_id", StringType(), True),
            StructField("gmv", DoubleType(), True),
            StructField("source_file", StringType(), False),
            StructField("line_no", LongType(), False),
            StructField("dt", DateType(), False),
        ]
    ),
    partition_by=("dt",),
    keys=("event_id",),
    checks=(
        Check("not_null", "event_id"),
        Check("not_null", "user_id"),
        Check("not_null", "item_id"),
        Check("not_null", "event_ts"),
        Check("unique", "event_id"),
        Check("between", "user_lat", args={"min_value": -90.0, "max_value": 90.0}),
        Check("between", "user_lon", args={"min_value": -180.0, "max_value": 180.0}),
        Check("in_set", "action", args={"values": list(ACTIONS)}),
        Check("in_set", "dt_matches_event_date", sql="to_date(event_ts) = dt", args={"values": [True]}),
        Check("between", "gmv", args={"min_value": 0.0}),
    ),
)

ITEMS = TableSpec(
    name="bronze.items",
    description=(
        "Item observations per day: one row per item seen (TSMC2014: venues in that day's "
        "check-ins) or delivered (synthetic catalog drops) on dt. lat/lon is the median of "
        "the day's observed coordinates (robust to the GPS jitter of single check-ins); "
        "n_obs says how many observations back it."
    ),
    schema=StructType(
        [
            StructField("source", StringType(), False),
            StructField("item_id", StringType(), False),
            StructField("store_id", StringType(), True),
            StructField("category_id", StringType(), True),
            StructField("category", StringType(), True),
            StructField("brand", StringType(), True),
            StructField("price", DoubleType(), True),
            StructField("title", StringType(), True),
            StructField("tags", ArrayType(StringType()), True),
            StructField("content", StringType(), False),
            StructField("lat", DoubleType(), False),
            StructField("lon", DoubleType(), False),
            StructField("n_obs", LongType(), False),
            StructField("first_seen", TimestampType(), False),
            StructField("dt", DateType(), False),
        ]
    ),
    partition_by=("dt",),
    keys=("source", "item_id", "dt"),
    checks=(
        Check("not_null", "item_id"),
        Check("not_null", "content"),
        Check("compound_unique", args={"columns": ["source", "item_id", "dt"]}),
        Check("between", "lat", args={"min_value": -90.0, "max_value": 90.0}),
        Check("between", "lon", args={"min_value": -180.0, "max_value": 180.0}),
        Check("between", "n_obs", args={"min_value": 1}),
        Check("in_set", "dt_matches_first_seen", sql="to_date(first_seen) = dt", args={"values": [True]}),
    ),
)

# Reason codes of the quarantine, in the order they are tested (the first failing wins).
REJECT_REASONS = (
    "bad_encoding",  # bytes that do not decode in the source's encoding, or control characters
    "wrong_column_count",
    "null_id",
    "bad_number",
    "bad_time",
    "bad_coordinate",
    "bad_value",  # a field outside its domain (unknown action, negative GMV or price)
    "future_event",  # event later than the drop's logical date
    "late_event",  # event earlier than the drop's logical date
    "duplicate",  # exact duplicate of an earlier line (same raw text)
)

REJECTS = TableSpec(
    name="bronze.rejects",
    description=(
        "Quarantine: every input line that did not become a bronze row, with its source, "
        "file, line number, reason code and raw text. dt is the line's logical date: the "
        "drop's date, else the event's date, else that of the nearest parseable line before it."
    ),
    schema=StructType(
        [
            StructField("source", StringType(), False),
            StructField("source_file", StringType(), False),
            StructField("line_no", LongType(), False),
            StructField("reason", StringType(), False),
            StructField("detail", StringType(), True),
            StructField("raw", StringType(), False),
            StructField("dt", DateType(), False),
        ]
    ),
    partition_by=("dt",),
    keys=("source", "source_file", "line_no"),
    checks=(
        Check("not_null", "reason"),
        Check("in_set", "reason", args={"values": list(REJECT_REASONS)}),
        Check("compound_unique", args={"columns": ["source", "source_file", "line_no"]}),
    ),
)

TABLES = [EVENTS, ITEMS, REJECTS]
