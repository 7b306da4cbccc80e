"""Index tables: versioned codebooks, the SID <-> item map and its quality tables.

Every table is keyed by `version`, a codebook version id. A published version is
immutable: its codebooks never change and an item's SID under it never moves.
"""

from __future__ import annotations

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

STATUSES = ("candidate", "published", "retired")

CODEBOOK_VERSIONS = TableSpec(
    name="index.codebook_versions",
    description=(
        "One row per codebook version. version = hash of the tokenizer parameters, the "
        "embedding model and template, the logical date and the content of the training set "
        "read from the pinned snapshots of silver.item_embeddings (embeddings_version) and "
        "silver.item_geo (item_geo_version). status: candidate -> published -> retired "
        "(published_dt / retired_dt: the logical dates). params and metrics are JSON."
    ),
    schema=StructType(
        [
            StructField("version", StringType(), False),
            StructField("method", StringType(), False),
            StructField("status", StringType(), False),
            StructField("params", StringType(), False),
            StructField("level_sizes", ArrayType(IntegerType()), False),
            StructField("model_id", StringType(), False),
            StructField("template_id", StringType(), False),
            StructField("embeddings_version", LongType(), False),
            StructField("n_items", LongType(), False),
            StructField("metrics", StringType(), False),
            StructField("created_dt", DateType(), False),
            StructField("published_dt", DateType(), True),
            StructField("retired_dt", DateType(), True),
            StructField("item_geo_version", LongType(), True),
            StructField("fit_seconds", DoubleType(), True),  # the fit's wall time
        ]
    ),
    keys=("version",),
    volatile=("embeddings_version", "item_geo_version", "fit_seconds"),
    checks=(
        Check("unique", "version"),
        Check("in_set", "status", args={"values": list(STATUSES)}),
    ),
)

CODEBOOKS = TableSpec(
    name="index.codebooks",
    description=(
        "The arrays of each version, one row per array row: kind is centroids_<level>, "
        "regions (geo-prefix), fsq_w_in / fsq_b_in / fsq_w_out / fsq_b_out (the FSQ "
        "projection) or level_mse; row is the row index (the code, for centroids)."
    ),
    schema=StructType(
        [
            StructField("version", StringType(), False),
            StructField("kind", StringType(), False),
            StructField("row", IntegerType(), False),
            StructField("values", ArrayType(FloatType()), False),
        ]
    ),
    keys=("version", "kind", "row"),
    checks=(Check("compound_unique", args={"columns": ["version", "kind", "row"]}),),
)

SID_MAP = TableSpec(
    name="index.sid_map",
    description=(
        "The SID of every item under a version: codes (one per level), the disambiguation "
        "digit (rank within its colliding bucket by first_seen, then item_id), and sid = "
        "codes and digit joined by '-'. Rows are only ever added: an item's SID never moves."
    ),
    schema=StructType(
        [
            StructField("version", StringType(), False),
            StructField("source", StringType(), False),
            StructField("item_id", StringType(), False),
            StructField("codes", ArrayType(IntegerType()), False),
            StructField("disambiguation", IntegerType(), False),
            StructField("sid", StringType(), False),
            StructField("first_seen", TimestampType(), False),
            StructField("lat", DoubleType(), False),
            StructField("lon", DoubleType(), False),
            StructField("assigned_dt", DateType(), False),
        ]
    ),
    keys=("version", "source", "item_id"),
    checks=(
        Check("compound_unique", args={"columns": ["version", "source", "item_id"]}),
        Check("compound_unique", args={"columns": ["version", "sid"]}),
        Check("between", "disambiguation", args={"min_value": 0}),
    ),
)

SID_COLLISIONS = TableSpec(
    name="index.sid_collisions",
    description="Per version and code tuple (sid without its disambiguation digit): how many items share it, and which.",
    schema=StructType(
        [
            StructField("version", StringType(), False),
            StructField("sid", StringType(), False),
            StructField("n_items", LongType(), False),
            StructField("items", ArrayType(StringType()), False),
        ]
    ),
    keys=("version", "sid"),
    checks=(Check("between", "n_items", args={"min_value": 1}),),
)

SID_QUALITY = TableSpec(
    name="index.sid_quality",
    description=(
        "Per version: conflict rate (1 - distinct code tuples / items), exclusive rate "
        "(code tuples holding one item / occupied tuples), items-alone rate, largest bucket, "
        "per-level code usage and perplexity, geo coherence (median km between items sharing "
        "a first-level code / a 2-level prefix, and between random items)."
    ),
    schema=StructType(
        [
            StructField("version", StringType(), False),
            StructField("method", StringType(), False),
            StructField("items", LongType(), False),
            StructField("sids", LongType(), False),
            StructField("conflict_rate", DoubleType(), False),
            StructField("exclusive_rate", DoubleType(), False),
            StructField("items_alone_rate", DoubleType(), False),
            StructField("largest_bucket", LongType(), False),
            StructField("code_usage", ArrayType(DoubleType()), False),
            StructField("perplexity", ArrayType(DoubleType()), False),
            StructField("geo_coherence_l1_km", DoubleType(), True),
            StructField("geo_coherence_l2_km", DoubleType(), True),
            StructField("geo_baseline_km", DoubleType(), True),
            StructField("reconstruction_mse", DoubleType(), True),
            StructField("computed_dt", DateType(), False),
        ]
    ),
    keys=("version",),
    checks=(
        Check("between", "conflict_rate", args={"min_value": 0.0, "max_value": 1.0}),
        Check("between", "exclusive_rate", args={"min_value": 0.0, "max_value": 1.0}),
    ),
)

TABLES = [CODEBOOK_VERSIONS, CODEBOOKS, SID_MAP, SID_COLLISIONS, SID_QUALITY]
