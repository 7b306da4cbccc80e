"""The engine side of reading the lake: a table (at a version, a reader's pinned one, or
the latest) as an engine DataFrame, and SQL views over every table. A mixin of `Lake` (it
uses the lake's `spec`, `path`, `exists`, `reader`, `version_to_read` and `spark`)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from urllib.parse import unquote

from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.errors import InvalidRequestError, NotFoundError
from geosid.lake.commit import HIVE_NULL
from geosid.lake.dates import DateLike, DateRange, partition_predicate
from geosid.schemas import TableSpec


class EngineReads:
    def read(
        self,
        table: str | TableSpec,
        version: int | None = None,
        dt: DateLike | DateRange | None = None,
    ) -> DataFrame:
        """The table (at `version` if given), optionally restricted to a day or day range."""
        spark = self._require_spark()
        spec = self.spec(table)
        if not self.exists(spec):
            raise NotFoundError(f"table {spec.name} does not exist under {self.root}: run the step that writes it first")
        version = self.version_to_read(spec, version)
        if self.reader == "files":
            df = self._read_files(spec, version)
        elif not self._time_travels(spec, version):
            df = self._read_old_version(spec, version)
        else:
            reader = spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", int(version))
            df = reader.load(self.path(spec))
        if dt is not None:
            if not spec.partition_by:
                raise InvalidRequestError(f"{spec.name} is not partitioned; cannot filter by dt")
            df = df.filter(partition_predicate(spec.partition_by[0], dt))
        present = set(df.columns)
        # A column the registry added after this table (or version) was written reads as null.
        return df.select(*[F.col(f.name) if f.name in present else F.lit(None).cast(f.dataType).alias(f.name) for f in spec.schema.fields])

    def _read_files(self, spec: TableSpec, version: int | None) -> DataFrame:
        """The snapshot's data files (listed by delta-rs from the Delta log) read as Parquet
        by the engine, for engines without a Delta reader (JVM Spark without delta-spark,
        e.g. a standalone cluster). Partition values come from the Hive-style folders
        delta-rs writes; the registered schema is imposed, so columns a file lacks (added
        later) read as null."""

        spark = self._require_spark()
        files = DeltaTable(self.path(spec), version=version).file_uris()
        schema = spec.schema
        if not files:
            return spark.createDataFrame([], schema)
        return spark.read.schema(schema).option("basePath", self.path(spec)).parquet(*files)

    def _read_old_version(self, spec: TableSpec, version: int) -> DataFrame:
        """A version's files read by Sail, which reads a file list neither with an imposed
        nested schema nor with Hive partition columns: per partition, its files with their
        own (merged) schemas and the partition values as literals, cast to the registered
        types. For versions Sail's Delta reader cannot load (`_time_travels`)."""
        spark = self._require_spark()
        handle = DeltaTable(self.path(spec), version=version)
        groups: dict[tuple, list[str]] = {}
        for uri, values in zip(handle.file_uris(), handle.get_add_actions(flatten=True).column("path").to_pylist()):
            local = "://" not in uri or uri.startswith("file://")
            if local and not Path(unquote(uri.removeprefix("file://"))).exists():
                raise NotFoundError(f"version {version} of {spec.name} is no longer readable: maintenance removed its files")
            groups.setdefault(tuple(self._partition_values(spec, values)), []).append(uri)
        fields = {f.name: f for f in spec.schema.fields}
        parts = []
        for values, uris in sorted(groups.items(), key=lambda kv: str(kv[0])):
            df = spark.read.option("mergeSchema", "true").parquet(*uris)
            for column, value in zip(spec.partition_by, values):
                df = df.withColumn(column, F.lit(value).cast(fields[column].dataType))
            present = set(df.columns)
            parts.append(
                df.select(
                    *[F.col(f.name).cast(f.dataType) if f.name in present else F.lit(None).cast(f.dataType).alias(f.name) for f in spec.schema.fields]
                )
            )
        if not parts:
            return spark.createDataFrame([], spec.schema)
        return functools.reduce(DataFrame.unionByName, parts)

    @staticmethod
    def _partition_values(spec: TableSpec, relative: str) -> list[str | None]:
        """The partition values of a data file from its Hive folders (`dt=2024-06-01/...`)."""
        found = dict(part.split("=", 1) for part in unquote(relative).split("/")[:-1] if "=" in part)
        return [None if found.get(c) in (None, HIVE_NULL) else found[c] for c in spec.partition_by]

    def _time_travels(self, spec: TableSpec, version: int | None) -> bool:
        """Whether the engine's own Delta reader can read `version`: Sail (0.7) cannot load a
        version older than the table's last checkpoint (it replays from version 0), which
        a reader pinned before maintenance asks for; those read the version's files."""
        if version is None:
            return True
        marker = Path(self.path(spec)) / "_delta_log" / "_last_checkpoint"
        try:
            return int(json.loads(marker.read_text())["version"]) <= version
        except (FileNotFoundError, ValueError, KeyError):
            return True

    def register_views(self) -> list[str]:
        """Temp views for SQL: each table under its short name and as layer_name."""
        spark = self._require_spark()
        names = []
        for spec in self.existing_tables():
            pinned = self.reader == "files" or self.version_to_read(spec) is not None
            df = self.read(spec) if pinned else spark.read.format("delta").load(self.path(spec))
            for view in (spec.short_name, spec.name.replace(".", "_")):
                df.createOrReplaceTempView(view)
                names.append(view)
        return names
