"""Cells and neighbours against independent computations (pygeohash, cell geometry, h3)."""

import numpy as np
import pygeohash as pgh
import pytest

from geosid.geo import GeohashCells, H3Cells, haversine_km
from geosid.geo.sql import add_cells

RNG = np.random.default_rng(42)


def geometric_neighbours(cell: str) -> set[str]:
    """The cells at Chebyshev distance 1, from cell geometry alone: step one cell size
    from the centre in each direction, wrap longitude, stop at the poles, re-encode."""
    exact = pgh.decode_exactly(cell)
    lat, lon, dlat, dlon = exact.latitude, exact.longitude, 2 * exact.latitude_error, 2 * exact.longitude_error
    out = set()
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            if sy == sx == 0:
                continue
            nlat = lat + sy * dlat
            if not -90 < nlat < 90:
                continue
            nlon = (lon + sx * dlon + 180.0) % 360.0 - 180.0
            out.add(pgh.encode(nlat, nlon, precision=len(cell)))
    return out


def sample_points(n: int) -> tuple[np.ndarray, np.ndarray]:
    lat = RNG.uniform(-89.99, 89.99, n)
    lon = RNG.uniform(-179.99, 179.99, n)
    # the hard places: next to the antimeridian and in the polar rows
    lat[:40] = RNG.uniform(-60, 60, 40)
    lon[:20] = RNG.uniform(179.9, 179.99999, 20)
    lon[20:40] = RNG.uniform(-179.99999, -179.9, 20)
    lat[40:50] = RNG.uniform(89.996, 89.99999, 10)  # the top row of precision 6 starts at ~89.9945
    lat[50:60] = RNG.uniform(-89.99999, -89.996, 10)
    return lat, lon


@pytest.mark.parametrize("precision", [4, 6, 7])
def test_cell_ids_match_pygeohash(precision):
    cells = GeohashCells(precision)
    lat, lon = sample_points(2000)
    ours = cells.cell_of(lat, lon)
    theirs = np.array([pgh.encode(a, b, precision=precision) for a, b in zip(lat, lon)])
    assert (ours == theirs).mean() > 0.999  # float rounding may split a point lying on a cell edge
    assert all(cells.decode_indices(c) == (a, b) for c, a, b in zip(ours[:50], *cells.indices(lat[:50], lon[:50])))


def test_neighbours_of_1000_random_cells_are_the_chebyshev_ring(spark):
    cells = GeohashCells(6)
    lat, lon = sample_points(1000)
    df = spark.createDataFrame([(float(a), float(b)) for a, b in zip(lat, lon)], "lat double, lon double")
    rows = add_cells(df, cells, "lat", "lon", cell="cell", neighbours="ring").collect()
    assert len(rows) == 1000
    polar = 0
    for row in rows:
        assert row.cell == cells.cell_of(row.lat, row.lon)  # engine == numpy
        expected = geometric_neighbours(row.cell)
        assert set(row.ring) == expected, row.cell
        assert row.ring == cells.neighbours(row.cell)  # same order in SQL and Python
        assert len(row.ring) == len(set(row.ring)) == (8 if len(expected) == 8 else 5)
        polar += len(expected) == 5
        # pygeohash's own adjacency agrees on the edge neighbours (diagonals are two steps)
        for direction in ("left", "right"):
            assert pgh.get_adjacent(row.cell, direction) in row.ring
    assert polar == 20  # the polar rows were exercised


def test_antimeridian_and_pole_cases():
    cells = GeohashCells(6)
    east = cells.cell_of(10.0, 179.999)
    west = cells.cell_of(10.0, -179.999)
    assert west in cells.neighbours(east) and east in cells.neighbours(west)
    north = cells.cell_of(89.9999, 0.0)
    ring = cells.neighbours(north)
    assert len(ring) == 5
    assert all(cells.center(c)[0] < cells.center(north)[0] + 1e-9 for c in ring)


def test_cell_center_is_inside_the_cell(spark):
    cells = GeohashCells(6)
    lat, lon = sample_points(200)
    df = spark.createDataFrame([(float(a), float(b)) for a, b in zip(lat, lon)], "lat double, lon double")
    centers = add_cells(df, cells, "lat", "lon", center=("clat", "clon")).select("clat", "clon").collect()
    for (a, b), (clat, clon) in zip(zip(lat, lon), centers):
        assert cells.cell_of(clat, clon) == cells.cell_of(a, b)
        assert (clat, clon) == pytest.approx(cells.center(cells.cell_of(a, b)))


def test_h3_cells_behind_the_same_interface(spark):
    import h3

    cells = H3Cells(8)
    df = spark.createDataFrame([(40.75, -73.98), (10.0, 179.999)], "lat double, lon double")
    rows = add_cells(df, cells, "lat", "lon", cell="cell", neighbours="ring").collect()
    for row, (a, b) in zip(rows, [(40.75, -73.98), (10.0, 179.999)]):
        assert row.cell == h3.latlng_to_cell(a, b, 8)
        assert set(row.ring) == set(h3.grid_ring(row.cell, 1)) and len(row.ring) == 6
        assert all(h3.grid_distance(row.cell, n) == 1 for n in row.ring)


def test_haversine_known_distance():
    # JFK -> LAX, about 3,974 km
    assert haversine_km(40.6413, -73.7781, 33.9416, -118.4085) == pytest.approx(3974, rel=0.005)
