"""Table maintenance: compact small files, vacuum replaced ones, checkpoint and trim the log.

Daily partition replaces, merges and repairs leave small files behind and keep replaced
ones on disk (time travel needs them) until vacuum. Maintenance, per table:

1. compact: delta-rs `optimize.compact` bins each partition's small files into larger ones
   (same rows; a new version);
2. vacuum: files no version since the retention refers to are deleted, and files no
   version refers to at all (what a killed commit left in the folder) once older than the
   retention; the files of the versions that recorded training snapshots pin are kept
   (`keep_versions`) unless forced, and so are the versions live readers pinned and the
   published state (`geosid.lake.lease`), whatever the retention;
3. checkpoint the log, then remove log entries older than the log retention that come
   before the newest checkpoint at or below the oldest pinned version, so every pinned
   version still loads.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deltalake import DeltaTable

_COMMIT = re.compile(r"^(\d{20})\.(json|crc)$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(\.\d+\.\d+)?\.parquet$")


@dataclass
class FolderSize:
    data_files: int = 0
    data_bytes: int = 0
    log_files: int = 0
    log_bytes: int = 0

    @property
    def bytes(self) -> int:
        return self.data_bytes + self.log_bytes


def folder_size(path: str | Path) -> FolderSize:
    """What a table folder holds on disk: data files (referenced or not) and log files."""
    size = FolderSize()
    root = Path(path)
    for file in root.rglob("*") if root.exists() else []:
        if not file.is_file():
            continue
        n = file.stat().st_size
        if "_delta_log" in file.relative_to(root).parts:
            size.log_files += 1
            size.log_bytes += n
        else:
            size.data_files += 1
            size.data_bytes += n
    return size


@dataclass
class TableMaintenance:
    table: str
    before: FolderSize
    after: FolderSize = field(default_factory=FolderSize)
    compacted_removed: int = 0  # small files folded ...
    compacted_added: int = 0  # ... into these
    vacuumed: int = 0  # files deleted
    kept_for_snapshots: int = 0  # files vacuum would have deleted, kept for pinned training snapshots
    log_removed: int = 0
    pinned_versions: list = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        b, a = self.before, self.after
        kept = (
            f", kept {self.kept_for_snapshots} for pinned snapshots (v{', v'.join(map(str, self.pinned_versions))})"
            if self.kept_for_snapshots
            else ""
        )
        return (
            f"{self.table:<27} files {b.data_files:>6,} -> {a.data_files:>6,}  bytes {b.bytes / 1e6:>9.2f} MB -> {a.bytes / 1e6:>9.2f} MB  "
            f"(compacted {self.compacted_removed} into {self.compacted_added}, vacuumed {self.vacuumed}{kept}; "
            f"log files {b.log_files} -> {a.log_files})"
        )

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "files_before": self.before.data_files,
            "files_after": self.after.data_files,
            "bytes_before": self.before.bytes,
            "bytes_after": self.after.bytes,
            "compacted_removed": self.compacted_removed,
            "compacted_added": self.compacted_added,
            "vacuumed": self.vacuumed,
            "kept_for_snapshots": self.kept_for_snapshots,
            "log_files_before": self.before.log_files,
            "log_files_after": self.after.log_files,
            "log_removed": self.log_removed,
            "seconds": round(self.seconds, 2),
        }


def maintain_table(
    name: str,
    path: str | Path,
    retention_hours: float,
    log_retention_hours: float,
    pinned_versions: list[int] = (),
    *,
    force: bool = False,
    compact: bool = True,
    protect: Callable[[], Iterable[int]] | None = None,
) -> TableMaintenance:
    """Compact, vacuum (keeping what `pinned_versions` need unless `force`), checkpoint and
    trim the log of one Delta table (see the module's doc). `protect`, called after the
    compaction, gives the versions live readers need (kept whatever `force` says)."""

    started = time.perf_counter()
    path = str(path)
    result = TableMaintenance(name, folder_size(path))
    table = DeltaTable(path)
    current = table.version()
    pinned = {int(v) for v in pinned_versions if 0 <= int(v) <= current} if not force else set()
    if compact:
        metrics = table.optimize.compact()
        result.compacted_removed, result.compacted_added = int(metrics.get("numFilesRemoved", 0)), int(metrics.get("numFilesAdded", 0))
        table = DeltaTable(path)
    latest = table.version()  # vacuum commits too: a pinned latest version must be kept like the others
    pinned |= {int(v) for v in (protect() if protect is not None else ()) if 0 <= int(v) <= latest}
    pinned = sorted(pinned)
    result.pinned_versions = pinned
    hours = max(0, int(retention_hours))
    options = {"retention_hours": hours, "enforce_retention_duration": False, "full": True}
    if pinned:
        everything = set(table.vacuum(dry_run=True, **options))
        result.vacuumed = len(table.vacuum(dry_run=False, keep_versions=pinned, **options))
        result.kept_for_snapshots = len(everything) - result.vacuumed
    else:
        result.vacuumed = len(table.vacuum(dry_run=False, **options))
    table = DeltaTable(path)
    table.create_checkpoint()
    result.log_removed = trim_log(path, log_retention_hours, min(pinned) if pinned else table.version())
    result.after = folder_size(path)
    result.seconds = time.perf_counter() - started
    return result


def trim_log(path: str | Path, retention_hours: float, oldest_needed: int) -> int:
    """Remove log entries (commits, their checksums, checkpoints) older than the retention
    and before the newest checkpoint at or below `oldest_needed`: every version from there
    on still loads (from that checkpoint and the commits after it). Returns files removed."""
    log = Path(path) / "_delta_log"
    checkpoints = sorted(int(m.group(1)) for f in log.iterdir() if (m := _CHECKPOINT.match(f.name)))
    usable = [v for v in checkpoints if v <= oldest_needed]
    if not usable:
        return 0
    floor = usable[-1]
    cutoff = time.time() - retention_hours * 3600
    removed = 0
    for file in log.iterdir():
        match = _COMMIT.match(file.name) or _CHECKPOINT.match(file.name)
        if match and int(match.group(1)) < floor and file.stat().st_mtime <= cutoff:
            os.remove(file)
            removed += 1
    return removed
