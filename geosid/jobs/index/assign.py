"""SID assignment: items known on a day get a SID under a version, on the engine (the
codebook travels inside the mapInPandas closure). Rows are only ever added: an existing
item's SID never moves; a new item colliding with existing ones takes the next
disambiguation digit of its bucket. Repairs take a version's SIDs back from a day.
"""

from __future__ import annotations

import datetime as dt_
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from geosid.jobs.index.drift import write_drift
from geosid.jobs.index.inputs import embeddings_as_of, item_locations
from geosid.jobs.index.registry import load_tokenizer, version_row
from geosid.jobs.index.report import sid_key, write_quality
from geosid.jobs.index.versions import aligned_to, has_migration, preferred_codes, write_migration
from geosid.lake import Lake, as_date
from geosid.quantization.assignment import resolve_last_level
from geosid.quantization.base import Tokenizer
from geosid.schemas import index


def with_disambiguation(new: DataFrame, existing: DataFrame) -> DataFrame:
    """Digits for new items: after the bucket's existing items, in (first_seen, item_id) order."""
    taken = existing.groupBy(sid_key().alias("_key")).agg(F.max("disambiguation").alias("_max"))
    rank = F.row_number().over(Window.partitionBy("_key").orderBy("first_seen", "source", "item_id")) - 1
    return (
        new.withColumn("_key", sid_key())
        .join(taken, "_key", "left")
        .withColumn("disambiguation", (F.coalesce(F.col("_max") + 1, F.lit(0)) + rank).cast("int"))
        .withColumn("sid", F.concat_ws("-", F.col("_key"), F.col("disambiguation").cast("string")))
        .drop("_key", "_max")
    )


@dataclass
class AssignReport:
    codebook_version: str
    dt: dt_.date
    new_items: int
    total_items: int
    seconds: float

    def summary(self) -> str:
        return f"SIDs under {self.codebook_version} as of {self.dt}: {self.new_items:,} new, {self.total_items:,} in all, in {self.seconds:.1f}s"

    def to_dict(self) -> dict:
        return {
            "codebook_version": self.codebook_version,
            "dt": self.dt.isoformat(),
            "new_items": self.new_items,
            "total_items": self.total_items,
            "seconds": round(self.seconds, 2),
        }


KEYS_SCHEMA = "source string, item_id string, first_seen timestamp, lat double, lon double, error double"
CODED_SCHEMA = f"{KEYS_SCHEMA}, codes array<int>"
CANDIDATE_SCHEMA = f"{KEYS_SCHEMA}, prefix array<int>, candidates array<bigint>, cost array<double>"


def _preferred(pdf: pd.DataFrame, levels: int) -> np.ndarray:
    """[n, levels] the rows' `previous` codes, -1 where they have none."""
    out = np.full((len(pdf), levels), -1, np.int64)
    for i, codes in enumerate(pdf["previous"].to_numpy()):
        if codes is not None and len(codes) == levels:
            out[i] = codes
    return out


def tokenize_partitions(tokenizer: Tokenizer, *, candidates: bool = False, aligned: bool = False, error: bool = False):
    """The mapInPandas function: (source, item_id, first_seen, lat, lon, vector, previous)
    batches -> the same keys with their codes (nearest codes), or with their prefix codes
    and last-level candidates (capacity-aware tokenizers, resolved over all items at once).
    `aligned`: items prefer their `previous` codes; `error`: the nearest codes' squared
    quantization error per item (for drift), else NaN."""

    def tokenize(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            if not len(pdf):
                continue
            x = np.stack(pdf["vector"].to_numpy()).astype(np.float32)  # [n, d]
            lat, lon = pdf["lat"].to_numpy(), pdf["lon"].to_numpy()
            prefer = {"prefer": _preferred(pdf, tokenizer.levels)} if aligned else {}
            out = pdf[["source", "item_id", "first_seen", "lat", "lon"]].copy()
            if error:
                residual = x - tokenizer.decode(tokenizer.nearest_codes(x, lat=lat, lon=lon))
                out["error"] = (residual.astype(np.float64) ** 2).sum(1)
            else:
                out["error"] = np.nan
            if candidates:
                prefix, codes, cost = tokenizer.encode_candidates(x, lat=lat, lon=lon, **prefer)  # [n, L-1], [n, k], [n, k]
                out["prefix"], out["candidates"], out["cost"] = list(prefix.astype(np.int32)), list(codes), list(cost)
            else:
                out["codes"] = list(tokenizer.nearest_codes(x, lat=lat, lon=lon, **prefer).astype(np.int32))  # [n, L]
            yield out

    return tokenize


def _widen_from(new: DataFrame, local: pd.DataFrame, tokenizer: Tokenizer):
    """`resolve_last_level`'s widen callback for the engine path: the vectors of the rows
    that need more candidates come to the driver (the few items of crowded prefixes)."""

    def widen(rows: np.ndarray):
        keys = local.iloc[rows][["source", "item_id"]]
        wanted = new.join(new.sparkSession.createDataFrame(keys), ["source", "item_id"]).toPandas()
        wanted = keys.merge(wanted, on=["source", "item_id"], how="left")  # the rows' order
        x = np.stack(wanted["vector"].to_numpy()).astype(np.float32)
        k = min(int(tokenizer.level_sizes[-1]), 1024)
        _, codes, cost = tokenizer.encode_candidates(x, lat=wanted["lat"].to_numpy(), lon=wanted["lon"].to_numpy(), k=k)
        return codes, cost

    return widen


def resolve_capacity(lake: Lake, candidates: DataFrame, existing: DataFrame, tokenizer: Tokenizer, new: DataFrame) -> DataFrame:
    """Capacity-aware last level for every new item at once, away from the code tuples
    the version's earlier items hold: the candidates come to the driver (the day's new
    items; at fit time every item), are resolved in (source, item_id) order, and go back
    as coded rows."""

    local = candidates.orderBy("source", "item_id").toPandas()
    taken_rows = existing.select("codes").toPandas()
    sizes = tokenizer.level_sizes
    taken = np.array(taken_rows["codes"].tolist(), np.int64).reshape(len(taken_rows), len(sizes))
    prefix = np.array(local["prefix"].tolist(), np.int64).reshape(len(local), len(sizes) - 1)
    k = max((len(c) for c in local["candidates"]), default=1)
    codes = np.array(local["candidates"].tolist(), np.int64).reshape(len(local), k)
    cost = np.array(local["cost"].tolist(), np.float64).reshape(len(local), k)
    last = resolve_last_level(prefix, codes, cost, sizes, taken, widen=_widen_from(new, local, tokenizer))
    local["codes"] = [list(map(int, p)) + [int(c)] for p, c in zip(prefix, last)]
    return lake.spark.createDataFrame(local[["source", "item_id", "first_seen", "lat", "lon", "error", "codes"]], CODED_SCHEMA)


def mean_of(rows: DataFrame, column: str) -> float:
    """The mean of a column, summed exactly in item order (math.fsum): the same value
    however the engine partitions the rows, so a day's drift row is the same in any run."""
    values = rows.select("source", "item_id", column).orderBy("source", "item_id").toPandas()[column]
    return math.fsum(values) / len(values)


def assign_sids(lake: Lake, codebook_version: str, as_of: dt_.date | str, tokenizer: Tokenizer | None = None) -> AssignReport:
    """Give every item known on `as_of` (with an embedding made by then) a SID under the version."""
    started = time.perf_counter()
    as_of = as_date(as_of)
    spark = lake.spark
    row = version_row(lake, codebook_version)
    tokenizer = tokenizer or load_tokenizer(lake, codebook_version)
    reference = aligned_to(row)
    candidates = (
        embeddings_as_of(lake, as_of, row["model_id"], row["template_id"])
        .join(item_locations(lake, as_of), ["source", "item_id"])
        .select("source", "item_id", "first_seen", "lat", "lon", "vector")
    )
    if reference:
        candidates = candidates.join(preferred_codes(lake, reference, row["created_dt"]), ["source", "item_id"], "left")
    else:
        candidates = candidates.withColumn("previous", F.lit(None).cast("array<int>"))
    drift = as_of > row["created_dt"]  # a day after the fit: its new items measure the drift
    existing = (
        lake.read(index.SID_MAP).filter(F.col("version") == codebook_version)
        if lake.exists(index.SID_MAP)
        else spark.createDataFrame([], index.SID_MAP.schema)
    )
    new = candidates.join(existing.select("source", "item_id"), ["source", "item_id"], "left_anti")
    run = f"assign-{codebook_version}-{as_of}"
    try:
        options = {"aligned": bool(reference), "error": drift}
        if tokenizer.capacity_aware:
            tokenize = tokenize_partitions(tokenizer, candidates=True, **options)
            staged = lake.checkpoint(new.mapInPandas(tokenize, CANDIDATE_SCHEMA), f"{run}-candidates")
            coded = lake.checkpoint(resolve_capacity(lake, staged, existing, tokenizer, new), f"{run}-coded")
        else:
            coded = lake.checkpoint(new.mapInPandas(tokenize_partitions(tokenizer, **options), CODED_SCHEMA), f"{run}-coded")
        n_new = coded.count()
        mean_error = mean_of(coded, "error") if (drift and n_new) else None
        if n_new:
            rows = with_disambiguation(coded, existing).select(
                F.lit(codebook_version).alias("version"),
                "source",
                "item_id",
                "codes",
                "disambiguation",
                "sid",
                "first_seen",
                "lat",
                "lon",
                F.lit(as_of).alias("assigned_dt"),
            )
            lake.merge(rows, index.SID_MAP, insert_only=True)
    finally:
        lake.drop_checkpoints(run)
    if mean_error is not None:
        write_drift(lake, row, as_of, float(mean_error))
    write_quality(lake, codebook_version, as_of)
    if has_migration(lake, codebook_version):
        write_migration(lake, codebook_version)
    total = lake.read(index.SID_MAP).filter(F.col("version") == codebook_version).count()
    return AssignReport(codebook_version, as_of, n_new, total, time.perf_counter() - started)


def rollback_sids(lake: Lake, codebook_version: str, first: dt_.date | str) -> pd.DataFrame:
    """Take back the SIDs a version gave on `first` or later: they were derived from inputs
    that have changed since (a repair re-assigns those days in order, so the SIDs of the
    days before never move). Returns what was taken back (version, source, item_id, sid), so the
    repair can say which SIDs came out different."""
    if not lake.exists(index.SID_MAP):
        return pd.DataFrame(columns=["version", "source", "item_id", "sid"])
    where = f"version = '{codebook_version}' AND assigned_dt >= DATE'{as_date(first).isoformat()}'"
    taken = lake.read(index.SID_MAP).filter(where).select("version", "source", "item_id", "sid").toPandas()
    if len(taken):
        lake.delete(index.SID_MAP, where)
    return taken
