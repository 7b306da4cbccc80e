"""The synthetic local-life world's raw format (see `geosid.sources.synthetic_world` for
the layout and the generator): parsers of its two feeds and the catalog -> bronze.items
transform. Pure Spark expressions.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.sources.fields import (
    coordinate_checks,
    field,
    first_failure,
    is_missing,
    line_checks,
    number_checks,
    quoted,
    split_fields,
    try_double,
)

SOURCE = "synthetic"
EVENTS_FEED = "synthetic.events"
ITEMS_FEED = "synthetic.items"
ENCODING = "utf-8"
EVENT_FIELDS = 8
ITEM_FIELDS = 10
TIME_PATTERN = "yyyy-MM-dd'T'HH:mm:ss.SSSX"


def parse_events(lines: DataFrame) -> DataFrame:
    """Landed event lines -> candidate events (same shape as the TSMC2014 parser's)."""
    fields = split_fields()
    request_id, user_id, item_id, action, time_raw, lat_raw, lon_raw, gmv_raw = (field(fields, i) for i in range(EVENT_FIELDS))
    lat, lon = try_double(lat_raw), try_double(lon_raw)
    gmv = F.when(is_missing(gmv_raw), F.lit(None).cast("double")).otherwise(try_double(gmv_raw))
    event_ts = F.try_to_timestamp(time_raw, F.lit(TIME_PATTERN))
    reason, detail = first_failure(
        [
            *line_checks(fields, EVENT_FIELDS),
            (is_missing(user_id), "null_id", F.lit("user id is empty")),
            (is_missing(item_id), "null_id", F.lit("item id is empty")),
            *number_checks(latitude=(lat_raw, lat), longitude=(lon_raw, lon)),
            (
                gmv.isNull() & ~is_missing(gmv_raw),
                "bad_number",
                F.concat(F.lit("gmv is not a number: "), quoted(gmv_raw)),
            ),
            (event_ts.isNull(), "bad_time", F.concat(F.lit("cannot parse time "), quoted(time_raw))),
            *coordinate_checks(lat_raw, lat, lon_raw, lon),
            (
                ~action.isin("watch", "click", "pay"),
                "bad_value",
                F.concat(F.lit("unknown action "), quoted(action)),
            ),
            (gmv < 0, "bad_value", F.format_string("negative gmv %s", gmv_raw)),
        ]
    )
    return lines.select(
        "source",
        "source_file",
        "line_no",
        "raw",
        "drop_date",
        reason.alias("reason"),
        detail.alias("detail"),
        user_id.alias("user_id"),
        item_id.alias("item_id"),
        action.alias("action"),
        event_ts.alias("event_ts"),
        F.lit(None).cast("int").alias("tz_offset_min"),
        lat.alias("user_lat"),
        lon.alias("user_lon"),
        request_id.alias("request_id"),
        gmv.alias("gmv"),
    )


def parse_items(lines: DataFrame) -> DataFrame:
    """Landed catalog lines -> candidate bronze.items rows (event_ts = created_at)."""
    fields = split_fields()
    item_id, store_id, brand, category, price_raw, lat_raw, lon_raw, title, tags, created_raw = (field(fields, i) for i in range(ITEM_FIELDS))
    lat, lon, price = try_double(lat_raw), try_double(lon_raw), try_double(price_raw)
    created = F.try_to_timestamp(created_raw, F.lit(TIME_PATTERN))
    reason, detail = first_failure(
        [
            *line_checks(fields, ITEM_FIELDS),
            (is_missing(item_id), "null_id", F.lit("item id is empty")),
            (is_missing(store_id), "null_id", F.lit("store id is empty")),
            *number_checks(latitude=(lat_raw, lat), longitude=(lon_raw, lon), price=(price_raw, price)),
            (created.isNull(), "bad_time", F.concat(F.lit("cannot parse time "), quoted(created_raw))),
            *coordinate_checks(lat_raw, lat, lon_raw, lon),
            (price < 0, "bad_value", F.format_string("negative price %s", price_raw)),
        ]
    )
    tag_list = F.when(is_missing(tags), F.array().cast("array<string>")).otherwise(F.split(tags, r"\|"))
    content = F.concat_ws(" | ", title, brand, category, F.array_join(tag_list, ", "))
    return lines.select(
        "source",
        "source_file",
        "line_no",
        "raw",
        "drop_date",
        reason.alias("reason"),
        detail.alias("detail"),
        created.alias("event_ts"),
        item_id.alias("item_id"),
        store_id.alias("store_id"),
        F.lit(None).cast("string").alias("category_id"),
        category.alias("category"),
        brand.alias("brand"),
        price.alias("price"),
        title.alias("title"),
        tag_list.alias("tags"),
        content.alias("content"),
        lat.alias("lat"),
        lon.alias("lon"),
    )


def items_from_catalog(valid: DataFrame) -> DataFrame:
    """Accepted catalog rows -> bronze.items (one observation: the store's location)."""
    return valid.select(
        F.lit(SOURCE).alias("source"),
        "item_id",
        "store_id",
        "category_id",
        "category",
        "brand",
        "price",
        "title",
        "tags",
        "content",
        "lat",
        "lon",
        F.lit(1).cast("bigint").alias("n_obs"),
        F.col("event_ts").alias("first_seen"),
        "dt",
    )
