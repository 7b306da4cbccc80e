"""Silver tables: geo context of cells and items, and item embeddings."""

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

NAME_COUNT = StructType([StructField("name", StringType()), StructField("n", LongType())])
HISTOGRAM = ArrayType(NAME_COUNT)

# The context of one cell; also the element type of an item's neighbour contexts.
CELL_CONTEXT_FIELDS = [
    StructField("cell_id", StringType()),
    StructField("n_items", LongType()),
    StructField("top_categories", HISTOGRAM),
    StructField("top_brands", HISTOGRAM),
    StructField("events_window", LongType()),
    StructField("users_window", LongType()),
    StructField("price_median", DoubleType()),
]
CELL_CONTEXT = StructType(CELL_CONTEXT_FIELDS)

GEO_CELLS = TableSpec(
    name="silver.geo_cells",
    description=(
        "Per day, every cell holding items known as of dt or activity in the trailing window: "
        "its own context and its area's (the cell and its neighbours). Computed from bronze "
        "rows with dt <= the logical date only."
    ),
    schema=StructType(
        [
            StructField("cell_system", StringType(), False),
            StructField("cell_id", StringType(), False),
            StructField("center_lat", DoubleType(), False),
            StructField("center_lon", DoubleType(), False),
            StructField("neighbour_ids", ArrayType(StringType()), False),
            StructField("n_items", LongType(), False),
            StructField("n_categories", LongType(), False),
            StructField("top_categories", HISTOGRAM, False),
            StructField("top_brands", HISTOGRAM, False),
            StructField("price_median", DoubleType(), True),
            StructField("price_mean", DoubleType(), True),
            StructField("events_day", LongType(), False),
            StructField("users_day", LongType(), False),
            StructField("events_window", LongType(), False),
            StructField("users_window", LongType(), False),
            StructField("pays_window", LongType(), False),
            StructField("gmv_window", DoubleType(), False),
            StructField("window_days", IntegerType(), False),
            StructField("area_n_items", LongType(), False),
            StructField("area_top_categories", HISTOGRAM, False),
            StructField("area_top_brands", HISTOGRAM, False),
            StructField("area_events_window", LongType(), False),
            StructField("dt", DateType(), False),
        ]
    ),
    partition_by=("dt",),
    keys=("cell_system", "cell_id", "dt"),
    checks=(
        Check("not_null", "cell_id"),
        Check("compound_unique", args={"columns": ["cell_system", "cell_id", "dt"]}),
        Check("between", "center_lat", args={"min_value": -90.0, "max_value": 90.0}),
        Check("between", "center_lon", args={"min_value": -180.0, "max_value": 180.0}),
        Check("in_set", "has_items_or_activity", sql="n_items > 0 OR events_window > 0", args={"values": [True]}),
        Check("in_set", "area_covers_cell", sql="area_n_items >= n_items", args={"values": [True]}),
        Check("between", "n_neighbours", sql="size(neighbour_ids)", args={"min_value": 5, "max_value": 8}),
    ),
)

ITEM_GEO = TableSpec(
    name="silver.item_geo",
    description=(
        "Per day, every item known as of dt with its attributes as of dt (location: median of "
        "its daily locations; other fields: the latest), its own cell's context and its "
        "neighbour cells' contexts (neighbour order N, NE, E, SE, S, SW, W, NW; empty cells count zero)."
    ),
    schema=StructType(
        [
            StructField("source", StringType(), False),
            StructField("item_id", StringType(), False),
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
            StructField("cell_system", StringType(), False),
            StructField("cell_id", StringType(), False),
            StructField("cell", CELL_CONTEXT, False),
            StructField("neighbours", ArrayType(CELL_CONTEXT), False),
            StructField("area_n_items", LongType(), False),
            StructField("area_top_categories", HISTOGRAM, False),
            StructField("area_top_brands", HISTOGRAM, False),
            StructField("area_events_window", LongType(), False),
            StructField("dt", DateType(), False),
        ]
    ),
    partition_by=("dt",),
    keys=("source", "item_id", "dt"),
    checks=(
        Check("not_null", "item_id"),
        Check("not_null", "cell_id"),
        Check("compound_unique", args={"columns": ["source", "item_id", "dt"]}),
        Check("between", "n_neighbours", sql="size(neighbours)", args={"min_value": 5, "max_value": 8}),
        Check("in_set", "own_cell_counts_item", sql="cell.n_items >= 1", args={"values": [True]}),
        Check("in_set", "first_seen_not_after_dt", sql="to_date(first_seen) <= dt", args={"values": [True]}),
    ),
)

ITEM_EMBEDDINGS = TableSpec(
    name="silver.item_embeddings",
    description=(
        "Per (item, document template, model), a vector for every logical date embedded_dt on "
        "which the item's document changed (the first: when it was first seen): the item's vector "
        "as of day D is its row with the latest embedded_dt <= D. doc_hash identifies the "
        "document. A day's rows are a function of the inputs up to it, so a repair can take "
        "back the rows from a day on and rebuild them. Vectors are L2-normalized float32."
    ),
    schema=StructType(
        [
            StructField("source", StringType(), False),
            StructField("item_id", StringType(), False),
            StructField("template_id", StringType(), False),
            StructField("model_id", StringType(), False),
            StructField("doc_hash", StringType(), False),
            StructField("document", StringType(), False),
            StructField("dim", IntegerType(), False),
            StructField("vector", ArrayType(FloatType()), False),
            StructField("embedded_dt", DateType(), False),
        ]
    ),
    keys=("source", "item_id", "template_id", "model_id", "embedded_dt"),
    checks=(
        Check("compound_unique", args={"columns": ["source", "item_id", "template_id", "model_id", "embedded_dt"]}),
        Check("in_set", "vector_has_dim", sql="size(vector) = dim", args={"values": [True]}),
        Check("between", "norm", sql="sqrt(aggregate(vector, 0D, (acc, x) -> acc + x * x))", args={"min_value": 0.99, "max_value": 1.01}),
    ),
)

TABLES = [GEO_CELLS, ITEM_GEO, ITEM_EMBEDDINGS]
