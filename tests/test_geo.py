"""Geo context on a hand-made tiny city, every value worked out by hand."""

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from geosid.geo import CellConfig, GeohashCells
from geosid.jobs.geo import GeoConfig, run_geo
from geosid.schemas import bronze, silver

D = dt.date(2024, 6, 10)
CELLS = GeohashCells(6)
A = CELLS.cell_of(40.75, -73.98)
B = CELLS.neighbours(A)[2]  # east of A
A_LAT, A_LON = CELLS.center(A)
B_LAT, B_LON = CELLS.center(B)
C_LAT, C_LON = 41.5, -74.5  # far away, its own area


def _nullable(schema):
    return StructType([StructField(f.name, f.dataType, True) for f in schema.fields])


def _item(item_id, category, brand, price, lat, lon, day, title=None):
    seen = dt.datetime.combine(day, dt.time(9))
    return ("synthetic", item_id, None, None, category, brand, price, title, [], f"{title or category}", lat, lon, 1, seen, day)


def _event(n, user, lat, lon, day, action="watch", gmv=None):
    ts = dt.datetime.combine(day, dt.time(12, n % 60))
    return (f"e{n}", "synthetic", user, "x", action, ts, None, lat, lon, None, gmv, "f", n, day)


def write_city(spark, lake, i3_title=None):
    d = 0.0005  # metres-scale offsets, inside the cell
    items = [
        _item("i1", "coffee", "X", 30.0, A_LAT - d, A_LON, D - dt.timedelta(days=5)),
        _item("i1", "coffee", "X", 30.0, A_LAT + d, A_LON, D),  # median of the two days: the centre
        _item("i2", "coffee", "Y", 50.0, A_LAT, A_LON + d, D),
        _item("i3", "bakery", None, None, A_LAT, A_LON - d, D, title=i3_title),
        _item("i4", "hotpot", "X", 100.0, B_LAT, B_LON, D),
        _item("i5", "coffee", None, None, C_LAT, C_LON, D),
        _item("i6", "cinema", "Z", 60.0, A_LAT, A_LON, D + dt.timedelta(days=1)),  # the future
    ]
    events = [
        _event(1, "u1", A_LAT, A_LON, D),
        _event(2, "u1", A_LAT, A_LON, D),
        _event(3, "u2", A_LAT, A_LON, D, action="pay", gmv=10.0),
        _event(4, "u1", B_LAT, B_LON, D),
        _event(5, "u3", A_LAT, A_LON, D - dt.timedelta(days=3)),
        _event(6, "u4", A_LAT, A_LON, D + dt.timedelta(days=1)),  # the future
        _event(7, "u5", A_LAT, A_LON, D - dt.timedelta(days=40)),  # before the window
    ]
    days = (D - dt.timedelta(days=40), D + dt.timedelta(days=1))
    lake.write(spark.createDataFrame(items, _nullable(bronze.ITEMS.schema)), bronze.ITEMS, dt=days)
    lake.write(spark.createDataFrame(events, _nullable(bronze.EVENTS.schema)), bronze.EVENTS, dt=days)


def hist(*pairs):
    return [(name, n) for name, n in pairs]


def as_hist(rows):
    return [(r["name"], r["n"]) for r in rows]


def test_geo_cells_of_the_tiny_city(spark, lake):
    write_city(spark, lake)
    report = run_geo(lake, D, GeoConfig(window_days=28))
    cells = {r.cell_id: r for r in lake.read(silver.GEO_CELLS, dt=D).collect()}
    assert report.cells == 3 and set(cells) == {A, B, CELLS.cell_of(C_LAT, C_LON)}
    a = cells[A]
    assert (a.center_lat, a.center_lon) == pytest.approx((A_LAT, A_LON))
    assert a.neighbour_ids == CELLS.neighbours(A)
    assert (a.n_items, a.n_categories) == (3, 2)  # i6 is not known yet on D
    assert as_hist(a.top_categories) == hist(("coffee", 2), ("bakery", 1))
    assert as_hist(a.top_brands) == hist(("X", 1), ("Y", 1))
    assert (a.price_median, a.price_mean) == (40.0, 40.0)
    assert (a.events_day, a.users_day) == (3, 2)
    assert (a.events_window, a.users_window, a.pays_window, a.gmv_window) == (4, 3, 1, 10.0)
    assert a.area_n_items == 4 and a.area_events_window == 5
    assert as_hist(a.area_top_categories) == hist(("coffee", 2), ("bakery", 1), ("hotpot", 1))
    assert as_hist(a.area_top_brands) == hist(("X", 2), ("Y", 1))
    b = cells[B]
    assert (b.n_items, b.events_day, b.area_n_items) == (1, 1, 4)
    c = cells[CELLS.cell_of(C_LAT, C_LON)]
    assert (c.n_items, c.events_window, c.area_n_items, c.price_median) == (1, 0, 1, None)


def test_item_geo_joins_own_and_neighbour_contexts(spark, lake):
    write_city(spark, lake)
    report = run_geo(lake, D)
    items = {r.item_id: r for r in lake.read(silver.ITEM_GEO, dt=D).collect()}
    assert report.items == 5 and set(items) == {"i1", "i2", "i3", "i4", "i5"}
    i1 = items["i1"]
    assert (i1.lat, i1.lon) == pytest.approx((A_LAT, A_LON))  # median of its two days
    assert i1.n_obs == 2 and i1.first_seen == dt.datetime.combine(D - dt.timedelta(days=5), dt.time(9))
    assert i1.cell_id == A and i1.cell.n_items == 3
    assert [n.cell_id for n in i1.neighbours] == CELLS.neighbours(A)
    assert [n.n_items for n in i1.neighbours] == [0, 0, 1, 0, 0, 0, 0, 0]  # B lies east
    assert as_hist(i1.neighbours[2].top_categories) == hist(("hotpot", 1))
    assert i1.area_n_items == 4
    assert [n.n_items for n in items["i4"].neighbours][6] == 3  # A lies west of B


def test_rerun_is_identical(spark, lake):
    write_city(spark, lake)
    run_geo(lake, D)
    specs = (silver.GEO_CELLS, silver.ITEM_GEO)
    before = [lake.to_arrow(spec) for spec in specs]
    run_geo(lake, D)
    for spec, table in zip(specs, before):
        keys = [(k, "ascending") for k in spec.keys]
        assert lake.to_arrow(spec).sort_by(keys).equals(table.sort_by(keys)), spec.name


def test_h3_cells_behind_the_same_job(spark, lake):
    write_city(spark, lake)
    report = run_geo(lake, D, GeoConfig(cell_config=CellConfig(system="h3", resolution=8)))
    rows = lake.read(silver.ITEM_GEO, dt=D).filter(F.col("cell_system") == "h3r8").collect()
    assert report.items == 5 and len(rows) == 5
    assert all(len(r.neighbours) == 6 for r in rows)


def test_a_range_in_one_job_equals_the_days_one_by_one(spark, tmp_path):
    """run_geo_range writes, for every day, the rows the daily job writes: items as of the
    day (one moves and changes its title between days), activity over each day's window."""
    from geosid.jobs.geo import run_geo_range
    from geosid.lake import Lake

    days = [D - dt.timedelta(days=k) for k in (6, 5, 1, 0)]
    one_job, day_by_day = Lake(tmp_path / "range", spark), Lake(tmp_path / "days", spark)
    for lake in (one_job, day_by_day):
        write_city(spark, lake)
        extra = [_item("i1", "coffee", "X", 30.0, A_LAT + 0.01, A_LON, D - dt.timedelta(days=1), title="moved and renamed")]
        lake.write(spark.createDataFrame(extra, _nullable(bronze.ITEMS.schema)), bronze.ITEMS, dt=D - dt.timedelta(days=1), where="item_id = 'i1'")
    report = run_geo_range(one_job, days[0], D, GeoConfig(window_days=3), with_items=False)
    assert report.first == days[0] and report.cells > 0
    for day in [days[0] + dt.timedelta(days=k) for k in range((D - days[0]).days + 1)]:
        run_geo(day_by_day, day, GeoConfig(window_days=3), with_items=False)
        assert one_job.digest(silver.GEO_CELLS, dt=day) == day_by_day.digest(silver.GEO_CELLS, dt=day), day
    assert one_job.digest(silver.GEO_CELLS, dt=D)[0] >= 3
