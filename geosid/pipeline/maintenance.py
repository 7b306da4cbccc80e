"""Table maintenance: compaction per partition, vacuum with retention (keeping the files
that recorded training snapshots pin unless forced), log checkpoints and log clean-up;
files and bytes before and after, per table.
"""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from geosid.errors import InvalidRequestError
from geosid.lake.lease import held_by_me
from geosid.lake.maintenance import maintain_table
from geosid.lake.pins import protected_versions
from geosid.lake.table import sweep_dead_stages
from geosid.pipeline.context import Context, use
from geosid.trainer.runs import list_runs


@dataclass
class MaintenanceReport:
    tables: list = field(default_factory=list)  # geosid.lake.maintenance.TableMaintenance
    work_bytes_removed: int = 0  # what killed runs left under _work
    retention_hours: float = 0.0
    forced: bool = False
    seconds: float = 0.0

    @property
    def bytes_before(self) -> int:
        return sum(t.before.bytes for t in self.tables)

    @property
    def bytes_after(self) -> int:
        return sum(t.after.bytes for t in self.tables)

    def summary(self) -> str:
        lines = [t.summary() for t in self.tables]
        files = (sum(t.before.data_files for t in self.tables), sum(t.after.data_files for t in self.tables))
        lines.append(
            f"maintenance (retention {self.retention_hours:g} h{', forced: pinned snapshots not protected' if self.forced else ''}): "
            f"{files[0]:,} -> {files[1]:,} data files, {self.bytes_before / 1e6:,.1f} MB -> {self.bytes_after / 1e6:,.1f} MB "
            f"in {len(self.tables)} tables; {self.work_bytes_removed / 1e6:,.1f} MB of leftovers under _work; {self.seconds:.1f}s"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "tables": [t.to_dict() for t in self.tables],
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "work_bytes_removed": self.work_bytes_removed,
            "retention_hours": self.retention_hours,
            "forced": self.forced,
            "seconds": round(self.seconds, 2),
        }


def pinned_versions(lake_root: str | Path) -> dict[str, list[int]]:
    """Per table, the versions that recorded training snapshots pin (`_models/*/run.json`)."""

    pinned: dict[str, set[int]] = defaultdict(set)
    for run in list_runs(lake_root):
        for table, version in run.table_versions.items():
            if version is not None:
                pinned[table].add(int(version))
    return {t: sorted(v) for t, v in pinned.items()}


def _protected(ctx: Context, table: str) -> set[int]:
    """After compacting `table`: publish the lake's versions (compaction changed no
    content, so this is a consistent state), then what live readers and the published
    state need of it (geosid.lake.lease)."""
    lease = ctx.lake.lease
    lease.publish(held_by_me(ctx.lake.root))
    return protected_versions(lease).get(table, set())


def maintain(
    retention_hours: float | None = None,
    log_retention_hours: float | None = None,
    *,
    force: bool = False,
    tables: list[str] | None = None,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> MaintenanceReport:
    """Compact, vacuum (default retention: the settings', 7 days) and checkpoint every
    table (or `tables`), keeping the files of versions that recorded training snapshots
    still pin unless `force`; clear what killed runs left under _work once older than the
    retention. Prints bytes and files before and after per table."""

    started = time.perf_counter()
    with use(ctx, lake_root, writes="maintain") as ctx:
        hours = ctx.settings.vacuum_retention_hours if retention_hours is None else retention_hours
        log_hours = ctx.settings.log_retention_hours if log_retention_hours is None else log_retention_hours
        if hours < 0 or log_hours < 0:
            raise InvalidRequestError("retention hours must be >= 0")
        report = MaintenanceReport(retention_hours=hours, forced=force)
        pinned = pinned_versions(ctx.lake.root)
        specs = [ctx.lake.spec(t) for t in tables] if tables else ctx.lake.existing_tables()
        with ctx.stage(f"maintain {len(specs)} tables (retention {hours:g} h, log {log_hours:g} h)", timed="maintain"):
            for spec in specs:
                if not ctx.lake.exists(spec):
                    continue
                result = maintain_table(
                    spec.name,
                    ctx.lake.path(spec),
                    hours,
                    log_hours,
                    pinned.get(spec.name, []),
                    force=force,
                    protect=lambda name=spec.name: _protected(ctx, name),
                )
                report.tables.append(result)
                ctx.log("    " + result.summary())
            work = ctx.lake.root / "_work"
            cutoff = time.time() - hours * 3600
            for folder in ("checkpoints", "ingest"):
                for leftover in (work / folder).iterdir() if (work / folder).exists() else []:
                    if leftover.stat().st_mtime <= cutoff:
                        report.work_bytes_removed += sum(f.stat().st_size for f in leftover.rglob("*") if f.is_file())
                        shutil.rmtree(leftover, ignore_errors=True)
            for stage_root in (work / "staging").glob("*/*") if (work / "staging").exists() else []:
                sweep_dead_stages(stage_root)  # staged writes of processes that are gone
        report.seconds = time.perf_counter() - started
        ctx.log(report.summary())
        return report
