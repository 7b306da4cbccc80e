"""Drift of a codebook version as days arrive: each day's new items' quantization error
and collision rate beside the version's values at fit time (index.sid_drift), and the
"re-fit advised" signal a sustained excess raises.
"""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import functions as F

from geosid.jobs.index.registry import version_metrics
from geosid.lake import Lake, as_date
from geosid.schemas import index


def write_drift(lake: Lake, row: dict, as_of: dt_.date, mean_error: float) -> None:
    """The day's row of index.sid_drift for a version (row: its index.codebook_versions
    row): the SIDs it gave on `as_of`, their mean error, and the fit-time values."""
    version = row["version"]
    day = lake.read(index.SID_MAP).filter((F.col("version") == version) & (F.col("assigned_dt") == F.lit(as_date(as_of))))
    counts = day.agg(F.count(F.lit(1)).alias("n"), F.sum((F.col("disambiguation") > 0).cast("long")).alias("collided")).collect()[0]
    if not counts["n"]:
        return
    metrics = version_metrics(row)
    record = (
        version,
        as_date(as_of),
        int(counts["n"]),
        mean_error,
        float(metrics.get("reconstruction_mse") or 0.0),
        float(counts["collided"] or 0) / counts["n"],
        float(metrics.get("conflict_rate", 0.0)),
    )
    where = f"version = '{version}' AND dt = DATE'{as_date(as_of).isoformat()}'"
    lake.write(lake.spark.createDataFrame([record], index.SID_DRIFT.schema), index.SID_DRIFT, where=where)


@dataclass(frozen=True)
class DriftPolicy:
    """When drift advises a re-fit: on each of the last `days` days with new items, their
    quantization error is above `max_error_ratio` x the fit's, or their collision rate
    above the fit's conflict rate by more than `max_collision_excess`."""

    max_error_ratio: float = 1.25
    max_collision_excess: float = 0.05
    days: int = 3


@dataclass(frozen=True)
class RefitAdvice:
    version: str
    advised: bool
    days: int  # days with drift rows considered
    error_ratio: float | None  # of the latest day
    collision_excess: float | None
    reason: str

    def summary(self) -> str:
        return f"{'re-fit advised' if self.advised else 'no re-fit needed'} for {self.version}: {self.reason}"

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "advised": self.advised,
            "days": self.days,
            "error_ratio": self.error_ratio,
            "collision_excess": self.collision_excess,
            "reason": self.reason,
        }


def drift_rows(lake: Lake, version: str) -> pd.DataFrame:
    if not lake.exists(index.SID_DRIFT):
        return pd.DataFrame(columns=index.SID_DRIFT.columns)
    return lake.read(index.SID_DRIFT).filter(F.col("version") == version).orderBy("dt").toPandas()


def refit_advice(rows: pd.DataFrame, version: str, policy: DriftPolicy) -> RefitAdvice:
    """Whether the drift rows of a version (index.sid_drift, by day) advise a re-fit."""
    if rows.empty:
        return RefitAdvice(version, False, 0, None, None, "no day after its fit has new items yet")
    recent = rows.sort_values("dt").tail(policy.days)
    ratio = recent.quantization_mse / recent.fit_mse.where(recent.fit_mse > 0)
    excess = recent.collision_rate - recent.fit_collision_rate
    over = (ratio > policy.max_error_ratio) | (excess > policy.max_collision_excess)
    last_ratio, last_excess = float(ratio.iloc[-1]) if pd.notna(ratio.iloc[-1]) else None, float(excess.iloc[-1])
    seen = f"new items' error {last_ratio or 0:.2f}x the fit's (max {policy.max_error_ratio:.2f}x), collisions {last_excess:+.1%} over the fit's (max {policy.max_collision_excess:+.1%})"
    if len(recent) < policy.days:
        return RefitAdvice(version, False, len(recent), last_ratio, last_excess, f"{len(recent)} of {policy.days} days measured; {seen}")
    if bool(over.all()):
        return RefitAdvice(version, True, len(recent), last_ratio, last_excess, f"over the limits on each of the last {policy.days} days: {seen}")
    return RefitAdvice(version, False, len(recent), last_ratio, last_excess, seen)
