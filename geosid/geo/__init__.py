"""Cells, neighbours and distances.

`geosid.geo.geometry` is numpy only (imported by everything); `geosid.geo.sql` is the same
grid as engine expressions (imported by jobs). Importing this package never imports an
engine.
"""

from geosid.geo.geometry import CellConfig, CellSystem, GeohashCells, H3Cells, cells_from_name, haversine_km, offset_km

__all__ = ["CellConfig", "CellSystem", "GeohashCells", "H3Cells", "cells_from_name", "haversine_km", "offset_km"]
