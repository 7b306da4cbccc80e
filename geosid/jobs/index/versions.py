"""Codebook versions over time: how far two versions are apart (index.sid_stability),
the migration from the version a publication retires to the new one (index.sid_migration
and the per-level index.sid_code_map), and the earlier codes an aligned version prefers.

Everything here reads the versions' SID maps, joined on (source, item_id): the common
items are those both versions give a SID.
"""

from __future__ import annotations

import datetime as dt_
import json

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.jobs.index.registry import codebook_versions, version_row
from geosid.lake import Lake, as_date
from geosid.quantization.stability import Stability, code_map, stability
from geosid.schemas import index


def sid_map_of(lake: Lake, version: str) -> DataFrame:
    if not lake.exists(index.SID_MAP):
        return lake.spark.createDataFrame([], index.SID_MAP.schema)
    return lake.read(index.SID_MAP).filter(F.col("version") == version)


def common_codes(lake: Lake, reference: str, version: str) -> pd.DataFrame:
    """The items both versions give a SID, sorted by (source, item_id): old_codes,
    old_sid, new_codes, new_sid."""
    old = sid_map_of(lake, reference).select("source", "item_id", F.col("codes").alias("old_codes"), F.col("sid").alias("old_sid"))
    new = sid_map_of(lake, version).select("source", "item_id", F.col("codes").alias("new_codes"), F.col("sid").alias("new_sid"))
    return old.join(new, ["source", "item_id"]).orderBy("source", "item_id").toPandas()


def _matrix(column: pd.Series) -> np.ndarray:
    rows = column.tolist()
    width = len(rows[0]) if rows else 0
    return np.array(rows, np.int64).reshape(len(rows), width)


def compare_versions(lake: Lake, reference: str, version: str) -> Stability:
    """The stability of `version` against `reference` (see geosid.quantization.stability)."""
    common = common_codes(lake, reference, version)
    levels = len(version_row(lake, version)["level_sizes"])
    if not len(common):
        return stability(np.zeros((0, levels)), np.zeros((0, levels)))
    return stability(_matrix(common.old_codes), _matrix(common.new_codes), common.old_sid.to_numpy(), common.new_sid.to_numpy())


def write_stability(lake: Lake, version: str, reference: str, as_of: dt_.date) -> Stability:
    """Compare and store the row (version, reference) of index.sid_stability."""
    s = compare_versions(lake, reference, version)
    row = (
        version,
        reference,
        s.items,
        s.sid_retention,
        s.code_retention,
        list(s.level_retention),
        list(s.level_retention_matched),
        s.first_level_ari,
        s.neighbour_overlap,
        s.neighbour_depth,
        as_date(as_of),
    )
    where = f"version = '{version}' AND reference = '{reference}'"
    lake.write(lake.spark.createDataFrame([row], index.SID_STABILITY.schema), index.SID_STABILITY, where=where)
    return s


def stored_stability(lake: Lake, version: str | None = None) -> pd.DataFrame:
    """index.sid_stability rows (of one version, or all), empty with its columns when absent."""
    if not lake.exists(index.SID_STABILITY):
        return pd.DataFrame(columns=index.SID_STABILITY.columns)
    rows = lake.read(index.SID_STABILITY)
    if version:
        rows = rows.filter(F.col("version") == version)
    return rows.orderBy("version", "reference").toPandas()


def stability_table(rows: list[tuple[str, str, Stability]]) -> str:
    """A markdown table of (version, reference, stability) rows."""
    head = (
        "| version | against | common items | SID kept | code tuple kept | kept per level | kept per level, matched "
        "| first-level ARI | neighbour overlap |"
    )
    lines = [head, "|" + "---|" * 9]
    for version, reference, s in rows:
        levels = " / ".join(f"{r:.1%}" for r in s.level_retention)
        matched = " / ".join(f"{r:.1%}" for r in s.level_retention_matched)
        lines.append(
            f"| {version} | {reference} | {s.items:,} | {s.sid_retention:.2%} | {s.code_retention:.2%} | {levels} | {matched} "
            f"| {s.first_level_ari:.3f} | {s.neighbour_overlap:.1%} |"
        )
    return "\n".join(lines)


def predecessor(lake: Lake, version: str) -> str | None:
    """The version a published (or retired) version took over from: the one retired on
    its publication date (None for the first version, or a candidate)."""
    table = codebook_versions(lake)
    row = table[table.version == version]
    if row.empty or row.iloc[0].published_dt is None or pd.isna(row.iloc[0].published_dt):
        return None
    published = row.iloc[0].published_dt
    before = table[(table.version != version) & table.retired_dt.map(lambda v: v is not None and not pd.isna(v) and v == published)]
    return None if before.empty else str(before.sort_values(["published_dt", "version"]).iloc[-1].version)


def migration_rows(old: DataFrame, new: DataFrame, from_version: str, to_version: str) -> DataFrame:
    """index.sid_migration rows from two SID maps (every item of either, once)."""
    o = old.select("source", "item_id", F.col("sid").alias("old_sid"))
    n = new.select("source", "item_id", F.col("sid").alias("new_sid"))
    kind = (
        F.when(F.col("old_sid").isNull(), F.lit("new"))
        .when(F.col("new_sid").isNull(), F.lit("retired"))
        .when(F.col("old_sid") == F.col("new_sid"), F.lit("kept"))
        .otherwise(F.lit("moved"))
    )
    return o.join(n, ["source", "item_id"], "full_outer").select(
        F.lit(from_version).alias("from_version"),
        F.lit(to_version).alias("to_version"),
        "source",
        "item_id",
        "old_sid",
        "new_sid",
        kind.alias("kind"),
    )


def code_map_rows(common: pd.DataFrame, from_version: str, to_version: str) -> list[tuple]:
    """index.sid_code_map rows from the common items' codes (see `common_codes`)."""
    if not len(common):
        return []
    old, new = _matrix(common.old_codes), _matrix(common.new_codes)
    rows = []
    for level in range(min(old.shape[1], new.shape[1])):
        m = code_map(old[:, level], new[:, level])
        rows += [(from_version, to_version, level, int(c), int(o), int(k), float(s)) for c, o, k, s in zip(m.new_code, m.old_code, m.items, m.share)]
    return rows


def write_migration(lake: Lake, to_version: str, from_version: str | None = None) -> dict | None:
    """(Re)write the migration and code maps into `to_version` from its predecessor (or
    `from_version`); None when it has none. Returns the counts per kind."""
    from_version = from_version or predecessor(lake, to_version)
    if from_version is None:
        return None
    where = f"to_version = '{to_version}'"
    rows = lake.checkpoint(migration_rows(sid_map_of(lake, from_version), sid_map_of(lake, to_version), from_version, to_version), "migration")
    try:
        lake.write(rows, index.SID_MIGRATION, where=where)
        counts = {r.kind: int(r["count"]) for r in rows.groupBy("kind").count().collect()}
    finally:
        lake.drop_checkpoints("migration")
    maps = code_map_rows(common_codes(lake, from_version, to_version), from_version, to_version)
    lake.write(lake.spark.createDataFrame(maps, index.SID_CODE_MAP.schema), index.SID_CODE_MAP, where=where)
    return {"from_version": from_version, "to_version": to_version, **{k: counts.get(k, 0) for k in index.MIGRATION_KINDS}}


def has_migration(lake: Lake, to_version: str) -> bool:
    return lake.exists(index.SID_MIGRATION) and lake.read(index.SID_MIGRATION).filter(F.col("to_version") == to_version).limit(1).count() > 0


def preferred_codes(lake: Lake, reference: str, as_of: dt_.date) -> DataFrame:
    """The codes `reference` gave items on or before `as_of` (source, item_id, previous):
    what a version aligned to it and fitted on `as_of` prefers. Only SIDs given by the
    fit day count, so a version's preferences are fixed once it is fitted."""
    return (
        sid_map_of(lake, reference)
        .filter(F.col("assigned_dt") <= F.lit(as_date(as_of)))
        .select("source", "item_id", F.col("codes").alias("previous"))
    )


def previous_matrix(keys: pd.DataFrame, preferred: pd.DataFrame, levels: int) -> np.ndarray:
    """[n, levels] the preferred codes of the rows of `keys` (source, item_id), -1 where none."""
    merged = keys[["source", "item_id"]].merge(preferred, on=["source", "item_id"], how="left")
    out = np.full((len(keys), levels), -1, np.int64)
    has = merged["previous"].notna().to_numpy()
    if has.any():
        out[has] = np.array(merged.loc[has, "previous"].tolist(), np.int64).reshape(int(has.sum()), levels)
    return out


def aligned_to(row: dict) -> str | None:
    """The version a version row was aligned to at fit (None: a fit from scratch)."""
    return (json.loads(row["params"]).get("spec") or {}).get("align_to")
