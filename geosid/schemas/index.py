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

SID_STABILITY = TableSpec(
    name="index.sid_stability",
    description=(
        "How far a version is from a reference version (the one it was aligned to at fit, "
        "the one it retired at publish), over the items both give a SID: SID retention "
        "(the same SID string), code retention (the same code tuple), per-level retention of "
        "code ids raw and after the best one-to-one renaming of the level's codes, the "
        "adjusted Rand index of the first-level partitions, and neighbour overlap (the share "
        "of an item's items sharing its first neighbour_depth codes that still do)."
    ),
    schema=StructType(
        [
            StructField("version", StringType(), False),
            StructField("reference", StringType(), False),
            StructField("items", LongType(), False),
            StructField("sid_retention", DoubleType(), False),
            StructField("code_retention", DoubleType(), False),
            StructField("level_retention", ArrayType(DoubleType()), False),
            StructField("level_retention_matched", ArrayType(DoubleType()), False),
            StructField("first_level_ari", DoubleType(), False),
            StructField("neighbour_overlap", DoubleType(), False),
            StructField("neighbour_depth", IntegerType(), False),
            StructField("computed_dt", DateType(), False),
        ]
    ),
    keys=("version", "reference"),
    checks=(
        Check("compound_unique", args={"columns": ["version", "reference"]}),
        Check("between", "sid_retention", args={"min_value": 0.0, "max_value": 1.0}),
        Check("between", "first_level_ari", args={"min_value": -1.0, "max_value": 1.0}),
    ),
)

MIGRATION_KINDS = ("kept", "moved", "new", "retired")

SID_MIGRATION = TableSpec(
    name="index.sid_migration",
    description=(
        "From the version a published version retired (from_version) to it (to_version): "
        "every item of either, once, with its old and new SID and a kind: kept (the same "
        "SID), moved (another SID), new (no SID under the old version), retired (no SID "
        "under the new one). Rewritten whenever the new version gives SIDs."
    ),
    schema=StructType(
        [
            StructField("from_version", StringType(), False),
            StructField("to_version", StringType(), False),
            StructField("source", StringType(), False),
            StructField("item_id", StringType(), False),
            StructField("old_sid", StringType(), True),
            StructField("new_sid", StringType(), True),
            StructField("kind", StringType(), False),
        ]
    ),
    keys=("to_version", "source", "item_id"),
    checks=(
        Check("compound_unique", args={"columns": ["to_version", "source", "item_id"]}),
        Check("in_set", "kind", args={"values": list(MIGRATION_KINDS)}),
        Check(
            "in_set",
            "kind_matches_sids",
            sql=(
                "CASE kind WHEN 'kept' THEN old_sid = new_sid WHEN 'moved' THEN old_sid <> new_sid "
                "WHEN 'new' THEN old_sid IS NULL AND new_sid IS NOT NULL "
                "WHEN 'retired' THEN new_sid IS NULL AND old_sid IS NOT NULL ELSE false END"
            ),
            args={"values": [True]},
        ),
    ),
)

SID_CODE_MAP = TableSpec(
    name="index.sid_code_map",
    description=(
        "Per level of a published version and each of its codes (new_code): the code of the "
        "version it retired that most of the code's items had (old_code), how many common "
        "items the new code holds, and the share of them that had old_code. A downstream "
        "model remaps its SID embedding table with it: row new_code starts from old_code's."
    ),
    schema=StructType(
        [
            StructField("from_version", StringType(), False),
            StructField("to_version", StringType(), False),
            StructField("level", IntegerType(), False),
            StructField("new_code", IntegerType(), False),
            StructField("old_code", IntegerType(), False),
            StructField("items", LongType(), False),
            StructField("share", DoubleType(), False),
        ]
    ),
    keys=("to_version", "level", "new_code"),
    checks=(
        Check("compound_unique", args={"columns": ["to_version", "level", "new_code"]}),
        Check("between", "share", args={"min_value": 0.0, "max_value": 1.0}),
        Check("between", "items", args={"min_value": 1}),
    ),
)

SID_DRIFT = TableSpec(
    name="index.sid_drift",
    description=(
        "Per version and day after its fit: the day's new items, their quantization error "
        "(mean squared residual of the nearest codes) and collision rate (the share that "
        "lands on an occupied code tuple: disambiguation digit > 0), beside the version's "
        "values at fit time (reconstruction MSE and conflict rate over its training items)."
    ),
    schema=StructType(
        [
            StructField("version", StringType(), False),
            StructField("dt", DateType(), False),
            StructField("new_items", LongType(), False),
            StructField("quantization_mse", DoubleType(), False),
            StructField("fit_mse", DoubleType(), False),
            StructField("collision_rate", DoubleType(), False),
            StructField("fit_collision_rate", DoubleType(), False),
        ]
    ),
    keys=("version", "dt"),
    checks=(
        Check("compound_unique", args={"columns": ["version", "dt"]}),
        Check("between", "new_items", args={"min_value": 1}),
        Check("between", "collision_rate", args={"min_value": 0.0, "max_value": 1.0}),
    ),
)

TABLES = [CODEBOOK_VERSIONS, CODEBOOKS, SID_MAP, SID_COLLISIONS, SID_QUALITY, SID_STABILITY, SID_MIGRATION, SID_CODE_MAP, SID_DRIFT]
