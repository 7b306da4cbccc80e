"""corpus.cell_context: per day, the trailing-window features of every cell, from
silver.geo_cells.
"""

from __future__ import annotations

import datetime as dt_
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.geo.geometry import CellSystem
from geosid.lake import Lake, as_date
from geosid.schemas import corpus, silver


def cell_features(geo_cells: DataFrame) -> DataFrame:
    """silver.geo_cells -> the features vector in CELL_FEATURES order."""
    log = lambda c: F.log1p(F.greatest(F.coalesce(F.col(c).cast("double"), F.lit(0.0)), F.lit(0.0)))
    values = [
        log("n_items"),
        log("n_categories"),
        log("events_day"),
        log("events_window"),
        log("users_window"),
        log("pays_window"),
        log("gmv_window"),
        log("price_median"),
        F.col("price_median").isNotNull().cast("double"),
        log("area_n_items"),
        log("area_events_window"),
    ]
    assert len(values) == len(corpus.CELL_FEATURES), "features and CELL_FEATURES disagree"
    return geo_cells.withColumn("features", F.array(*[v.cast("float") for v in values]))


def cell_context_rows(geo_cells: DataFrame, day_to_snapshot: DataFrame) -> DataFrame:
    """silver.geo_cells snapshots + (dt, context_dt) pairs -> corpus.cell_context rows."""
    snapshots = geo_cells.withColumnRenamed("dt", "context_dt").transform(cell_features)
    return snapshots.join(day_to_snapshot, "context_dt").select(
        "cell_system",
        "cell_id",
        "context_dt",
        "neighbour_ids",
        F.col("n_items").cast("int").alias("n_items"),
        "top_categories",
        "top_brands",
        "area_top_categories",
        "features",
        "dt",
    )


@dataclass
class CellContextReport:
    first: dt_.date
    last: dt_.date
    rows: int
    days_without_context: list
    table_version: int
    seconds: float

    def summary(self) -> str:
        missing = f"; {len(self.days_without_context)} day(s) with no earlier geo snapshot" if self.days_without_context else ""
        return f"cell context {self.first}..{self.last}: {self.rows:,} rows{missing} in {self.seconds:.1f}s"


def build_cell_context(lake: Lake, first, last, cells: CellSystem) -> CellContextReport:
    """corpus.cell_context for [first, last]: each day takes the latest silver.geo_cells
    snapshot strictly before it."""
    started = time.perf_counter()
    first, last = as_date(first), as_date(last)
    geo = lake.read(silver.GEO_CELLS).filter((F.col("cell_system") == cells.name) & (F.col("dt") < F.lit(last)))
    snapshots = sorted(r["dt"] for r in geo.select("dt").distinct().collect())
    pairs, missing = [], []
    day = first
    while day <= last:
        earlier = [s for s in snapshots if s < day]
        if earlier:
            pairs.append((day, earlier[-1]))
        else:
            missing.append(day)
        day += dt_.timedelta(days=1)
    if pairs:
        rows = cell_context_rows(geo, lake.spark.createDataFrame(pairs, "dt date, context_dt date"))
    else:  # still replace the days: a re-run after a snapshot was removed must not keep stale rows
        rows = lake.spark.createDataFrame([], corpus.CELL_CONTEXT.schema)
    where = f"cell_system = '{cells.name}'"
    table_version = lake.write(rows, corpus.CELL_CONTEXT, dt=(first, last), where=where)
    n = lake.read(corpus.CELL_CONTEXT, dt=(first, last)).filter(where).count()
    return CellContextReport(first, last, n, missing, table_version, time.perf_counter() - started)
