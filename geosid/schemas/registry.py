"""Table specs: the one source of truth for every table's schema, partitioning and keys.

Data-quality suites are declared here too, next to the schema they check, as plain
data (`Check`); `geosid.jobs.quality` turns them into great-expectations objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyspark.sql.types import StructType


@dataclass(frozen=True)
class Check:
    """One declarative expectation.

    kind: not_null | between | in_set | unique | compound_unique | equal_columns.
    For `between`, `min_value`/`max_value`; for `in_set`, `values`; for
    `compound_unique`, `columns`; for `equal_columns`, `column` and `other`.
    A `sql` expression, when given, is computed as column `column` before checking
    (for derived checks such as "the event's date equals its partition").
    """

    kind: str
    column: str | None = None
    sql: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        target = self.column or ",".join(self.args.get("columns", []))
        extra = f" {self.args}" if self.args and self.kind != "compound_unique" else ""
        return f"{self.kind}({target}){extra}"


@dataclass(frozen=True)
class TableSpec:
    """A Delta table of the lake: `layer.name`, stored at `<lake>/<layer>/<name>`."""

    name: str
    schema: StructType
    partition_by: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    description: str = ""
    checks: tuple[Check, ...] = ()
    # Columns that say when, or at which table version, a row was written, not what it
    # holds (wall-clock times, table versions read): left out when two lakes' contents are
    # compared (`content_columns`).
    volatile: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        columns = set(self.schema.fieldNames())
        missing = [c for c in (*self.partition_by, *self.keys, *self.volatile) if c not in columns]
        if missing:
            raise ValueError(f"table {self.name}: partition/key columns {missing} are not in its schema")
        if "." not in self.name:
            raise ValueError(f"table name {self.name!r} must be layer.name")

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def relative_path(self) -> str:
        return f"{self.layer}/{self.short_name}"

    @property
    def columns(self) -> list[str]:
        return self.schema.fieldNames()

    @property
    def content_columns(self) -> list[str]:
        """The columns that say what a row holds (all but the volatile ones)."""
        return [c for c in self.columns if c not in self.volatile]


class UnknownTableError(KeyError):
    """A table name the registry does not know (or that is ambiguous); names the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown table"


class Registry:
    """All tables by full name (`bronze.events`) and by unique short name (`events`)."""

    def __init__(self, specs: list[TableSpec]):
        self._by_name: dict[str, TableSpec] = {}
        for spec in specs:
            if spec.name in self._by_name:
                raise ValueError(f"table {spec.name} registered twice")
            self._by_name[spec.name] = spec

    def __iter__(self):
        return iter(self._by_name.values())

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UnknownTableError:
            return False
        return True

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> TableSpec:
        if name in self._by_name:
            return self._by_name[name]
        matches = [s for s in self._by_name.values() if s.short_name == name or s.name.replace(".", "_") == name]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted(self._by_name))
        if not matches:
            raise UnknownTableError(f"unknown table {name!r}; known tables: {known}")
        raise UnknownTableError(f"table name {name!r} is ambiguous: {[m.name for m in matches]}")
