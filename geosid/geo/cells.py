"""Cell systems: GeoHash (default) and H3, behind one interface.

GeoHash cells are computed by the engine itself: a cell is a pair of integer grid
indices (lat_i, lon_i) whose bits are interleaved and spelled in base32, all of which is
plain Spark SQL (no Python UDF, identical on every engine). Neighbours are the grid
cells at Chebyshev distance 1: longitude wraps across the antimeridian; there is nothing
beyond a pole, so a cell of the first or last latitude row has 5 neighbours, not 8.

Neighbour order: N, NE, E, SE, S, SW, W, NW (clockwise from north).

H3 (`h3` library, resolution configurable) computes cells in a vectorized UDF; its
neighbours are the 6 cells of the first ring (5 around a pentagon).
"""

# No `from __future__ import annotations` here: pandas_udf reads the real type hints.
import math
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, functions as F

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
# (d_lat, d_lon) in grid steps, clockwise from north.
NEIGHBOUR_STEPS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
EARTH_RADIUS_KM = 6371.0088


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


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km (numpy arrays or floats)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def haversine_km_expr(lat1: Column, lon1: Column, lat2: Column, lon2: Column) -> Column:
    """Great-circle distance in km as a Spark expression."""
    rad = math.pi / 180.0
    h = F.pow(F.sin((lat2 - lat1) * rad / 2), 2) + F.cos(lat1 * rad) * F.cos(lat2 * rad) * F.pow(
        F.sin((lon2 - lon1) * rad / 2), 2
    )
    return F.lit(2 * EARTH_RADIUS_KM) * F.asin(F.sqrt(F.least(F.greatest(h, F.lit(0.0)), F.lit(1.0))))


@dataclass(frozen=True)
class GeohashCells:
    """GeoHash cells of a fixed precision (6: about 1.2 km x 0.6 km)."""

    precision: int = 6

    def __post_init__(self):
        if not 1 <= self.precision <= 12:
            raise ValueError(f"geohash precision must be 1..12, got {self.precision}")

    @property
    def name(self) -> str:
        return f"geohash{self.precision}"

    @property
    def bits(self) -> int:
        return 5 * self.precision

    @property
    def lon_bits(self) -> int:
        return (self.bits + 1) // 2  # bits alternate starting with longitude

    @property
    def lat_bits(self) -> int:
        return self.bits // 2

    # ---- the grid, as Spark expressions -------------------------------------------------

    def lat_index_expr(self, lat: Column) -> Column:
        n = 2**self.lat_bits
        return F.least(F.greatest(F.floor((lat + 90.0) / 180.0 * n), F.lit(0)), F.lit(n - 1)).cast("bigint")

    def lon_index_expr(self, lon: Column) -> Column:
        n = 2**self.lon_bits
        return F.least(F.greatest(F.floor((lon + 180.0) / 360.0 * n), F.lit(0)), F.lit(n - 1)).cast("bigint")

    def encode_indices_expr(self, lat_i: Column, lon_i: Column) -> Column:
        """Spell grid indices in base32. A character holds 5 interleaved bits: 3 of the
        coordinate that leads it (longitude on even characters, latitude on odd ones)
        and 2 of the other, so each character is one lookup in a 32-letter table."""
        chars = []
        for j in range(self.precision):
            lon_done, lat_done = (5 * j + 1) // 2, (5 * j) // 2  # bits spent by earlier characters
            if j % 2 == 0:
                three = F.shiftright(lon_i, self.lon_bits - lon_done - 3).bitwiseAND(F.lit(7))
                two = F.shiftright(lat_i, self.lat_bits - lat_done - 2).bitwiseAND(F.lit(3))
            else:
                three = F.shiftright(lat_i, self.lat_bits - lat_done - 3).bitwiseAND(F.lit(7))
                two = F.shiftright(lon_i, self.lon_bits - lon_done - 2).bitwiseAND(F.lit(3))
            chars.append(F.substring(F.lit(_INTERLEAVED), (three * 4 + two + 1).cast("int"), 1))
        return F.concat(*chars)

    def add_cells(
        self,
        df: DataFrame,
        lat: str,
        lon: str,
        cell: str = "cell_id",
        neighbours: str | None = None,
        center: tuple[str, str] | None = None,
    ) -> DataFrame:
        """Add the cell id of (lat, lon), optionally its neighbour ids and its centre.

        The grid indices are materialized as helper columns first: encoding refers to
        them by name, which keeps the plan small (inlined, every one of the 5 x precision
        bits would repeat the whole index expression).
        """
        n_lat, n_lon = 2**self.lat_bits, 2**self.lon_bits
        li, lo = "_cell_lat_i", "_cell_lon_i"
        out = df.withColumn(li, self.lat_index_expr(F.col(lat))).withColumn(lo, self.lon_index_expr(F.col(lon)))
        helpers = [li, lo]
        out = out.withColumn(cell, self.encode_indices_expr(F.col(li), F.col(lo)))
        if neighbours is not None:
            ring = []
            for k, (d_lat, d_lon) in enumerate(NEIGHBOUR_STEPS):
                nli, nlo = f"_cell_n{k}_lat_i", f"_cell_n{k}_lon_i"
                out = out.withColumn(nli, F.col(li) + d_lat).withColumn(nlo, F.pmod(F.col(lo) + d_lon, F.lit(n_lon)))
                helpers += [nli, nlo]
                inside = (F.col(nli) >= 0) & (F.col(nli) < n_lat)
                ring.append(F.when(inside, self.encode_indices_expr(F.col(nli), F.col(nlo))))
            out = out.withColumn(neighbours, F.array_compact(F.array(*ring)))
        if center is not None:
            out = out.withColumn(center[0], F.lit(-90.0) + (F.col(li) + 0.5) * (180.0 / n_lat)).withColumn(
                center[1], F.lit(-180.0) + (F.col(lo) + 0.5) * (360.0 / n_lon)
            )
        return out.drop(*helpers)

    # ---- the same grid in numpy / Python -------------------------------------------------

    def indices(self, lat, lon) -> tuple[np.ndarray, np.ndarray]:
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        n_lat, n_lon = 2**self.lat_bits, 2**self.lon_bits
        lat_i = np.clip(np.floor((lat + 90.0) / 180.0 * n_lat), 0, n_lat - 1).astype(np.int64)
        lon_i = np.clip(np.floor((lon + 180.0) / 360.0 * n_lon), 0, n_lon - 1).astype(np.int64)
        return lat_i, lon_i

    def encode_indices(self, lat_i, lon_i) -> np.ndarray:
        lat_i = np.asarray(lat_i, dtype=np.int64)
        lon_i = np.asarray(lon_i, dtype=np.int64)
        code = np.zeros(lat_i.shape, dtype=np.int64)
        for position in range(self.bits):
            k = position // 2
            if position % 2 == 0:
                bit = (lon_i >> (self.lon_bits - 1 - k)) & 1
            else:
                bit = (lat_i >> (self.lat_bits - 1 - k)) & 1
            code = (code << 1) | bit
        alphabet = np.array(list(BASE32))
        chars = [alphabet[(code >> (5 * (self.precision - 1 - j))) & 31] for j in range(self.precision)]
        return np.array(["".join(t) for t in zip(*chars)]) if code.ndim else "".join(c for c in chars)

    def cell_of(self, lat, lon):
        """Cell id(s) of points (floats or arrays)."""
        return self.encode_indices(*self.indices(lat, lon))

    def decode_indices(self, cell: str) -> tuple[int, int]:
        if len(cell) != self.precision:
            raise ValueError(f"{cell!r} is not a geohash of precision {self.precision}")
        code = 0
        for char in cell:
            index = BASE32.find(char)
            if index < 0:
                raise ValueError(f"{cell!r} holds {char!r}, not a geohash character")
            code = (code << 5) | index
        lat_i = lon_i = 0
        for position in range(self.bits):
            bit = (code >> (self.bits - 1 - position)) & 1
            if position % 2 == 0:
                lon_i = (lon_i << 1) | bit
            else:
                lat_i = (lat_i << 1) | bit
        return lat_i, lon_i

    def neighbours(self, cell: str) -> list[str]:
        lat_i, lon_i = self.decode_indices(cell)
        n_lat, n_lon = 2**self.lat_bits, 2**self.lon_bits
        out = []
        for d_lat, d_lon in NEIGHBOUR_STEPS:
            if 0 <= lat_i + d_lat < n_lat:
                out.append(str(self.encode_indices(lat_i + d_lat, (lon_i + d_lon) % n_lon)))
        return out

    def center(self, cell: str) -> tuple[float, float]:
        lat_i, lon_i = self.decode_indices(cell)
        return (-90.0 + (lat_i + 0.5) * 180.0 / 2**self.lat_bits, -180.0 + (lon_i + 0.5) * 360.0 / 2**self.lon_bits)


@dataclass(frozen=True)
class H3Cells:
    """H3 hexagons (resolution 8: about 0.74 km^2), computed in a vectorized UDF."""

    resolution: int = 8

    def __post_init__(self):
        if not 0 <= self.resolution <= 15:
            raise ValueError(f"h3 resolution must be 0..15, got {self.resolution}")

    @property
    def name(self) -> str:
        return f"h3r{self.resolution}"

    def cell_of(self, lat, lon):
        import h3

        if np.ndim(lat) == 0:
            return h3.latlng_to_cell(float(lat), float(lon), self.resolution)
        return np.array([h3.latlng_to_cell(a, b, self.resolution) for a, b in zip(np.asarray(lat), np.asarray(lon))])

    def neighbours(self, cell: str) -> list[str]:
        import h3

        return sorted(h3.grid_ring(cell, 1))

    def center(self, cell: str) -> tuple[float, float]:
        import h3

        return h3.cell_to_latlng(cell)

    def _udfs(self):
        import pandas as pd
        from pyspark.sql.functions import pandas_udf

        resolution = self.resolution

        @pandas_udf("string")
        def cell_udf(lat: pd.Series, lon: pd.Series) -> pd.Series:
            import h3

            return pd.Series([h3.latlng_to_cell(a, b, resolution) for a, b in zip(lat, lon)])

        @pandas_udf("array<string>")
        def ring_udf(cell: pd.Series) -> pd.Series:
            import h3

            return pd.Series([sorted(h3.grid_ring(c, 1)) for c in cell])

        @pandas_udf("double")
        def center_lat_udf(cell: pd.Series) -> pd.Series:
            import h3

            return pd.Series([h3.cell_to_latlng(c)[0] for c in cell])

        @pandas_udf("double")
        def center_lon_udf(cell: pd.Series) -> pd.Series:
            import h3

            return pd.Series([h3.cell_to_latlng(c)[1] for c in cell])

        return cell_udf, ring_udf, center_lat_udf, center_lon_udf

    def add_cells(
        self,
        df: DataFrame,
        lat: str,
        lon: str,
        cell: str = "cell_id",
        neighbours: str | None = None,
        center: tuple[str, str] | None = None,
    ) -> DataFrame:
        """Same contract as GeohashCells.add_cells; neighbours are the first H3 ring."""
        cell_udf, ring_udf, center_lat_udf, center_lon_udf = self._udfs()
        out = df.withColumn(cell, cell_udf(F.col(lat), F.col(lon)))
        if neighbours is not None:
            out = out.withColumn(neighbours, ring_udf(F.col(cell)))
        if center is not None:
            out = out.withColumn(center[0], center_lat_udf(F.col(cell))).withColumn(center[1], center_lon_udf(F.col(cell)))
        return out


CellSystem = GeohashCells | H3Cells


def cell_system(kind: str = "geohash", precision: int = 6, resolution: int = 8) -> CellSystem:
    """The configured cell system: "geohash" (precision) or "h3" (resolution)."""
    if kind == "geohash":
        return GeohashCells(precision)
    if kind == "h3":
        return H3Cells(resolution)
    raise ValueError(f"cell system must be 'geohash' or 'h3', got {kind!r}")
