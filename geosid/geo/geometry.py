"""Cell systems and distances in numpy: GeoHash (default) and H3 behind one interface.

This module never imports an engine: jobs, the trainer, the synthetic world and the
quantizers all use it. The same GeoHash grid written as Spark SQL lives in
`geosid.geo.sql` and agrees with this one cell for cell (tested).

A GeoHash cell is a pair of integer grid indices (lat_i, lon_i) whose bits are
interleaved and spelled in base32. Neighbours are the grid cells at Chebyshev
distance 1: longitude wraps across the antimeridian; there is nothing beyond a pole, so
a cell of the first or last latitude row has 5 neighbours, not 8.
Neighbour order: N, NE, E, SE, S, SW, W, NW (clockwise from north).

H3 (`h3` library, resolution configurable): neighbours are the 6 cells of the first ring
(5 around a pentagon), sorted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
# (d_lat, d_lon) in grid steps, clockwise from north.
NEIGHBOUR_STEPS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
EARTH_RADIUS_KM = 6371.0088
KM_PER_DEG_LAT = 111.32


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km (numpy arrays or floats, broadcast)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def offset_km(lat, lon, east_km, north_km):
    """Move points by (east, north) kilometres (flat-earth step, fine for city scales)."""
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    new_lat = lat + np.asarray(north_km) / KM_PER_DEG_LAT
    new_lon = lon + np.asarray(east_km) / (KM_PER_DEG_LAT * np.cos(np.radians(lat)))
    return new_lat, new_lon


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

    def id_pattern(self) -> str:
        """A regex every cell id of this system matches."""
        return f"^[{BASE32}]{{{self.precision}}}$"


@dataclass(frozen=True)
class H3Cells:
    """H3 hexagons (resolution 8: about 0.74 km^2)."""

    resolution: int = 8

    def __post_init__(self):
        if not 0 <= self.resolution <= 15:
            raise ValueError(f"h3 resolution must be 0..15, got {self.resolution}")

    @property
    def name(self) -> str:
        return f"h3r{self.resolution}"

    def cell_of(self, lat, lon):
        import h3  # lazy: optional: only the H3 cell system needs it (executors import it themselves)

        if np.ndim(lat) == 0:
            return h3.latlng_to_cell(float(lat), float(lon), self.resolution)
        return np.array([h3.latlng_to_cell(a, b, self.resolution) for a, b in zip(np.asarray(lat), np.asarray(lon))])

    def neighbours(self, cell: str) -> list[str]:
        import h3  # lazy: optional: only the H3 cell system needs it (executors import it themselves)

        return sorted(h3.grid_ring(cell, 1))

    def center(self, cell: str) -> tuple[float, float]:
        import h3  # lazy: optional: only the H3 cell system needs it (executors import it themselves)

        return h3.cell_to_latlng(cell)

    def id_pattern(self) -> str:
        return "^8[0-9a-f]{14}$"


CellSystem = GeohashCells | H3Cells


class CellConfig(BaseModel):
    """Which cells: the one declaration of the cell settings (Settings, geo context and the
    corpus all hold one of these)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    system: Literal["geohash", "h3"] = "geohash"
    precision: int = Field(default=6, ge=1, le=12, description="geohash precision")
    resolution: int = Field(default=8, ge=0, le=15, description="h3 resolution")

    def cells(self) -> CellSystem:
        return GeohashCells(self.precision) if self.system == "geohash" else H3Cells(self.resolution)

    @property
    def name(self) -> str:
        return self.cells().name

    def to_record(self) -> dict:
        """As a build records it (`ops.builds.params`)."""
        return {"cells": self.model_dump()}

    @classmethod
    def from_record(cls, params: dict) -> CellConfig:
        return cls(**params["cells"])


_NAME = re.compile(r"^(geohash(?P<precision>\d+)|h3r(?P<resolution>\d+))$")


def cells_from_name(name: str) -> CellSystem:
    """The cell system a table records (`geohash6`, `h3r8`)."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"unknown cell system {name!r}; expected geohash<precision> or h3r<resolution>")
    if match.group("precision"):
        return GeohashCells(int(match.group("precision")))
    return H3Cells(int(match.group("resolution")))
