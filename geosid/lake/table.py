"""The lake: Delta tables under one root, written by the engine, versioned by deltalake.

Writes go through Spark (`df.write.format("delta")`) so they scale with the engine;
table creation, history, versions and snapshot reads outside Spark use deltalake
(delta-rs), which reads and writes the same tables. Writers that hold Arrow data (the
trainer) commit through `write_arrow`, against the same registered schemas.

Names: `Lake.root` is the lake's folder; a table's `table_version` is its Delta version.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import DeltaTable, Field, write_deltalake
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.errors import InvalidRequestError
from geosid.lake import faults, pins
from geosid.lake import lease as lease_
from geosid.lake.arrow import conform, conform_arrow, spec_arrow_schema
from geosid.lake.commit import HIVE_NULL, commit_staged, staged_files
from geosid.lake.dates import DateLike, DateRange, partition_predicate
from geosid.lake.holders import pid_runs
from geosid.lake.predicate import parse
from geosid.lake.reads import EngineReads
from geosid.lake.snapshots import TableSnapshots
from geosid.schemas import REGISTRY, Registry, TableSpec

# The nesting of writes in this thread (a write ensures its table first): the fault
# injection counts the outermost ones.
_WRITES = threading.local()

# How writes are committed. "delta-rs": the engine stages Parquet and deltalake commits
# (the embedded default: Sail's own Delta replace cannot yet rewrite tables that hold
# array columns). "spark": the engine's own Delta writer with replaceWhere (clusters
# with delta-spark).
COMMITTERS = ("delta-rs", "spark")
# How tables are read. "engine": the engine's Delta reader (Sail; Spark with delta-spark).
# "files": delta-rs lists the snapshot's files, the engine reads them as Parquet (JVM
# Spark without delta-spark: pyspark's local mode, a standalone cluster).
READERS = ("engine", "files")


def sweep_dead_stages(folder: Path) -> list[Path]:
    """Remove staging folders (`<pid>-<uuid>`) of processes that are gone: what a killed
    writer left behind. A live writer's folder (its pid still runs here) is kept."""
    removed = []
    for stage in folder.glob("*-*") if folder.exists() else []:
        pid = stage.name.split("-", 1)[0]
        if pid.isdigit() and not pid_runs(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage)
    return removed


class Lake(EngineReads, TableSnapshots):
    """Delta tables of the registry under `root`, read and written through `spark`."""

    def __init__(
        self,
        root: str | Path,
        spark=None,
        registry: Registry = REGISTRY,
        committer: str = "delta-rs",
        reader: str = "engine",
        *,
        direct_commit: bool = True,
        lease: lease_.LeaseSettings | None = None,
        quality_evaluator: str = "one_pass",
    ):
        if committer not in COMMITTERS:
            raise ValueError(f"committer must be one of {COMMITTERS}, got {committer!r}")
        if reader not in READERS:
            raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
        self.root = Path(root).resolve()
        self.spark = spark
        self.registry = registry
        self.committer = committer
        self.reader = reader
        # delta-rs committer: commit the engine's staged files as they are where possible
        # (False: always read them back and rewrite; the benchmark's comparison)
        self.direct_commit = direct_commit
        # the one writer at a time (geosid.lake.lease); a reader's view pins table versions
        self.lease = lease_.LakeLease(self.root, self._table_paths, lease or lease_.LeaseSettings.from_env())
        self.pinned: dict[str, int] | None = None
        self.quality_evaluator = quality_evaluator  # how suites run (geosid.lake.quality.run_checks)
        self.log: Callable[[str], None] | None = None  # where "waiting for the lease" goes

    def _table_paths(self) -> dict[str, str]:
        return {spec.name: self.path(spec) for spec in self.registry}

    @contextmanager
    def writing(self, step: str) -> Iterator[None]:
        """Hold the lake's writer lease for the block (re-entrant; see geosid.lake.lease)."""
        with lease_.writing(self.lease, step, on_wait=self.log):
            yield

    @contextmanager
    def reading(self, step: str, versions: dict[str, int] | None = None) -> Iterator[dict[str, int] | None]:
        """Read one consistent, vacuum-protected set of table versions in the block (the
        published ones unless `versions`); yields them. Inside this thread's writer lease:
        the latest versions (the writer's own)."""
        if lease_.held_by_me(self.root) is not None or self.pinned is not None:
            yield self.pinned
            return
        with pins.reading(self.lease, step, versions) as pin:
            self.pinned = dict(pin.versions or {})
            try:
                yield self.pinned
            finally:
                self.pinned = None

    @contextmanager
    def _commit(self, what: str, spec: TableSpec | None = None) -> Iterator[None]:
        """Every write: under this thread's lease (checked still ours), or a lease of its
        own. An outermost write that moved `spec`'s table to a new version is a commit
        for the crash tests' fault injection (`geosid.lake.faults`)."""
        leased = lease_.held_by_me(self.root) is not None
        if self.pinned is not None and not leased:
            raise RuntimeError(f"{what}: a reader's view of the lake does not write")
        watched = spec is not None and faults.armed() and not getattr(_WRITES, "depth", 0)
        before = self._version_if_any(spec) if watched else None
        _WRITES.depth = getattr(_WRITES, "depth", 0) + 1
        try:
            if leased:
                lease_.check_held(self.root)
                yield
            else:
                with self.writing(what):
                    yield
        finally:
            _WRITES.depth -= 1
        if watched and self._version_if_any(spec) != before:
            faults.after_commit(what)

    def _version_if_any(self, spec: TableSpec) -> int | None:
        return DeltaTable(self.path(spec)).version() if DeltaTable.is_deltatable(self.path(spec)) else None

    def reports_dir(self, *parts: str) -> Path:
        """Where reports and plots go: `<root>/_reports/<parts...>` (not created here)."""
        return self.root.joinpath("_reports", *parts)

    def spec(self, table: str | TableSpec) -> TableSpec:
        return table if isinstance(table, TableSpec) else self.registry.get(table)

    def path(self, table: str | TableSpec) -> str:
        return str(self.root / self.spec(table).relative_path)

    def exists(self, table: str | TableSpec) -> bool:
        if self.pinned is not None and self.spec(table).name not in self.pinned:
            return False  # created after the reader's view was pinned
        return DeltaTable.is_deltatable(self.path(table))

    def ensure_table(self, table: str | TableSpec) -> None:
        """Create the empty Delta table with its registered schema if it is absent; add
        the columns a newer registry declares to an existing table (additive evolution:
        older rows read them as null)."""

        spec = self.spec(table)
        with self._commit(f"create {spec.name}", spec):
            if self.exists(spec):
                self._add_new_columns(spec)
                return
            Path(self.path(spec)).mkdir(parents=True, exist_ok=True)
            DeltaTable.create(
                self.path(spec),
                schema=spec_arrow_schema(spec),
                partition_by=list(spec.partition_by) or None,
                name=spec.name,
                description=spec.description[:1000] or None,
            )

    def partition_columns(self, table: str | TableSpec) -> tuple[str, ...]:
        """The partition columns the existing table was created with."""

        return tuple(DeltaTable(self.path(table)).metadata().partition_columns)

    def drop(self, table: str | TableSpec) -> None:
        """Remove a table with its history (for derived tables a build recreates)."""
        with self._commit(f"drop {self.spec(table).name}"):
            shutil.rmtree(self.path(table), ignore_errors=True)

    def _add_new_columns(self, spec: TableSpec) -> None:
        handle = DeltaTable(self.path(spec))
        present = set(handle.schema().to_arrow().names)
        missing = [f for f in spec_arrow_schema(spec) if f.name not in present]
        if missing:
            handle.alter.add_columns([Field.from_arrow(f) for f in missing])

    def _require_spark(self):
        if self.spark is None:
            raise RuntimeError("this Lake has no Spark session; pass spark= to read or write through the engine")
        return self.spark

    def write(
        self,
        df: DataFrame | Sequence[DataFrame],
        table: str | TableSpec,
        dt: DateLike | DateRange | None = None,
        where: str | None = None,
    ) -> int:
        """Replace the day (or inclusive day range) `dt` of a partitioned table with `df`.

        Exactly those partitions are replaced (narrowed further by the SQL predicate
        `where`, e.g. one source's rows); a re-run of the same day gives the same content.
        A row of `df` outside them fails the whole write (nothing is committed).
        Unpartitioned tables are overwritten whole, or only the rows matching `where`.
        `df` may be a list of frames (parts of a job computed in passes): the engine writes
        them one after the other, and they are committed together. Returns the new version.
        """
        spec = self.spec(table)
        frames = [conform(part, spec) for part in (df if isinstance(df, (list, tuple)) else [df])]
        df = functools.reduce(DataFrame.unionByName, frames) if self.committer == "spark" else frames
        with self._commit(f"write {spec.name}", spec):
            self.ensure_table(spec)
            predicate = self._predicate(spec, dt, where)  # None: the whole table
            if self.committer == "spark":
                self._commit_spark(df, spec, predicate)
            else:
                self._commit_delta_rs(df, spec, predicate)
            return self.table_version(spec)

    def _commit_spark(self, df: DataFrame, spec: TableSpec, predicate: str | None) -> None:
        """Engine-native Delta write (a cluster with delta-spark): replaceWhere."""
        writer_df = df
        if predicate is not None:
            # Some engines write rows outside replaceWhere without complaint; this guard
            # makes such a write fail atomically everywhere, as delta-spark does.
            column = spec.columns[0]
            writer_df = df.withColumn(
                column,
                F.expr(
                    f"CASE WHEN {predicate} THEN {column} ELSE raise_error(concat("
                    f"'write to {spec.name}: a row is outside the replaced rows ', "
                    f"'({predicate.replace(chr(39), '')})')) END"
                ),
            )
        writer = writer_df.write.format("delta").mode("overwrite")
        if predicate is not None:
            writer = writer.option("replaceWhere", predicate)
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        writer.save(self.path(spec))

    @contextmanager
    def _staged(self, df: DataFrame | list[DataFrame], spec: TableSpec) -> Iterator[Path]:
        """The engine writes `df` (or each of a list of frames, in turn) once, as Parquet
        partitioned like the table, under _work/staging; yields the folder (removed
        afterwards, with what is left in it)."""
        stage = self.root / "_work" / "staging" / spec.relative_path / f"{os.getpid()}-{uuid.uuid4().hex}"
        sweep_dead_stages(stage.parent)
        try:
            for k, part in enumerate(df if isinstance(df, list) else [df]):
                writer = part.write.mode("overwrite" if k == 0 else "append")
                writer = writer.partitionBy(*spec.partition_by) if spec.partition_by else writer
                writer.parquet(str(stage))
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    @staticmethod
    def _stage_reader(stage: Path, spec: TableSpec) -> pa.RecordBatchReader:
        """A stage's rows cast to the registered Arrow schema (representation only:
        conform() checked the types), partition columns from the Hive folders."""

        target = spec_arrow_schema(spec)
        files = sorted(str(p) for p in stage.rglob("*.parquet")) if stage.exists() else []
        partitioning = (
            pads.HivePartitioning(pa.schema([target.field(c) for c in spec.partition_by]), null_fallback=HIVE_NULL) if spec.partition_by else None
        )
        dataset = pads.dataset(files, format="parquet", partitioning=partitioning, partition_base_dir=str(stage)) if files else None
        batches = (
            pa.Table.from_batches([batch]).select(target.names).cast(target).to_batches()[0]
            for batch in (dataset.to_batches() if dataset is not None else [])
            if batch.num_rows
        )
        return pa.RecordBatchReader.from_batches(target, batches)

    def _commit_delta_rs(self, df: DataFrame, spec: TableSpec, predicate: str | None) -> None:
        """The engine stages Parquet once. Committed as they are when the predicate and the
        files allow it (`geosid.lake.commit`), else read back and rewritten by delta-rs; either
        way one atomic commit that refuses a staged row outside `predicate`."""

        options = {"predicate": predicate} if predicate is not None else {}
        try:
            with self._staged(df, spec) as stage:
                clauses = parse(predicate) if self.direct_commit else None
                files = staged_files(stage, spec_arrow_schema(spec), spec.partition_by) if clauses is not None else None
                if files is not None and commit_staged(self.path(spec), files, clauses, spec.partition_by, predicate):
                    return
                write_deltalake(
                    self.path(spec),
                    self._stage_reader(stage, spec),
                    mode="overwrite",
                    partition_by=list(spec.partition_by) or None,
                    **options,
                )
        except Exception as exc:
            if "failed validation check" in str(exc):
                raise InvalidRequestError(f"write to {spec.name}: rows outside the replaced rows ({predicate}); nothing was committed") from exc
            raise

    def _predicate(self, spec: TableSpec, dt, where: str | None) -> str | None:
        """The rows a write replaces. A partitioned table needs its days (dt=), or at
        least a `where`: a write never replaces a whole partitioned table by accident."""
        if spec.partition_by:
            if dt is None and where:
                return where
            if dt is None:
                raise InvalidRequestError(f"{spec.name} is partitioned by {spec.partition_by}: pass dt= (a day or a range)")
            predicate = partition_predicate(spec.partition_by[0], dt)
            return f"({predicate}) AND ({where})" if where else predicate
        if dt is not None:
            raise InvalidRequestError(f"{spec.name} is not partitioned; dt must be None (use where= to replace some rows)")
        return where

    def merge(self, df: DataFrame, table: str | TableSpec, *, insert_only: bool = False) -> int:
        """Upsert `df` into the table on its keys (one atomic commit); returns the version.

        Rows whose keys exist are replaced (left alone with `insert_only`), others
        inserted, no row is deleted. Committed by delta-rs on every engine (deltalake
        reaches local, S3, GCS and Azure lakes).
        """

        spec = self.spec(table)
        if not spec.keys:
            raise ValueError(f"{spec.name} has no keys to merge on")
        df = conform(df, spec)
        with self._commit(f"merge {spec.name}", spec), self._staged(df, spec) as stage:
            self.ensure_table(spec)
            on = " AND ".join(f"t.{key} = s.{key}" for key in spec.keys)
            if sum(pq.ParquetFile(p).metadata.num_rows for p in stage.rglob("*.parquet")):
                # the staged rows stream into the merge (batch by batch, spilling past memory)
                source = self._stage_reader(stage, spec)
                merger = DeltaTable(self.path(spec)).merge(source=source, predicate=on, source_alias="s", target_alias="t", streamed_exec=True)
                if not insert_only:
                    merger = merger.when_matched_update_all()
                merger.when_not_matched_insert_all().execute()
        return self.table_version(spec)

    def delete(self, table: str | TableSpec, predicate: str) -> int:
        """Delete the rows matching the SQL `predicate` (one commit, by delta-rs); returns
        the version. Deleted rows stay readable at earlier versions until vacuum."""

        spec = self.spec(table)
        with self._commit(f"delete from {spec.name}", spec):
            self.ensure_table(spec)
            DeltaTable(self.path(spec)).delete(predicate)
            return self.table_version(spec)

    def write_arrow(self, data: pa.Table, table: str | TableSpec, dt: DateLike | DateRange | None = None, where: str | None = None) -> int:
        """`write` for Arrow data (writers without an engine, e.g. the trainer): the same
        registered schema, the same replace semantics, one delta-rs commit. Returns the
        new table version."""

        spec = self.spec(table)
        data = conform_arrow(data, spec)
        predicate = self._predicate(spec, dt, where)
        options = {"predicate": predicate} if predicate is not None else {}
        with self._commit(f"write {spec.name}", spec):
            self.ensure_table(spec)
            try:
                write_deltalake(self.path(spec), data, mode="overwrite", partition_by=list(spec.partition_by) or None, **options)
            except Exception as exc:
                if "failed validation check" in str(exc):
                    raise InvalidRequestError(f"write to {spec.name}: rows outside the replaced rows ({predicate}); nothing was committed") from exc
                raise
            return self.table_version(spec)

    def checkpoint(self, df: DataFrame, name: str) -> DataFrame:
        """Materialize `df` as Parquet under _work/checkpoints/<name> and read it back.

        Spark Connect sends a DataFrame's whole plan with every action, and engines here
        do not cache; a frame used by several later steps is computed once this way.
        """
        folder = self.root / "_work" / "checkpoints" / name
        df.write.mode("overwrite").parquet(str(folder))
        if not any(folder.rglob("*.parquet")):  # no rows, no files: keep the schema anyway
            return self._require_spark().createDataFrame([], df.schema)
        return self._require_spark().read.parquet(str(folder))

    def drop_checkpoints(self, prefix: str) -> None:
        """Remove the checkpoints of a finished run (names starting with `prefix`)."""
        base = self.root / "_work" / "checkpoints"
        for folder in base.glob(f"{prefix}*") if base.exists() else []:
            shutil.rmtree(folder, ignore_errors=True)

    def existing_tables(self) -> list[TableSpec]:
        return [spec for spec in self.registry if self.exists(spec)]
