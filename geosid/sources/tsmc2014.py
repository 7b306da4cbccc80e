"""Foursquare TSMC2014 check-ins (NYC and TKY files, unchanged).

Format: latin-1 text, tab-separated, no header, 8 fields:
user id (int), venue id, venue category id, venue category name, latitude, longitude,
timezone offset (minutes), UTC time as `Tue Apr 03 18:00:09 +0000 2012`.

For check-ins the item is the venue, and the user's location at request time is the
venue's coordinates as recorded in that check-in.
"""

from __future__ import annotations

import datetime as dt_

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

SOURCE = "tsmc2014"
ENCODING = "latin-1"
N_FIELDS = 8
# The weekday is redundant with the date and some engines cannot parse `EEE`; the
# remaining text (`Apr 03 18:00:09 +0000 2012`) fixes the instant.
TIME_PATTERN = "MMM dd HH:mm:ss Z yyyy"


_MONTHS = {m.encode(): k for k, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}


def line_day(line: bytes) -> dt_.date | None:
    """The UTC day of a raw line (its last field, `Tue Apr 03 18:00:09 +0000 2012`), or None
    when it does not read as one: what a sensor needs to know which days a file holds."""
    parts = line.rstrip(b"\r\n").rsplit(b"\t", 1)[-1].split()
    if len(parts) != 6 or parts[1] not in _MONTHS:
        return None
    try:
        day = dt_.date(int(parts[5]), _MONTHS[parts[1]], int(parts[2]))
        if parts[4] in (b"+0000", b"-0000"):
            return day
        offset = int(parts[4])
        hours, minutes = divmod(abs(offset), 100)
        clock = dt_.time.fromisoformat(parts[3].decode())
        local = dt_.datetime.combine(day, clock)
        return (local - (1 if offset > 0 else -1) * dt_.timedelta(hours=hours, minutes=minutes)).date()
    except ValueError:
        return None


def parse(lines: DataFrame) -> DataFrame:
    """Landed lines -> candidate check-ins with `reason`/`detail` (null when valid).

    Input columns: source, source_file, line_no, raw, decode_error, drop_date.
    Output adds the event fields (user_id, item_id, action, event_ts, tz_offset_min,
    user_lat, user_lon, request_id, gmv) and the venue fields (category_id, category).
    """
    fields = split_fields()
    user_raw, venue, category_id, category = (field(fields, i) for i in range(4))
    lat_raw, lon_raw, tz_raw, time_raw = (field(fields, i) for i in range(4, 8))
    user_num = user_raw.try_cast("bigint")
    lat, lon = try_double(lat_raw), try_double(lon_raw)
    tz = tz_raw.try_cast("int")
    event_ts = F.try_to_timestamp(F.substring(time_raw, 5, 64), F.lit(TIME_PATTERN))

    reason, detail = first_failure(
        [
            *line_checks(fields, N_FIELDS),
            (is_missing(user_raw), "null_id", F.lit("user id is empty")),
            (is_missing(venue), "null_id", F.lit("venue id is empty")),
            (is_missing(category_id), "null_id", F.lit("venue category id is empty")),
            (user_num.isNull(), "bad_number", F.concat(F.lit("user id is not an integer: "), quoted(user_raw))),
            *number_checks(latitude=(lat_raw, lat), longitude=(lon_raw, lon)),
            (tz.isNull(), "bad_number", F.concat(F.lit("timezone offset is not an integer: "), quoted(tz_raw))),
            (event_ts.isNull(), "bad_time", F.concat(F.lit("cannot parse time "), quoted(time_raw))),
            *coordinate_checks(lat_raw, lat, lon_raw, lon),
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
        user_num.cast("string").alias("user_id"),
        venue.alias("item_id"),
        F.lit("checkin").alias("action"),
        event_ts.alias("event_ts"),
        tz.alias("tz_offset_min"),
        lat.alias("user_lat"),
        lon.alias("user_lon"),
        F.lit(None).cast("string").alias("request_id"),
        F.lit(None).cast("double").alias("gmv"),
        category_id.alias("category_id"),
        category.alias("category"),
    )


def items_from_checkins(events: DataFrame) -> DataFrame:
    """Accepted check-ins -> bronze.items rows: one per (venue, day) observed.

    Location is the median of the day's check-in coordinates: single check-ins carry
    GPS jitter and the occasional far-off fix, which a median ignores and a mean does not.
    Category: the smallest id and name seen that day (a venue has one category; the rule
    only makes a conflicting input deterministic).
    """
    return (
        events.groupBy("source", "item_id", "dt")
        .agg(
            F.min("category_id").alias("category_id"),
            F.min("category").alias("category"),
            F.median("user_lat").alias("lat"),
            F.median("user_lon").alias("lon"),
            F.count(F.lit(1)).alias("n_obs"),
            F.min("event_ts").alias("first_seen"),
        )
        .select(
            "source",
            "item_id",
            F.lit(None).cast("string").alias("store_id"),
            "category_id",
            "category",
            F.lit(None).cast("string").alias("brand"),
            F.lit(None).cast("double").alias("price"),
            F.lit(None).cast("string").alias("title"),
            F.lit(None).cast("array<string>").alias("tags"),
            F.coalesce(F.col("category"), F.lit("")).alias("content"),
            "lat",
            "lon",
            "n_obs",
            "first_seen",
            "dt",
        )
    )
