"""Cells, neighbours and distances: pure geometry shared by jobs, embedding and trainer."""

from geosid.geo.cells import (
    GeohashCells,
    H3Cells,
    cell_system,
    haversine_km,
    haversine_km_expr,
)

__all__ = ["GeohashCells", "H3Cells", "cell_system", "haversine_km", "haversine_km_expr"]
