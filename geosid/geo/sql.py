"""The cell systems as engine expressions: the same grid as `geosid.geo.geometry`, computed
by the engine itself.

GeoHash cells are plain Spark SQL (no Python UDF, identical on every engine): grid
indices, then interleaved bits spelled by lookups in a 32-letter table. H3 runs in a
vectorized UDF.
"""

# No `from __future__ import annotations` here: pandas_udf reads the real type hints.

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from geosid.geo.geometry import BASE32, NEIGHBOUR_STEPS, CellSystem, GeohashCells, H3Cells


def _interleaved_letters() -> str:
    """Base32 letters of the 5 bits a2 c1 a1 c0 a0, at index a * 4 + c: `a` is the 3-bit
    group of the coordinate leading a character, `c` the 2-bit group of the other."""
    letters = []
    for a in range(8):
        for c in range(4):
            value = (a >> 2 & 1) << 4 | (c >> 1 & 1) << 3 | (a >> 1 & 1) << 2 | (c & 1) << 1 | (a & 1)
            letters.append(BASE32[value])
    return "".join(letters)


_INTERLEAVED = _interleaved_letters()


def _lat_index(cells: GeohashCells, lat: Column) -> Column:
    n = 2**cells.lat_bits
    return F.least(F.greatest(F.floor((lat + 90.0) / 180.0 * n), F.lit(0)), F.lit(n - 1)).cast("bigint")


def _lon_index(cells: GeohashCells, lon: Column) -> Column:
    n = 2**cells.lon_bits
    return F.least(F.greatest(F.floor((lon + 180.0) / 360.0 * n), F.lit(0)), F.lit(n - 1)).cast("bigint")


def _spell(cells: GeohashCells, lat_i: Column, lon_i: Column) -> Column:
    """Spell grid indices in base32. A character holds 5 interleaved bits: 3 of the
    coordinate that leads it (longitude on even characters, latitude on odd ones) and 2
    of the other, so each character is one lookup in a 32-letter table."""
    chars = []
    for j in range(cells.precision):
        lon_done, lat_done = (5 * j + 1) // 2, (5 * j) // 2  # bits spent by earlier characters
        if j % 2 == 0:
            three = F.shiftright(lon_i, cells.lon_bits - lon_done - 3).bitwiseAND(F.lit(7))
            two = F.shiftright(lat_i, cells.lat_bits - lat_done - 2).bitwiseAND(F.lit(3))
        else:
            three = F.shiftright(lat_i, cells.lat_bits - lat_done - 3).bitwiseAND(F.lit(7))
            two = F.shiftright(lon_i, cells.lon_bits - lon_done - 2).bitwiseAND(F.lit(3))
        chars.append(F.substring(F.lit(_INTERLEAVED), (three * 4 + two + 1).cast("int"), 1))
    return F.concat(*chars)


def _add_geohash(df, cells: GeohashCells, lat, lon, cell, neighbours, center) -> DataFrame:
    # The grid indices are materialized as helper columns first: encoding refers to them
    # by name, which keeps the plan small (inlined, every one of the 5 x precision bits
    # would repeat the whole index expression).
    n_lat, n_lon = 2**cells.lat_bits, 2**cells.lon_bits
    li, lo = "_cell_lat_i", "_cell_lon_i"
    out = df.withColumn(li, _lat_index(cells, F.col(lat))).withColumn(lo, _lon_index(cells, F.col(lon)))
    helpers = [li, lo]
    out = out.withColumn(cell, _spell(cells, F.col(li), F.col(lo)))
    if neighbours is not None:
        ring = []
        for k, (d_lat, d_lon) in enumerate(NEIGHBOUR_STEPS):
            nli, nlo = f"_cell_n{k}_lat_i", f"_cell_n{k}_lon_i"
            out = out.withColumn(nli, F.col(li) + d_lat).withColumn(nlo, F.pmod(F.col(lo) + d_lon, F.lit(n_lon)))
            helpers += [nli, nlo]
            inside = (F.col(nli) >= 0) & (F.col(nli) < n_lat)
            ring.append(F.when(inside, _spell(cells, F.col(nli), F.col(nlo))))
        out = out.withColumn(neighbours, F.array_compact(F.array(*ring)))
    if center is not None:
        out = out.withColumn(center[0], F.lit(-90.0) + (F.col(li) + 0.5) * (180.0 / n_lat)).withColumn(
            center[1], F.lit(-180.0) + (F.col(lo) + 0.5) * (360.0 / n_lon)
        )
    return out.drop(*helpers)


def _h3_udfs(resolution: int):
    import pandas as pd  # lazy: imported inside the UDF: executors import it themselves
    from pyspark.sql.functions import pandas_udf  # lazy: the engine's client: loaded when a session is opened (or inside the UDF)

    @pandas_udf("string")
    def cell_udf(lat: pd.Series, lon: pd.Series) -> pd.Series:
        import h3  # lazy: optional: only the H3 cell system needs it (executors import it themselves)

        return pd.Series([h3.latlng_to_cell(a, b, resolution) for a, b in zip(lat, lon)])

    @pandas_udf("array<string>")
    def ring_udf(cell: pd.Series) -> pd.Series:
        import h3  # lazy: optional: only the H3 cell system needs it (executors import it themselves)

        return pd.Series([sorted(h3.grid_ring(c, 1)) for c in cell])

    @pandas_udf("double")
    def center_lat_udf(cell: pd.Series) -> pd.Series:
        import h3  # lazy: optional: only the H3 cell system needs it (executors import it themselves)

        return pd.Series([h3.cell_to_latlng(c)[0] for c in cell])

    @pandas_udf("double")
    def center_lon_udf(cell: pd.Series) -> pd.Series:
        import h3  # lazy: optional: only the H3 cell system needs it (executors import it themselves)

        return pd.Series([h3.cell_to_latlng(c)[1] for c in cell])

    return cell_udf, ring_udf, center_lat_udf, center_lon_udf


def _add_h3(df, cells: H3Cells, lat, lon, cell, neighbours, center) -> DataFrame:
    cell_udf, ring_udf, center_lat_udf, center_lon_udf = _h3_udfs(cells.resolution)
    out = df.withColumn(cell, cell_udf(F.col(lat), F.col(lon)))
    if neighbours is not None:
        out = out.withColumn(neighbours, ring_udf(F.col(cell)))
    if center is not None:
        out = out.withColumn(center[0], center_lat_udf(F.col(cell))).withColumn(center[1], center_lon_udf(F.col(cell)))
    return out


def add_cells(
    df: DataFrame,
    cells: CellSystem,
    lat: str,
    lon: str,
    cell: str = "cell_id",
    neighbours: str | None = None,
    center: tuple[str, str] | None = None,
) -> DataFrame:
    """Add the cell id of (lat, lon), optionally its neighbour ids (in the system's
    neighbour order) and its centre (two columns)."""
    if isinstance(cells, GeohashCells):
        return _add_geohash(df, cells, lat, lon, cell, neighbours, center)
    if isinstance(cells, H3Cells):
        return _add_h3(df, cells, lat, lon, cell, neighbours, center)
    raise TypeError(f"not a cell system: {cells!r}")
