"""geosid: offline batch data-and-index system for geo-aware generative recommendation."""

__version__ = "0.1.0"
