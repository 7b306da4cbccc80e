"""Pinned corpus snapshots for trainers: read the corpus at fixed Delta table versions
(or as of a time) as pyarrow batches or a torch IterableDataset, and record what was read.

No engine is needed: the lake resolves the snapshot's files (delta-rs) and pyarrow reads them, so a
training job reads exactly the files of the versions in its manifest, however the lake
moves on afterwards.
"""

from __future__ import annotations

import dataclasses
import datetime as dt_
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from geosid.errors import InvalidRequestError
from geosid.lake import Lake
from geosid.lake.pins import pin_for_process
from geosid.schemas import REGISTRY, corpus

SEQUENCES = corpus.TRAINING_SEQUENCES.name
CELL_CONTEXT = corpus.CELL_CONTEXT.name
DEFAULT_TABLES = (SEQUENCES, CELL_CONTEXT)


@dataclass(frozen=True)
class RowFilter:
    """Which rows of a snapshot are read: splits, one source, a day range, and the split
    protocol of the sequences (time, user_chrono, libcity)."""

    splits: tuple[str, ...] | None = None
    source: str | None = None
    first: dt_.date | None = None
    last: dt_.date | None = None
    protocol: str = "time"


@dataclass
class CorpusSnapshot:
    """The corpus of one codebook version at pinned table versions, with row filters."""

    lake_root: Path
    codebook_version: str
    table_versions: dict[str, int]
    rows: RowFilter = RowFilter()
    _tables: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(
        cls,
        lake_root: str | Path,
        codebook_version: str | None = None,
        table_versions: dict[str, int] | None = None,
        as_of: dt_.datetime | None = None,
        rows: RowFilter = RowFilter(),
        tables: Sequence[str] = DEFAULT_TABLES,
    ) -> CorpusSnapshot:
        """Pin `tables`: at `table_versions[name]` when given, else as of `as_of`, else the
        latest; read the `rows` of them.

        codebook_version defaults to the only one in the sequences snapshot (an error
        lists them when there are several).
        """
        lake_root = Path(lake_root).resolve()
        table_versions = dict(table_versions or {})
        pinned, files = {}, {}
        lake = Lake(lake_root)
        # the versions are pinned while this process lives, so maintenance keeps their
        # files; without explicit ones: the lake's published state (never a writer's middle)
        chosen = {name: table_versions[name] for name in tables if name in table_versions}
        if as_of is None:
            published = pin_for_process(lake.lease, "training snapshot", tables, chosen if len(chosen) == len(tables) else None)
            table_versions = {**{n: published[n] for n in tables if n in published}, **chosen}
        for name in tables:
            files[name] = lake.pinned_files(name, table_versions.get(name), None if name in table_versions else as_of)
            pinned[name] = files[name].version
        snapshot = cls(lake_root, codebook_version or "", pinned, rows, files)
        if not codebook_version:
            present = sorted(set(pc.unique(snapshot.dataset(SEQUENCES).to_table(columns=["codebook_version"])["codebook_version"]).to_pylist()))
            if len(present) != 1:
                raise InvalidRequestError(f"pass a codebook version: the snapshot holds {present or 'none'}")
            snapshot.codebook_version = present[0]
        return snapshot

    @property
    def splits(self) -> tuple[str, ...] | None:
        return self.rows.splits

    def of_splits(self, *splits: str) -> CorpusSnapshot:
        """The same pinned snapshot, reading only `splits`."""
        return dataclasses.replace(self, rows=dataclasses.replace(self.rows, splits=splits))

    # ---- reading ---------------------------------------------------------------------

    def dataset(self, name: str) -> pads.Dataset:
        """The pinned files of table `name`, unfiltered (e.g. the SID map of the version)."""
        return self._tables[name].dataset()

    def version_rows(self, name: str, codebook_version: str | None = None) -> pa.Table:
        """The pinned rows of an index table (keyed by `version`) for one codebook version.
        Filtered after reading: files written by a delta-rs merge hold string_view
        columns, which pyarrow cannot compare in a scan filter once a file lacks a column
        of the table's (evolved) schema."""
        table = self.dataset(name).to_table()
        key = table["version"].cast(pa.string())
        return table.filter(pc.equal(key, codebook_version or self.codebook_version))

    def _filter(self, name: str) -> pads.Expression | None:
        conditions = []
        names = REGISTRY.get(name).columns
        if "codebook_version" in names and self.codebook_version:
            conditions.append(pc.field("codebook_version") == self.codebook_version)
        rows = self.rows
        if rows.splits and "split" in names:
            conditions.append(pc.field("split").isin(list(rows.splits)))
        if rows.source and "source" in names:
            conditions.append(pc.field("source") == rows.source)
        if "protocol" in names:
            same = pc.field("protocol") == rows.protocol
            conditions.append(same | pc.field("protocol").is_null() if rows.protocol == "time" else same)
        if rows.first:
            conditions.append(pc.field("dt") >= pa.scalar(rows.first, pa.date32()))
        if rows.last:
            conditions.append(pc.field("dt") <= pa.scalar(rows.last, pa.date32()))
        out = None
        for condition in conditions:
            out = condition if out is None else out & condition
        return out

    def batches(self, table: str = SEQUENCES, columns: Sequence[str] | None = None, batch_size: int = 4096) -> Iterator[pa.RecordBatch]:
        """The snapshot's rows of `table` as record batches (file order, deterministic)."""
        scanner = self.dataset(table).scanner(columns=list(columns) if columns else None, filter=self._filter(table), batch_size=batch_size)
        for batch in scanner.to_batches():
            if batch.num_rows:
                yield batch

    def to_table(self, table: str = SEQUENCES, columns: Sequence[str] | None = None) -> pa.Table:
        return self.dataset(table).to_table(columns=list(columns) if columns else None, filter=self._filter(table))

    def count(self, table: str = SEQUENCES) -> int:
        return self.dataset(table).count_rows(filter=self._filter(table))

    def fragments(self, table: str = SEQUENCES) -> list:
        return sorted(self.dataset(table).get_fragments(filter=self._filter(table)), key=lambda f: f.path)

    def manifest(self) -> dict:
        """What a checkpoint records: the lake, every table's pinned version, the filters."""
        return {
            "lake": str(self.lake_root),
            "codebook_version": self.codebook_version,
            "table_versions": dict(self.table_versions),
            "splits": list(self.rows.splits) if self.rows.splits else None,
            "protocol": self.rows.protocol,
            "source": self.rows.source,
            "first": self.rows.first.isoformat() if self.rows.first else None,
            "last": self.rows.last.isoformat() if self.rows.last else None,
        }

    def torch_dataset(
        self,
        transform: Callable[[dict], object] | None = None,
        columns: Sequence[str] | None = None,
        table: str = SEQUENCES,
        batch_size: int = 1024,
    ) -> SnapshotIterableDataset:
        return SnapshotIterableDataset(self, table, transform, columns, batch_size)


def _torch_iterable():
    import torch.utils.data  # lazy: heavy (seconds to import): loaded where it is used

    return torch.utils.data.IterableDataset


class SnapshotIterableDataset(_torch_iterable()):  # type: ignore[misc]
    """Rows of a pinned snapshot as a torch IterableDataset.

    Files are dealt round-robin to DataLoader workers, so every row is read once per
    epoch whatever the number of workers. Each row is a dict (after `transform` if one
    is given). `manifest` records the table versions read.
    """

    def __init__(self, snapshot: CorpusSnapshot, table: str, transform, columns, batch_size: int):
        super().__init__()
        self.snapshot, self.table, self.transform = snapshot, table, transform
        self.columns, self.batch_size = list(columns) if columns else None, batch_size
        self.manifest = snapshot.manifest()

    def __iter__(self):
        import torch.utils.data  # lazy: heavy (seconds to import): loaded where it is used

        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        condition = self.snapshot._filter(self.table)
        schema = self.snapshot.dataset(self.table).schema  # carries the partition columns
        for k, fragment in enumerate(self.snapshot.fragments(self.table)):
            if k % workers != worker:
                continue
            batches = fragment.to_batches(schema=schema, columns=self.columns, filter=condition, batch_size=self.batch_size)
            for batch in batches:
                for row in batch.to_pylist():
                    yield self.transform(row) if self.transform else row
