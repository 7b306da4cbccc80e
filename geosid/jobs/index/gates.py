"""Publication: gates on conflict / exclusive rate and code usage; a published version
is immutable, the previously published one retires. Publication is dated by its logical
date, so a re-run of an old day uses the version of its day.
"""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass

import pandas as pd

from geosid.errors import GateError
from geosid.jobs.index.registry import codebook_versions, require_mutable, version_metrics
from geosid.jobs.index.versions import write_migration, write_stability
from geosid.lake import Lake, as_date
from geosid.quantization.stability import Stability
from geosid.schemas import index


@dataclass(frozen=True)
class Gates:
    """Publish gates. Conflicts are judged above the floor that identical item vectors set
    (items that are the same in content and place): with geo-aware vectors the floor is
    low (NYC: 1.4%); with text-only ones it can be high (42% for category-only venues)."""

    max_excess_conflict: float = 0.10  # conflict rate minus the identical-vector floor
    min_exclusive_rate: float = 0.90
    min_code_usage: float = 0.20  # of every level
    # against the version it would retire, over the items both give a SID (0: no minimum;
    # the first version has nothing to keep)
    min_first_level_retention: float = 0.0
    min_sid_retention: float = 0.0


def gate_failures(metrics: dict, gates: Gates, stability: Stability | None = None) -> list[str]:
    """Why a version with these fit metrics (and this stability against the version it
    would retire) would not be published (empty: it passes)."""
    failures = []
    excess = metrics["conflict_rate"] - metrics.get("conflict_floor", 0.0)
    if excess > gates.max_excess_conflict:
        failures.append(
            f"conflict rate {metrics['conflict_rate']:.2%} is {excess:.2%} above the floor "
            f"{metrics.get('conflict_floor', 0.0):.2%} (max {gates.max_excess_conflict:.2%})"
        )
    if metrics["exclusive_rate"] < gates.min_exclusive_rate:
        failures.append(f"exclusive rate {metrics['exclusive_rate']:.2%} < {gates.min_exclusive_rate:.2%}")
    low = [f"level {i + 1}: {u:.1%}" for i, u in enumerate(metrics["code_usage"]) if u < gates.min_code_usage]
    if low:
        failures.append(f"code usage under {gates.min_code_usage:.0%} ({', '.join(low)})")
    if stability is not None and stability.items:
        if stability.level_retention[0] < gates.min_first_level_retention:
            failures.append(f"first-level codes kept {stability.level_retention[0]:.2%} < {gates.min_first_level_retention:.2%}")
        if stability.sid_retention < gates.min_sid_retention:
            failures.append(f"SIDs kept {stability.sid_retention:.2%} < {gates.min_sid_retention:.2%}")
    return failures


@dataclass
class PublishReport:
    codebook_version: str
    published_dt: dt_.date
    retired: list[str]
    stability: Stability | None = None  # against the version it retired
    migration: dict | None = None  # items per kind of index.sid_migration

    def summary(self) -> str:
        retired = f"; retired {', '.join(self.retired)}" if self.retired else ""
        lines = [f"published {self.codebook_version} as of {self.published_dt}{retired}"]
        if self.stability is not None:
            lines.append(f"  against {self.retired[0]}: {self.stability.summary()}")
        if self.migration:
            kinds = ", ".join(f"{self.migration[k]:,} {k}" for k in index.MIGRATION_KINDS)
            lines.append(f"  index.sid_migration {self.migration['from_version']} -> {self.codebook_version}: {kinds}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "codebook_version": self.codebook_version,
            "status": "published",
            "published_dt": self.published_dt.isoformat(),
            "retired": self.retired,
            "stability": None if self.stability is None else self.stability.to_dict(),
            "migration": self.migration,
        }


def publish(lake: Lake, codebook_version: str, as_of: dt_.date | str, gates: Gates = Gates()) -> PublishReport:
    """candidate -> published on `as_of` (after the gates); the version in force until then
    (whatever its representation) retires on the same date: one version is in force at a
    time, and its tables stay readable."""
    row = require_mutable(lake, codebook_version)
    as_of = as_date(as_of)
    table = codebook_versions(lake)
    in_force = table[table.status == "published"].version.tolist()
    stability = write_stability(lake, codebook_version, in_force[0], as_of) if in_force else None
    failures = gate_failures(version_metrics(row), gates, stability)
    if failures:
        raise GateError(f"codebook version {codebook_version} not published: " + "; ".join(failures))
    updates = []
    for _, other in table.iterrows():
        if other.status == "published":
            updates.append({**other.to_dict(), "status": "retired", "retired_dt": as_of})
    updates.append({**row, "status": "published", "published_dt": as_of})
    records = []
    for update in updates:
        record = {c: update.get(c) for c in index.CODEBOOK_VERSIONS.columns}
        for column in ("published_dt", "retired_dt", "created_dt", "item_geo_version", "fit_seconds"):
            if record[column] is not None and pd.isna(record[column]):
                record[column] = None  # pandas spells a missing value NaN
        record["level_sizes"] = [int(x) for x in record["level_sizes"]]
        record["item_geo_version"] = None if record["item_geo_version"] is None else int(record["item_geo_version"])
        records.append(record)
    lake.merge(lake.spark.createDataFrame(records, index.CODEBOOK_VERSIONS.schema), index.CODEBOOK_VERSIONS)
    retired = [u["version"] for u in updates[:-1]]
    migration = write_migration(lake, codebook_version, retired[0]) if retired else None
    return PublishReport(codebook_version, as_of, retired, stability, migration)
