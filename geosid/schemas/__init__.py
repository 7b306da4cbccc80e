"""Every table's schema, partitioning, keys and data-quality suite."""

from geosid.schemas import bronze, corpus, index, ops, silver
from geosid.schemas.registry import Check, Registry, TableSpec, UnknownTableError

REGISTRY = Registry([*bronze.TABLES, *silver.TABLES, *index.TABLES, *corpus.TABLES, *ops.TABLES])

__all__ = ["REGISTRY", "Check", "Registry", "TableSpec", "UnknownTableError", "bronze", "corpus", "index", "ops", "silver"]
