"""Operations tables: what arrived, and what every derived day was built from.

`ops.input_days` holds one row per source and day of raw input that the lake knows:
complete (ingested from a whole drop or a whole-history file) or closed (an operator
declared a drop that never came as empty, so later days could build). Its `digest` is the
content of the day's bronze events and items, so a re-delivered day with the same
content changes nothing and a changed one is noticed.

`ops.builds` holds one row per derived table, scope and day: the digest of every input
day up to that day (`inputs`) that the build read, the codebook version and the state
checkpoint it continued from. A built day whose `inputs` no longer equals the current
digest of its inputs is stale; `geosid status` says which and why, `geosid repair`
rebuilds exactly those days, in order.
"""

from __future__ import annotations

from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType, TimestampType

from geosid.schemas.registry import Check, TableSpec

INPUT_STATUSES = ("complete", "closed")

INPUT_DAYS = TableSpec(
    name="ops.input_days",
    description=(
        "Per source and day: complete (ingested from a whole drop or file) or closed (declared "
        "missing by an operator: built as empty); the content digest of the day's bronze events "
        "and items, their counts, the raw files' fingerprint (names, sizes, times) that a "
        "re-delivery changes, and when the content last changed."
    ),
    schema=StructType(
        [
            StructField("source", StringType(), False),
            StructField("dt", DateType(), False),
            StructField("status", StringType(), False),
            StructField("digest", StringType(), False),
            StructField("events", LongType(), False),
            StructField("items", LongType(), False),
            StructField("rejects", LongType(), False),
            StructField("files", StringType(), True),  # JSON fingerprint of the day's raw files (drops)
            StructField("note", StringType(), True),  # why a day was closed
            StructField("ingested_at", TimestampType(), False),
            StructField("changed_at", TimestampType(), False),
        ]
    ),
    keys=("source", "dt"),
    volatile=("files", "ingested_at", "changed_at"),
    checks=(
        Check("compound_unique", args={"columns": ["source", "dt"]}),
        Check("in_set", "status", args={"values": list(INPUT_STATUSES)}),
    ),
)

BUILD_MODES = ("day", "range", "repair")

BUILDS = TableSpec(
    name="ops.builds",
    description=(
        "Per derived table, scope (cell system, representation, codebook version, corpus "
        "scope) and day: the digest of the input days up to dt it was built from, the "
        "codebook version, the state checkpoint a corpus day continued from, the parameters a "
        "rebuild needs (JSON), how it was built and when."
    ),
    schema=StructType(
        [
            StructField("table_name", StringType(), False),
            StructField("scope", StringType(), False),
            StructField("dt", DateType(), False),
            StructField("inputs", StringType(), False),
            StructField("codebook_version", StringType(), True),
            StructField("continued_from", DateType(), True),
            StructField("params", StringType(), False),
            StructField("mode", StringType(), False),
            StructField("built_at", TimestampType(), False),
        ]
    ),
    keys=("table_name", "scope", "dt"),
    volatile=("mode", "built_at"),
    checks=(
        Check("compound_unique", args={"columns": ["table_name", "scope", "dt"]}),
        Check("in_set", "mode", args={"values": list(BUILD_MODES)}),
    ),
)

TABLES = [INPUT_DAYS, BUILDS]
