"""Geo context: bronze -> silver.geo_cells and silver.item_geo for one logical date.

Everything is computed from bronze rows with dt <= the logical date (no future data):
items as of the date (location = median of their daily locations, other attributes the
latest), cell statistics over those items, and activity over a trailing window of days.
"""

from __future__ import annotations

import datetime as dt_
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from geosid.geo.geometry import CellConfig, CellSystem
from geosid.geo.sql import add_cells
from geosid.lake import Lake, as_date, day_runs
from geosid.schemas import bronze, silver

TOP_K = 5


@dataclass(frozen=True)
class GeoConfig:
    """How cells are drawn and how much context is summarized."""

    cell_config: CellConfig = CellConfig()
    window_days: int = 28
    top_k: int = TOP_K

    def cells(self) -> CellSystem:
        return self.cell_config.cells()

    def to_record(self) -> dict:
        """As a build records it (`ops.builds.params`)."""
        return {**self.cell_config.to_record(), "window_days": self.window_days, "top_k": self.top_k}

    @classmethod
    def from_record(cls, params: dict) -> GeoConfig:
        return cls(cell_config=CellConfig.from_record(params), window_days=params["window_days"], top_k=params["top_k"])


# ---------------------------------------------------------------------------------------
# Pure transforms


def item_states(observations: DataFrame, first: dt_.date, last: dt_.date) -> DataFrame:
    """bronze.items observations -> one row per item and day D of [first, last] on which
    the item is known, with `dt` = D: the item as of D.

    Location: median of the item's daily locations up to D (each already a median of that
    day's fixes). Descriptive fields: from its latest observation up to D. An item's state
    changes only on the days it is observed, so the states are computed at `first` and at
    each later observation day, then stretched over the days until the next one.
    """
    latest = F.struct("category", "brand", "price", "title", "tags", "content")
    known = observations.filter(F.col("dt") <= F.lit(last))
    # the days a state starts: `first` for every item known by then, and each later observation day
    starts = known.select("source", "item_id", F.greatest(F.col("dt"), F.lit(first)).alias("state_dt")).distinct()
    states = (
        starts.join(known, ["source", "item_id"])
        .filter(F.col("dt") <= F.col("state_dt"))
        .groupBy("source", "item_id", "state_dt")
        .agg(
            F.median("lat").alias("lat"),
            F.median("lon").alias("lon"),
            F.max_by(latest, F.col("dt")).alias("latest"),
            F.sum("n_obs").alias("n_obs"),
            F.min("first_seen").alias("first_seen"),
        )
    )
    if first == last:
        return states.select("source", "item_id", "latest.*", "lat", "lon", "n_obs", "first_seen", F.col("state_dt").alias("dt"))
    following = Window.partitionBy("source", "item_id").orderBy("state_dt")
    until = F.coalesce(F.date_sub(F.lead("state_dt").over(following), 1), F.lit(last))
    return (
        states.withColumn("_until", until)
        .withColumn("dt", F.explode(F.sequence(F.col("state_dt"), F.col("_until"))))
        .select("source", "item_id", "latest.*", "lat", "lon", "n_obs", "first_seen", "dt")
    )


def with_cells(df: DataFrame, cells: CellSystem, lat: str = "lat", lon: str = "lon") -> DataFrame:
    return add_cells(df, cells, lat, lon, cell="cell_id")


def top_k_histogram(df: DataFrame, keys: list[str], value: str, k: int, name: str) -> DataFrame:
    """Per `keys`: array<struct<name, n>> of the k most frequent non-null `value`s
    (ties broken by name, so the result is deterministic)."""
    counts = df.filter(F.col(value).isNotNull()).groupBy(*keys, value).agg(F.count(F.lit(1)).alias("n"))
    return top_k_of_counts(counts, keys, value, "n", k, name)


def top_k_of_counts(counts: DataFrame, keys: list[str], value: str, count: str, k: int, name: str) -> DataFrame:
    rank = F.row_number().over(Window.partitionBy(*keys).orderBy(F.col(count).desc(), F.col(value)))
    return (
        counts.withColumn("_rank", rank)
        .filter(F.col("_rank") <= k)
        .groupBy(*keys)
        .agg(F.sort_array(F.collect_list(F.struct((-F.col(count)).alias("neg"), F.col(value).alias("name")))).alias("_h"))
        .select(*keys, F.transform("_h", lambda s: F.struct(s["name"].alias("name"), (-s["neg"]).alias("n"))).alias(name))
    )


def exact_sum(column: str) -> F.Column:
    """The sum of a money column in whole cents (integers): the same value whatever order
    the engine adds the rows in (a double sum is not, and a day rebuilt in a range job
    must equal the same day built alone)."""
    return F.sum(F.round(F.col(column) * 100).cast("long"))


def cell_item_stats(items: DataFrame, k: int) -> DataFrame:
    """Per day and cell: item count, category / brand histograms, price statistics."""
    base = items.groupBy("dt", "cell_id").agg(
        F.count(F.lit(1)).alias("n_items"),
        F.count_distinct("category").alias("n_categories"),
        F.median("price").alias("price_median"),
        F.when(F.count("price") > 0, exact_sum("price") / F.count("price") / 100.0).alias("price_mean"),
    )
    cats = top_k_histogram(items, ["dt", "cell_id"], "category", k, "top_categories")
    brands = top_k_histogram(items, ["dt", "cell_id"], "brand", k, "top_brands")
    return base.join(cats, ["dt", "cell_id"], "left").join(brands, ["dt", "cell_id"], "left")


def cell_activity(events: DataFrame, first: dt_.date, last: dt_.date, window_days: int) -> DataFrame:
    """Per day D of [first, last] and cell of the user's location: events and users on D
    and over the window of days ending on D. Each event counts toward the days its
    window covers."""
    lo = first - dt_.timedelta(days=window_days - 1)
    recent = events.filter((F.col("dt") >= F.lit(lo)) & (F.col("dt") <= F.lit(last)))
    reach = F.sequence(F.greatest(F.col("dt"), F.lit(first)), F.least(F.date_add(F.col("dt"), window_days - 1), F.lit(last)))
    spread = recent.withColumn("_event_dt", F.col("dt")).withColumn("dt", F.explode(reach))
    today = F.col("_event_dt") == F.col("dt")
    return spread.groupBy("dt", "cell_id").agg(
        F.sum(today.cast("long")).alias("events_day"),
        F.count_distinct(F.when(today, F.col("user_id"))).alias("users_day"),
        F.count(F.lit(1)).alias("events_window"),
        F.count_distinct("user_id").alias("users_window"),
        F.sum((F.col("action") == "pay").cast("long")).alias("pays_window"),
        F.coalesce(exact_sum("gmv") / 100.0, F.lit(0.0)).alias("gmv_window"),
    )


def area_stats(cells: DataFrame, item_cells: DataFrame, k: int) -> DataFrame:
    """Per day and cell: the same statistics over its area (itself and its neighbours),
    from the full per-cell category / brand counts (not from the truncated top-k lists)."""
    area = cells.select("dt", "cell_id", F.explode(F.array_union(F.array("cell_id"), F.col("neighbour_ids"))).alias("member"))
    members = area.join(cells.select("dt", F.col("cell_id").alias("member"), "n_items", "events_window"), ["dt", "member"], "left")
    totals = members.groupBy("dt", "cell_id").agg(
        F.coalesce(F.sum("n_items"), F.lit(0)).cast("long").alias("area_n_items"),
        F.coalesce(F.sum("events_window"), F.lit(0)).cast("long").alias("area_events_window"),
    )
    out = totals
    for value, name in (("category", "area_top_categories"), ("brand", "area_top_brands")):
        counts = item_cells.filter(F.col(value).isNotNull()).groupBy("dt", F.col("cell_id").alias("member"), value).agg(F.count(F.lit(1)).alias("n"))
        summed = area.join(counts, ["dt", "member"]).groupBy("dt", "cell_id", value).agg(F.sum("n").alias("n"))
        out = out.join(top_k_of_counts(summed, ["dt", "cell_id"], value, "n", k, name), ["dt", "cell_id"], "left")
    return out


def geo_cells(items: DataFrame, events: DataFrame, cells: CellSystem, first: dt_.date, last: dt_.date, window_days: int, k: int) -> DataFrame:
    """Items by day (`item_states`, with cells) and events (with cells) -> silver.geo_cells
    rows for every day of [first, last] (one day: first == last)."""
    return with_area(cell_base(items, events, cells, first, last, window_days, k), items, k)


def cell_base(items: DataFrame, events: DataFrame, cells: CellSystem, first: dt_.date, last: dt_.date, window_days: int, k: int) -> DataFrame:
    """geo_cells without the area columns: each cell's geometry, item statistics and
    activity per day (what `with_area` sums over each cell's neighbours)."""
    stats = cell_item_stats(items, k)
    activity = cell_activity(events, first, last, window_days)
    keys = stats.select("dt", "cell_id").unionByName(activity.select("dt", "cell_id")).distinct()
    # Centre and neighbours from one representative point of the cell (its items' or users').
    anchor = (
        items.select("cell_id", "lat", "lon")
        .unionByName(events.select("cell_id", F.col("user_lat").alias("lat"), F.col("user_lon").alias("lon")))
        .groupBy("cell_id")
        .agg(F.min(F.struct("lat", "lon")).alias("p"))
    )
    geometry = add_cells(
        anchor.select("cell_id", F.col("p.lat").alias("_lat"), F.col("p.lon").alias("_lon")),
        cells,
        "_lat",
        "_lon",
        cell="_cell",
        neighbours="neighbour_ids",
        center=("center_lat", "center_lon"),
    ).select("cell_id", "center_lat", "center_lon", "neighbour_ids")
    empty_histogram = F.array().cast(silver.HISTOGRAM)
    base = (
        keys.join(geometry, "cell_id")
        .join(stats, ["dt", "cell_id"], "left")
        .join(activity, ["dt", "cell_id"], "left")
        .select(
            F.lit(cells.name).alias("cell_system"),
            "cell_id",
            "center_lat",
            "center_lon",
            "neighbour_ids",
            F.coalesce("n_items", F.lit(0)).cast("long").alias("n_items"),
            F.coalesce("n_categories", F.lit(0)).cast("long").alias("n_categories"),
            F.coalesce("top_categories", empty_histogram).alias("top_categories"),
            F.coalesce("top_brands", empty_histogram).alias("top_brands"),
            F.col("price_median").cast("double").alias("price_median"),
            F.col("price_mean").cast("double").alias("price_mean"),
            F.coalesce("events_day", F.lit(0)).cast("long").alias("events_day"),
            F.coalesce("users_day", F.lit(0)).cast("long").alias("users_day"),
            F.coalesce("events_window", F.lit(0)).cast("long").alias("events_window"),
            F.coalesce("users_window", F.lit(0)).cast("long").alias("users_window"),
            F.coalesce("pays_window", F.lit(0)).cast("long").alias("pays_window"),
            F.coalesce("gmv_window", F.lit(0.0)).cast("double").alias("gmv_window"),
            F.lit(window_days).cast("int").alias("window_days"),
            "dt",
        )
    )
    return base


def with_area(base: DataFrame, items: DataFrame, k: int) -> DataFrame:
    """`cell_base` rows + items by day -> silver.geo_cells rows (the area columns added)."""
    empty_histogram = F.array().cast(silver.HISTOGRAM)
    area = area_stats(base, items, k)
    return base.join(area, ["dt", "cell_id"], "left").select(
        *[c for c in base.columns if c != "dt"],
        F.coalesce("area_n_items", F.lit(0)).cast("long").alias("area_n_items"),
        F.coalesce("area_top_categories", empty_histogram).alias("area_top_categories"),
        F.coalesce("area_top_brands", empty_histogram).alias("area_top_brands"),
        F.coalesce("area_events_window", F.lit(0)).cast("long").alias("area_events_window"),
        "dt",
    )


def cell_context(cells_df: DataFrame) -> DataFrame:
    """geo_cells -> (cell_id, the cell's context struct)."""
    return cells_df.select(
        "cell_id",
        F.struct(*[F.col(f.name) for f in silver.CELL_CONTEXT_FIELDS]).alias("context"),
    )


def item_geo(items: DataFrame, cells_df: DataFrame, cells: CellSystem, as_of: dt_.date) -> DataFrame:
    """Items as of the date (with cells) + geo_cells -> silver.item_geo rows."""
    context = cell_context(cells_df)
    own = items.join(
        cells_df.select("cell_id", "neighbour_ids", "area_n_items", "area_top_categories", "area_top_brands", "area_events_window"),
        "cell_id",
    ).join(context.withColumnRenamed("context", "cell"), "cell_id")
    # Neighbour contexts, in neighbour order; a cell with no items and no activity is
    # not in geo_cells and gets an all-zero context.
    exploded = own.select("source", "item_id", F.posexplode("neighbour_ids").alias("pos", "neighbour_id"))
    empty = F.struct(
        F.col("neighbour_id").alias("cell_id"),
        F.lit(0).cast("long").alias("n_items"),
        F.array().cast(silver.HISTOGRAM).alias("top_categories"),
        F.array().cast(silver.HISTOGRAM).alias("top_brands"),
        F.lit(0).cast("long").alias("events_window"),
        F.lit(0).cast("long").alias("users_window"),
        F.lit(None).cast("double").alias("price_median"),
    )
    neighbours = (
        exploded.join(context.withColumnRenamed("cell_id", "neighbour_id"), "neighbour_id", "left")
        .select("source", "item_id", "pos", F.coalesce("context", empty).alias("context"))
        .groupBy("source", "item_id")
        .agg(F.sort_array(F.collect_list(F.struct("pos", "context"))).alias("_n"))
        .select("source", "item_id", F.transform("_n", lambda s: s["context"]).alias("neighbours"))
    )
    return own.join(neighbours, ["source", "item_id"]).select(
        "source",
        "item_id",
        "category",
        "brand",
        "price",
        "title",
        "tags",
        "content",
        "lat",
        "lon",
        "n_obs",
        "first_seen",
        F.lit(cells.name).alias("cell_system"),
        "cell_id",
        "cell",
        "neighbours",
        "area_n_items",
        "area_top_categories",
        "area_top_brands",
        "area_events_window",
        F.lit(as_of).alias("dt"),
    )


# ---------------------------------------------------------------------------------------
# run


@dataclass
class GeoReport:
    dt: dt_.date
    cells: int
    items: int
    seconds: float
    table_versions: dict
    first: dt_.date | None = None  # a range's first day (None: one day)

    def to_dict(self) -> dict:
        return {
            "dt": self.dt.isoformat(),
            "first": (self.first or self.dt).isoformat(),
            "cells": self.cells,
            "items": self.items,
            "table_versions": self.table_versions,
            "seconds": round(self.seconds, 2),
        }

    def summary(self) -> str:
        span = f"{self.first} .. {self.dt}" if self.first and self.first != self.dt else f"{self.dt}"
        return f"geo context {span}: {self.cells:,} cells (on {self.dt}), {self.items:,} items in {self.seconds:.1f}s"


def run_geo(lake: Lake, as_of: dt_.date | str, config: GeoConfig = GeoConfig(), *, with_items: bool = True) -> GeoReport:
    """Compute and write silver.geo_cells and (with_items) silver.item_geo for one logical date."""
    as_of = as_date(as_of)
    return run_geo_range(lake, as_of, as_of, config, with_items=with_items)


def run_geo_range(
    lake: Lake,
    first: dt_.date | str,
    last: dt_.date | str,
    config: GeoConfig = GeoConfig(),
    *,
    with_items: bool = True,
    block_days: int | None = None,
    item_days_per_job: int = 1_000_000,
    item_days: set | None = None,
) -> GeoReport:
    """silver.geo_cells for every day of [first, last], one job per block of days (items
    as of each day, activity over each day's window: the same rows the daily job writes
    day by day), and with `with_items` silver.item_geo as of `last` (and as of each day of
    `item_days`: a repair rebuilds the days the daily run built). This is what
    corpus.cell_context needs for a range: the context of every day before a request.

    Blocks bound memory: a job holds (items x days of its block) item states, so the
    block is `item_days_per_job / items` days (at most 28; NYC's 34k venues: 29 -> 28 days,
    2.3 GB peak RSS, 0.5 s a day; one job per day: 4.8 s a day)."""
    started = time.perf_counter()
    first, last = as_date(first), as_date(last)
    if block_days is None and first == last:
        block_days = 1
    if block_days is None:
        n_items = lake.read(bronze.ITEMS).filter(F.col("dt") <= F.lit(last)).select("source", "item_id").distinct().count()
        block_days = max(1, min(28, item_days_per_job // max(n_items, 1)))
    wanted = set(item_days or ()) | ({last} if with_items else set())
    day, reports = first, []
    while day <= last:
        end = min(last, day + dt_.timedelta(days=block_days - 1))
        reports.append(_geo_block(lake, day, end, config, sorted(d for d in wanted if day <= d <= end)))
        day = end + dt_.timedelta(days=1)
    versions = {k: v for r in reports for k, v in r.table_versions.items()}
    return GeoReport(last, reports[-1].cells, reports[-1].items, time.perf_counter() - started, versions, first)


def _geo_block(lake: Lake, first: dt_.date, last: dt_.date, config: GeoConfig, item_days: list[dt_.date]) -> GeoReport:
    started = time.perf_counter()
    cells = config.cells()
    run = f"geo-{cells.name}-{first}-{last}"
    observations = lake.read(bronze.ITEMS).filter(F.col("dt") <= F.lit(last))
    items = lake.checkpoint(item_states(observations, first, last).transform(with_cells, cells=cells), f"{run}-items")
    lo = first - dt_.timedelta(days=config.window_days - 1)
    events = lake.checkpoint(
        lake.read(bronze.EVENTS, dt=(lo, last))
        .select("user_id", "action", "gmv", "user_lat", "user_lon", "dt")
        .transform(with_cells, cells=cells, lat="user_lat", lon="user_lon"),
        f"{run}-events",
    )
    where = f"cell_system = '{cells.name}'"
    try:
        # the base is read twice (each cell's own row, its neighbours' sums): computed once
        base = lake.checkpoint(cell_base(items, events, cells, first, last, config.window_days, config.top_k), f"{run}-base")
        cells_df = with_area(base, items, config.top_k)
        table_versions = {"silver.geo_cells": lake.write(cells_df, silver.GEO_CELLS, dt=(first, last), where=where)}
        for start, end in day_runs(item_days):  # item_geo of each of these days, one write per run of days
            written_cells = lake.read(silver.GEO_CELLS, dt=(start, end)).filter(F.col("cell_system") == cells.name)
            frames = [
                item_geo(items.filter(F.col("dt") == F.lit(d)).drop("dt"), written_cells.filter(F.col("dt") == F.lit(d)), cells, d)
                for d in (start + dt_.timedelta(days=k) for k in range((end - start).days + 1))
            ]
            table_versions["silver.item_geo"] = lake.write(frames, silver.ITEM_GEO, dt=(start, end), where=where)
    finally:
        lake.drop_checkpoints(run)
    n_cells = lake.read(silver.GEO_CELLS, dt=last).filter(F.col("cell_system") == cells.name).count()
    n_items = lake.read(silver.ITEM_GEO, dt=last).filter(F.col("cell_system") == cells.name).count() if last in item_days else 0
    return GeoReport(last, n_cells, n_items, time.perf_counter() - started, table_versions, first)
