"""Reading a table's snapshots without rewriting anything: Arrow reads through delta-rs,
versions and history, content digests (whole table, a day or range, per day), and the
pinned files of a version that trainers read with plain pyarrow.
"""

from __future__ import annotations

import datetime as dt_
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import DeltaTable
from pyspark.sql import functions as F

from geosid.errors import InvalidRequestError
from geosid.lake.arrow import EMPTY_DIGEST, table_digest
from geosid.lake.dates import DateLike, DateRange
from geosid.schemas import TableSpec


@dataclass(frozen=True)
class PinnedFiles:
    """The data files of one table version and their partition values: plain pyarrow
    from here on (delta-rs's runtime must not be used in forked DataLoader workers)."""

    uri: str
    version: int
    paths: tuple[str, ...]
    partitions: tuple[dict, ...]
    schema: pa.Schema

    def dataset(self) -> pads.Dataset:
        filesystem, root = pafs.FileSystem.from_uri(self.uri)
        expressions = []
        for values in self.partitions:
            expression = pc.scalar(True)
            for column, value in values.items():
                typed = pa.scalar(value, self.schema.field(column).type)
                expression = expression & (pc.field(column) == typed if value is not None else pc.field(column).is_null())
            expressions.append(expression)
        return pads.FileSystemDataset.from_paths(
            [f"{root}/{p}" for p in self.paths],
            schema=self.schema,
            format=pads.ParquetFileFormat(),
            filesystem=filesystem,
            partitions=expressions,
        )


class TableSnapshots:
    """The read-only side of `Lake` (a mixin: it uses the lake's `spec`, `path`, `read`,
    `exists` and `spark`)."""

    def to_arrow(self, table: str | TableSpec, version: int | None = None) -> pa.Table:
        """Read a table with deltalake alone (no engine): what outside clients see."""

        return DeltaTable(self.path(table), version=self.version_to_read(table, version)).to_pyarrow_table()

    def version_to_read(self, table: str | TableSpec, version: int | None = None) -> int | None:
        """`version` when given, else the version a reader's view pinned (None: the latest)."""
        if version is not None or not self.pinned:
            return version
        return self.pinned.get(self.spec(table).name)

    def table_version(self, table: str | TableSpec) -> int:
        """The table's latest Delta version (in a reader's view: the pinned one)."""

        pinned = self.version_to_read(table)
        return pinned if pinned is not None else DeltaTable(self.path(table)).version()

    def digest(
        self,
        table: str | TableSpec,
        dt: DateLike | DateRange | None = None,
        where: str | None = None,
        table_version: int | None = None,
        *,
        content: bool = False,
    ) -> tuple[int, str]:
        """(rows, content digest) of a table's rows (a day or range, `where` a SQL filter
        on the engine): equal digests, equal content, whatever the file layout or row
        order. `content`: without the volatile columns (when and at which table versions
        rows were written), to compare two lakes built at other times. With an engine, it
        hashes each row's JSON text (only the hashes travel: a corpus of nested histories
        stays on the engine), so compare digests made by one engine; without one, delta-rs
        reads the table (no filter)."""
        spec = self.spec(table)
        columns = spec.content_columns if content else spec.columns
        if self.spark is not None:
            df = self.read(spec, version=table_version, dt=dt)
            if where:
                df = df.filter(where)
            hashes = df.select(F.sha2(F.to_json(F.struct(*columns)), 256).alias("h")).toArrow()["h"].to_pylist()
            total = hashlib.sha256()
            for row in sorted(hashes):
                total.update(row.encode())
            return len(hashes), total.hexdigest()[:16]
        else:
            if dt is not None or where:
                raise InvalidRequestError("digest with dt/where needs an engine (Lake(..., spark))")
            data = self.to_arrow(spec, version=table_version).select(columns)
        return data.num_rows, table_digest(data)

    def day_digests(
        self, table: str | TableSpec, days: Sequence[dt_.date], equals: dict[str, str] | None = None, exclude: Sequence[str] = ()
    ) -> dict[dt_.date, tuple[int, str]]:
        """Per day of a dt-partitioned table: (rows, digest of their content) of the rows
        whose columns equal `equals` (e.g. one source), without the `exclude` columns
        (lineage such as file and line). Order-free (a sum of 128-bit row hashes), read by
        delta-rs partition by partition, so it costs the days' rows, not the table's; a day
        without rows is (0, EMPTY_DIGEST)."""

        spec = self.spec(table)
        days = sorted(set(days))
        sums = {d: [0, np.uint64(0), np.uint64(0)] for d in days}
        if days and self.exists(spec):
            handle = DeltaTable(self.path(spec), version=self.version_to_read(spec))
            dataset = handle.to_pyarrow_dataset(partitions=[(spec.partition_by[0], "in", [d.isoformat() for d in days])])
            condition = None
            for column, value in (equals or {}).items():
                clause = pads.field(column) == value
                condition = clause if condition is None else condition & clause
            columns = [c for c in spec.columns if c not in exclude]
            for batch in dataset.to_batches(columns=columns, filter=condition):
                if not batch.num_rows:
                    continue
                frame = batch.to_pandas()
                day_of = frame.pop(spec.partition_by[0])
                for column in frame.columns:  # lists and structs hash by their text
                    if frame[column].dtype == object and frame[column].map(lambda v: isinstance(v, (list, dict, np.ndarray))).any():
                        frame[column] = frame[column].map(repr)
                with np.errstate(over="ignore"):
                    first = pd.util.hash_pandas_object(frame, index=False, hash_key="geosid-digest-0a").to_numpy()
                    second = pd.util.hash_pandas_object(frame, index=False, hash_key="geosid-digest-1b").to_numpy()
                    for day, rows in pd.Series(np.arange(len(frame))).groupby(day_of.to_numpy()).groups.items():
                        entry = sums[day if isinstance(day, dt_.date) else pd.Timestamp(day).date()]
                        entry[0] += len(rows)
                        entry[1] += first[rows].sum(dtype=np.uint64)
                        entry[2] += second[rows].sum(dtype=np.uint64)
        out = {}
        for day, (rows, first, second) in sums.items():
            out[day] = (rows, EMPTY_DIGEST if not rows else hashlib.sha256(f"{rows}:{int(first)}:{int(second)}".encode()).hexdigest()[:16])
        return out

    def history(self, table: str | TableSpec) -> list[dict]:
        entries = DeltaTable(self.path(table)).history()
        for entry in entries:  # a direct commit (geosid.lake.commit) is a replace like delta-rs' own
            if "geosid.predicate" in entry:
                entry.setdefault("operationParameters", {}).update(predicate=entry["geosid.predicate"], mode="Overwrite")
        return entries

    def pinned_files(self, table: str | TableSpec, version: int | None = None, as_of: dt_.datetime | None = None) -> PinnedFiles:
        """The files of a table at `version`, else as of `as_of`, else the latest, for
        readers outside the engine (the trainer)."""
        handle = DeltaTable(self.path(table))
        version = self.version_to_read(table, version) if as_of is None else version
        if version is not None:
            handle.load_as_version(int(version))
        elif as_of is not None:
            handle.load_as_version(as_of if as_of.tzinfo else as_of.replace(tzinfo=dt_.UTC))
        actions = pa.table(handle.get_add_actions(flatten=True))
        partition_columns = [c for c in actions.column_names if c.startswith("partition.")]
        rows = actions.select(["path", *partition_columns]).to_pylist()
        return PinnedFiles(
            uri=handle.table_uri,
            version=handle.version(),
            paths=tuple(unquote(r["path"]) for r in rows),
            partitions=tuple({c.removeprefix("partition."): r[c] for c in partition_columns} for r in rows),
            schema=handle.to_pyarrow_dataset().schema,
        )
