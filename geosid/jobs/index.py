"""The SID index: fit codebook versions, publish them, assign SIDs, measure collisions.

- fit_candidate: train a tokenizer on the items known on a logical date, read from
  pinned snapshots of silver.item_embeddings and silver.item_geo (both table versions are
  recorded); the version id hashes the parameters, the model / template, the date and
  the content of that training set, so the same inputs give the same version (however
  many identical re-writes the tables went through). Writes the codebooks, the version
  row (status candidate), the SIDs of the training items and the quality tables.
- publish: gates on conflict / exclusive rate and code usage; a published version is
  immutable (re-fitting or overwriting it fails); the previously published one retires.
  Publication is dated by its logical date: `published_version(lake, as_of=D)` is the
  version that was in force on D, so a re-run of an old day uses the version of its day.
- assign_sids: items known on a day, with an embedding made on or before it, and no SID
  under a version get one, on the engine (the codebook travels inside the mapInPandas
  closure). Rows are only ever added: an existing item's SID never moves; a new item
  colliding with existing ones takes the next disambiguation digit of its bucket.

Every tokenizer is used through the contract of `geosid.quantization.base` only.
"""

from __future__ import annotations

import datetime as dt_
import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from geosid.errors import (
    GateError,
    ImmutableVersionError,
    InvalidRequestError,
    NotFoundError,
    UnknownNameError,
)
from geosid.jobs.embed import latest_vectors
from geosid.lake import Lake, as_date
from geosid.quantization.base import (
    TOKENIZERS,
    Tokenizer,
    restore,
    state,
    tokenizer_class,
)
from geosid.quantization.metrics import conflict_floor, sid_quality
from geosid.schemas import index, silver

METHODS = tuple(TOKENIZERS)
DEFAULT_TEMPLATE = "geo-doc-v1"


@dataclass(frozen=True)
class CodebookSpec:
    """What to fit. `codes`: codes per level (None: sized to the data, 3 levels)."""

    method: str = "residual_kmeans_fsq"
    codes: tuple[int, ...] | None = None
    niter: int = 20
    seed: int = 1234
    sample_size: int | None = None
    # FSQ's projection starts from PCA: on the NYC geo vectors 40 epochs reach a residual
    # MSE within 0.2% of 200 epochs' (measured), at a fifth of the time
    fsq_epochs: int = 40
    fsq_lr: float = 0.01
    capacity_aware: bool = False  # last level by capacity-aware assignment

    def __post_init__(self):
        if self.method not in METHODS:
            raise InvalidRequestError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")

    @property
    def label(self) -> str:
        """The method as tables and reports name it: `residual_kmeans+capacity` etc."""
        return self.method + ("+capacity" if self.capacity_aware else "")

    def build(self, d: int, level_sizes: tuple[int, ...]) -> Tokenizer:
        return tokenizer_class(self.method).for_budget(
            d, level_sizes, self.niter, self.seed, self.sample_size, fsq_epochs=self.fsq_epochs, fsq_lr=self.fsq_lr,
            capacity_aware=self.capacity_aware,
        )  # fmt: skip


def default_codes(n_items: int, levels: int = 3) -> tuple[int, ...]:
    """Codes per level sized to the data: the power of two at or above twice the
    levels-th root of the item count (so the code space is ~2^levels x the items),
    between 16 and 8192 (OneLoc / OneMall use 3 x 8192 at scale)."""
    k = 2 ** math.ceil(math.log2(max(2.0, 2 * n_items ** (1 / levels))))
    return (int(min(max(k, 16), 8192)),) * levels


# ---------------------------------------------------------------------------------------
# Pure transforms


def sid_key(codes: str = "codes") -> F.Column:
    """The code tuple as text, '12-503-77' (a SID without its disambiguation digit)."""
    return F.concat_ws("-", F.col(codes).cast("array<string>"))


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


def collisions(sid_map: DataFrame) -> DataFrame:
    """index.sid_collisions rows from index.sid_map rows."""
    return sid_map.groupBy("version", sid_key().alias("sid")).agg(
        F.count(F.lit(1)).alias("n_items"),
        F.sort_array(F.collect_list("item_id")).alias("items"),
    )


# ---------------------------------------------------------------------------------------
# Inputs


@dataclass
class TrainingSet:
    keys: pd.DataFrame  # source, item_id, first_seen, lat, lon (sorted by source, item_id)
    x: np.ndarray  # [n, d] float32
    model_id: str
    template_id: str
    as_of: dt_.date
    embeddings_version: int  # pinned table versions read
    item_geo_version: int

    def digest(self) -> str:
        """The content of the training set: keys, locations and vectors."""
        h = hashlib.sha256()
        h.update(pd.util.hash_pandas_object(self.keys[["source", "item_id"]], index=False).to_numpy().tobytes())
        h.update(np.ascontiguousarray(self.keys[["lat", "lon"]].to_numpy(np.float64)).tobytes())
        h.update(np.ascontiguousarray(self.x).tobytes())
        return h.hexdigest()


def item_locations(lake: Lake, as_of: dt_.date, table_version: int | None = None) -> DataFrame:
    """Each item's first_seen and location as known on `as_of` (silver.item_geo's day)."""
    return (
        lake.read(silver.ITEM_GEO, version=table_version, dt=as_of)
        .select("source", "item_id", "first_seen", "lat", "lon")
        .dropDuplicates(["source", "item_id"])
    )


def embeddings_as_of(lake: Lake, as_of: dt_.date, model_id: str, template_id: str, table_version: int | None = None) -> DataFrame:
    """Each item's vector of `model_id` / `template_id` as of `as_of` (its latest made on
    or before the day)."""
    stored = lake.read(silver.ITEM_EMBEDDINGS, version=table_version).filter(F.col("template_id") == template_id)
    return latest_vectors(stored, model_id, as_of)


def load_training_set(
    lake: Lake,
    as_of: dt_.date,
    model_id: str | None = None,
    template_id: str = DEFAULT_TEMPLATE,
    embeddings_version: int | None = None,
    item_geo_version: int | None = None,
) -> TrainingSet:
    """The items known on `as_of` with their vectors, from pinned table versions (default:
    the latest of each, recorded)."""
    for spec in (silver.ITEM_EMBEDDINGS, silver.ITEM_GEO):
        if not lake.exists(spec):
            raise NotFoundError(f"table {spec.name} does not exist: run geo and embed for {as_of} first")
    embeddings_version = lake.table_version(silver.ITEM_EMBEDDINGS) if embeddings_version is None else int(embeddings_version)
    item_geo_version = lake.table_version(silver.ITEM_GEO) if item_geo_version is None else int(item_geo_version)
    if model_id is None:
        stored = lake.read(silver.ITEM_EMBEDDINGS, version=embeddings_version).filter(F.col("template_id") == template_id)
        models = sorted(r.model_id for r in stored.select("model_id").distinct().collect())
        if len(models) != 1:
            raise InvalidRequestError(f"choose a model: the embeddings of template {template_id} hold {models or 'none'}")
        model_id = models[0]
    rows = (
        embeddings_as_of(lake, as_of, model_id, template_id, embeddings_version)
        .join(item_locations(lake, as_of, item_geo_version), ["source", "item_id"])
        .select("source", "item_id", "first_seen", "lat", "lon", "vector")
        .orderBy("source", "item_id")
        .toArrow()
    )
    if rows.num_rows == 0:
        raise NotFoundError(
            f"no items of {as_of} with embeddings of model {model_id!r} and template {template_id!r} "
            f"(silver.item_embeddings v{embeddings_version}, silver.item_geo v{item_geo_version})"
        )
    x = np.stack(rows.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)  # [n, d]
    keys = rows.drop_columns(["vector"]).to_pandas()
    return TrainingSet(keys, x, model_id, template_id, as_of, embeddings_version, item_geo_version)


def version_id(params: dict, data: TrainingSet) -> str:
    payload = json.dumps(
        {"params": params, "model": data.model_id, "template": data.template_id, "as_of": data.as_of.isoformat(),
         "training_set": data.digest()},
        sort_keys=True,
    )  # fmt: skip
    return "cb-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------
# Version registry


def codebook_versions(lake: Lake) -> pd.DataFrame:
    """index.codebook_versions as a frame (empty with its columns when absent)."""
    if not lake.exists(index.CODEBOOK_VERSIONS):
        return pd.DataFrame(columns=index.CODEBOOK_VERSIONS.columns)
    return lake.read(index.CODEBOOK_VERSIONS).toPandas()


def version_row(lake: Lake, codebook_version: str) -> dict:
    table = codebook_versions(lake)
    match = table[table.version == codebook_version]
    if match.empty:
        known = ", ".join(sorted(table.version)) or "none yet (geosid codebook fit)"
        raise UnknownNameError(f"no codebook version {codebook_version!r}; known: {known}")
    return match.iloc[0].to_dict()


def level_sizes_of(lake: Lake, codebook_version: str) -> tuple[int, ...]:
    return tuple(int(s) for s in version_row(lake, codebook_version)["level_sizes"])


def load_tokenizer(lake: Lake, codebook_version: str) -> Tokenizer:
    """The trained tokenizer of a version, from index.codebooks."""
    row = version_row(lake, codebook_version)
    arrays: dict[str, list] = {}
    for r in lake.read(index.CODEBOOKS).filter(F.col("version") == codebook_version).orderBy("kind", "row").collect():
        arrays.setdefault(r.kind, []).append(np.asarray(r["values"], np.float32))
    params = {k: v for k, v in json.loads(row["params"]).items() if k != "spec"}  # spec: what was asked, kept for the record
    return restore(params, {kind: np.stack(rows) for kind, rows in arrays.items()})


def _codebook_rows(spark, codebook_version: str, tokenizer: Tokenizer) -> DataFrame:
    rows = []
    for kind, array in state(tokenizer).items():
        matrix = np.atleast_2d(np.asarray(array, np.float32))
        rows += [(codebook_version, kind, i, [float(v) for v in matrix[i]]) for i in range(len(matrix))]
    return spark.createDataFrame(rows, index.CODEBOOKS.schema)


def published_version(lake: Lake, as_of: dt_.date | str | None = None, model_id: str | None = None,
                      template_id: str | None = None) -> str | None:  # fmt: skip
    """The version in force on `as_of` (published on or before it, not retired by then),
    or the one published now when `as_of` is None."""
    table = codebook_versions(lake)
    if as_of is None:
        table = table[table.status == "published"]
    else:
        day = as_date(as_of)
        published = table.published_dt.map(lambda v: v is not None and not pd.isna(v) and v <= day)
        retired = table.retired_dt.map(lambda v: v is not None and not pd.isna(v) and v <= day)
        table = table[published & ~retired]
    if model_id:
        table = table[table.model_id == model_id]
    if template_id:
        table = table[table.template_id == template_id]
    return None if table.empty else str(table.sort_values(["published_dt", "version"]).iloc[-1].version)


# ---------------------------------------------------------------------------------------
# Lifecycle


@dataclass
class FitReport:
    codebook_version: str
    method: str
    level_sizes: tuple[int, ...]
    n_items: int
    metrics: dict
    seconds: float
    fit_seconds: float
    reused: bool = False
    assign: "AssignReport | None" = None

    def summary(self) -> str:
        m = self.metrics
        return (
            f"codebook {self.codebook_version} ({self.method}, {' x '.join(map(str, self.level_sizes))} codes) on {self.n_items:,} items: "
            f"conflict {m['conflict_rate']:.2%} (floor {m.get('conflict_floor', 0):.2%}), exclusive {m['exclusive_rate']:.2%}, "
            f"alone {m['items_alone_rate']:.2%}, "
            f"largest bucket {m['largest_bucket']}, fit {self.fit_seconds:.1f}s" + (" (stored version, reused)" if self.reused else "")
        )

    def to_dict(self) -> dict:
        return {"codebook_version": self.codebook_version, "method": self.method, "level_sizes": list(self.level_sizes),
                "n_items": self.n_items, "metrics": self.metrics, "reused": self.reused, "seconds": round(self.seconds, 2)}  # fmt: skip


def fit_candidate(
    lake: Lake,
    spec: CodebookSpec,
    as_of: dt_.date | str,
    model_id: str | None = None,
    template_id: str = DEFAULT_TEMPLATE,
    embeddings_version: int | None = None,
    item_geo_version: int | None = None,
    reuse_published: bool = False,
) -> FitReport:
    """Fit a candidate version on the pinned training set of `as_of` and write it (see
    module doc).

    The same inputs give the same version id. If that version is already published (or
    retired) it is immutable: this raises ImmutableVersionError, or with
    `reuse_published` returns the stored version's report and writes nothing.
    """
    started = time.perf_counter()
    as_of = as_date(as_of)
    spark = lake.spark
    data = load_training_set(lake, as_of, model_id, template_id, embeddings_version, item_geo_version)
    level_sizes = spec.codes or default_codes(len(data.x))
    tokenizer = spec.build(data.x.shape[1], tuple(level_sizes))
    params = {**tokenizer.params(), "spec": asdict(spec)}
    version = version_id(params, data)
    existing = codebook_versions(lake)
    if version in set(existing.version) and version_row(lake, version)["status"] != "candidate":
        stored = version_row(lake, version)
        if not reuse_published:
            raise ImmutableVersionError(f"codebook version {version} is {stored['status']}: it cannot be re-fitted")
        metrics = json.loads(stored["metrics"])
        sizes = tuple(int(v) for v in stored["level_sizes"])
        return FitReport(version, spec.label, sizes, int(stored["n_items"]), metrics, time.perf_counter() - started,
                         _fit_seconds(stored), reused=True)  # fmt: skip
    fit_started = time.perf_counter()
    lat, lon = data.keys.lat.to_numpy(), data.keys.lon.to_numpy()
    tokenizer.train(data.x, lat=lat, lon=lon)
    fit_seconds = time.perf_counter() - fit_started
    sizes = tokenizer.level_sizes
    metrics = sid_quality(tokenizer.encode(data.x, lat=lat, lon=lon), sizes, lat, lon)
    metrics["reconstruction_mse"] = tokenizer.level_mse[-1] if tokenizer.level_mse else None
    metrics["conflict_floor"] = conflict_floor(data.x)
    where = f"version = '{version}'"
    lake.write(_codebook_rows(spark, version, tokenizer), index.CODEBOOKS, where=where)
    row = (
        version, spec.label, "candidate", json.dumps(params, sort_keys=True), list(sizes), data.model_id, data.template_id,
        int(data.embeddings_version), len(data.x), json.dumps(metrics, sort_keys=True, default=float), as_of, None, None,
        int(data.item_geo_version), round(fit_seconds, 3),
    )  # fmt: skip
    lake.merge(spark.createDataFrame([row], index.CODEBOOK_VERSIONS.schema), index.CODEBOOK_VERSIONS)
    # A candidate's SIDs are rebuilt from scratch on every fit.
    if lake.exists(index.SID_MAP):
        lake.write(spark.createDataFrame([], index.SID_MAP.schema), index.SID_MAP, where=where)
    report = FitReport(version, spec.label, sizes, len(data.x), metrics, 0.0, fit_seconds)
    report.assign = assign_sids(lake, version, as_of, tokenizer=tokenizer)
    report.seconds = time.perf_counter() - started
    return report


def _fit_seconds(row: dict) -> float:
    """A version row's fit time (versions written before it had a column: in the metrics)."""
    seconds = row.get("fit_seconds")
    if seconds is None or seconds != seconds:  # missing or NaN
        seconds = json.loads(row["metrics"]).get("fit_seconds", 0.0)
    return float(seconds)


def _require_mutable(lake: Lake, codebook_version: str) -> dict:
    row = version_row(lake, codebook_version)
    if row["status"] != "candidate":
        raise ImmutableVersionError(f"codebook version {codebook_version} is {row['status']} and immutable")
    return row


@dataclass(frozen=True)
class Gates:
    """Publish gates. Conflicts are judged above the floor that identical item vectors set
    (items that are the same in content and place): with geo-aware vectors the floor is
    low (NYC: 1.4%); with text-only ones it can be high (42% for category-only venues)."""

    max_excess_conflict: float = 0.10  # conflict rate minus the identical-vector floor
    min_exclusive_rate: float = 0.90
    min_code_usage: float = 0.20  # of every level


def gate_failures(metrics: dict, gates: Gates) -> list[str]:
    """Why a version with these fit metrics would not be published (empty: it passes)."""
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
    return failures


@dataclass
class PublishReport:
    codebook_version: str
    published_dt: dt_.date
    retired: list[str]

    def summary(self) -> str:
        retired = f"; retired {', '.join(self.retired)}" if self.retired else ""
        return f"published {self.codebook_version} as of {self.published_dt}{retired}"

    def to_dict(self) -> dict:
        return {"codebook_version": self.codebook_version, "status": "published", "published_dt": self.published_dt.isoformat(),
                "retired": self.retired}  # fmt: skip


def publish(lake: Lake, codebook_version: str, as_of: dt_.date | str, gates: Gates = Gates()) -> PublishReport:
    """candidate -> published on `as_of` (after the gates); the version in force until then
    (whatever its representation) retires on the same date: one version is in force at a
    time, and its tables stay readable."""
    row = _require_mutable(lake, codebook_version)
    failures = gate_failures(json.loads(row["metrics"]), gates)
    if failures:
        raise GateError(f"codebook version {codebook_version} not published: " + "; ".join(failures))
    as_of = as_date(as_of)
    table = codebook_versions(lake)
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
    return PublishReport(codebook_version, as_of, [u["version"] for u in updates[:-1]])


@dataclass
class AssignReport:
    codebook_version: str
    dt: dt_.date
    new_items: int
    total_items: int
    seconds: float

    def summary(self) -> str:
        return (f"SIDs under {self.codebook_version} as of {self.dt}: {self.new_items:,} new, {self.total_items:,} in all, "
                f"in {self.seconds:.1f}s")  # fmt: skip

    def to_dict(self) -> dict:
        return {"codebook_version": self.codebook_version, "dt": self.dt.isoformat(), "new_items": self.new_items,
                "total_items": self.total_items, "seconds": round(self.seconds, 2)}  # fmt: skip


CODED_SCHEMA = "source string, item_id string, first_seen timestamp, lat double, lon double, codes array<int>"
CANDIDATE_SCHEMA = (
    "source string, item_id string, first_seen timestamp, lat double, lon double, prefix array<int>, "
    "candidates array<bigint>, cost array<double>"
)


def tokenize_partitions(tokenizer: Tokenizer, candidates: bool = False):
    """The mapInPandas function: (source, item_id, first_seen, lat, lon, vector) batches ->
    the same keys with their codes (nearest codes), or with their prefix codes and
    last-level candidates (capacity-aware tokenizers, resolved over all items at once)."""

    def tokenize(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            if not len(pdf):
                continue
            x = np.stack(pdf["vector"].to_numpy()).astype(np.float32)  # [n, d]
            lat, lon = pdf["lat"].to_numpy(), pdf["lon"].to_numpy()
            out = pdf[["source", "item_id", "first_seen", "lat", "lon"]].copy()
            if candidates:
                prefix, codes, cost = tokenizer.encode_candidates(x, lat=lat, lon=lon)  # [n, L-1], [n, k], [n, k]
                out["prefix"], out["candidates"], out["cost"] = list(prefix.astype(np.int32)), list(codes), list(cost)
            else:
                out["codes"] = list(tokenizer.nearest_codes(x, lat=lat, lon=lon).astype(np.int32))  # [n, L]
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
    from geosid.quantization.assignment import resolve_last_level

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
    return lake.spark.createDataFrame(local[["source", "item_id", "first_seen", "lat", "lon", "codes"]], CODED_SCHEMA)


def assign_sids(lake: Lake, codebook_version: str, as_of: dt_.date | str, tokenizer: Tokenizer | None = None) -> AssignReport:
    """Give every item known on `as_of` (with an embedding made by then) a SID under the version."""
    started = time.perf_counter()
    as_of = as_date(as_of)
    spark = lake.spark
    row = version_row(lake, codebook_version)
    tokenizer = tokenizer or load_tokenizer(lake, codebook_version)
    candidates = embeddings_as_of(lake, as_of, row["model_id"], row["template_id"]).join(
        item_locations(lake, as_of), ["source", "item_id"]
    ).select("source", "item_id", "first_seen", "lat", "lon", "vector")
    existing = (
        lake.read(index.SID_MAP).filter(F.col("version") == codebook_version)
        if lake.exists(index.SID_MAP)
        else spark.createDataFrame([], index.SID_MAP.schema)
    )
    new = candidates.join(existing.select("source", "item_id"), ["source", "item_id"], "left_anti")
    run = f"assign-{codebook_version}-{as_of}"
    try:
        if tokenizer.capacity_aware:
            staged = lake.checkpoint(new.mapInPandas(tokenize_partitions(tokenizer, candidates=True), CANDIDATE_SCHEMA), f"{run}-candidates")
            coded = lake.checkpoint(resolve_capacity(lake, staged, existing, tokenizer, new), f"{run}-coded")
        else:
            coded = lake.checkpoint(new.mapInPandas(tokenize_partitions(tokenizer), CODED_SCHEMA), f"{run}-coded")
        n_new = coded.count()
        if n_new:
            rows = with_disambiguation(coded, existing).select(
                F.lit(codebook_version).alias("version"), "source", "item_id", "codes", "disambiguation", "sid",
                "first_seen", "lat", "lon", F.lit(as_of).alias("assigned_dt"),
            )  # fmt: skip
            lake.merge(rows, index.SID_MAP, insert_only=True)
    finally:
        lake.drop_checkpoints(run)
    write_quality(lake, codebook_version, as_of)
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


def write_quality(lake: Lake, codebook_version: str, as_of: dt_.date) -> dict:
    """Recompute index.sid_collisions and index.sid_quality of a version from its SID map
    (computed_dt: the latest day the map holds SIDs of, a function of the map alone, so a
    re-run of an earlier day leaves the row as it was; `as_of` for an empty map)."""
    row = version_row(lake, codebook_version)
    where = f"version = '{codebook_version}'"
    sid_map = lake.read(index.SID_MAP).filter(F.col("version") == codebook_version)
    lake.write(collisions(sid_map), index.SID_COLLISIONS, where=where)
    # A fixed row order: the geo-coherence pairs are sampled by position.
    local = sid_map.orderBy("source", "item_id").select("codes", "lat", "lon", "assigned_dt").toPandas()
    if len(local):
        as_of = max(local["assigned_dt"])
    sizes = tuple(int(s) for s in row["level_sizes"])
    codes = np.array(local["codes"].tolist(), np.int64).reshape(len(local), len(sizes))
    metrics = sid_quality(codes, sizes, local["lat"].to_numpy(), local["lon"].to_numpy())
    fit_metrics = json.loads(row["metrics"])
    quality = (
        codebook_version, row["method"], metrics["items"], metrics["sids"], metrics["conflict_rate"], metrics["exclusive_rate"],
        metrics["items_alone_rate"], metrics["largest_bucket"], [float(v) for v in metrics["code_usage"]],
        [float(v) for v in metrics["perplexity"]], metrics.get("geo_coherence_l1_km"), metrics.get("geo_coherence_l2_km"),
        metrics.get("geo_baseline_km"), fit_metrics.get("reconstruction_mse"), as_of,
    )  # fmt: skip
    lake.write(lake.spark.createDataFrame([quality], index.SID_QUALITY.schema), index.SID_QUALITY, where=where)
    return metrics


@dataclass
class BackfillReport:
    codebook_version: str
    days: list = field(default_factory=list)

    def summary(self) -> str:
        new = sum(d.new_items for d in self.days)
        return f"backfill {self.codebook_version}: {len(self.days)} days, {new:,} items given SIDs"

    def to_dict(self) -> dict:
        return {"codebook_version": self.codebook_version, "days": len(self.days), "new_items": sum(d.new_items for d in self.days)}


def backfill(lake: Lake, codebook_version: str, first: dt_.date | str, last: dt_.date | str) -> BackfillReport:
    """Tokenize every item of the days [first, last] under the version (existing SIDs
    stay); other versions' tables are untouched and stay readable."""
    row = version_row(lake, codebook_version)
    if row["status"] == "retired":
        raise ImmutableVersionError(f"codebook version {codebook_version} is retired; backfill a published or candidate version")
    tokenizer = load_tokenizer(lake, codebook_version)
    report = BackfillReport(codebook_version)
    day, last = as_date(first), as_date(last)
    days_with_items = {r.dt for r in lake.read(silver.ITEM_GEO).select("dt").distinct().collect()}
    while day <= last:
        if day in days_with_items:
            report.days.append(assign_sids(lake, codebook_version, day, tokenizer=tokenizer))
        day += dt_.timedelta(days=1)
    return report


# ---------------------------------------------------------------------------------------
# Reports for people


def quality_row(lake: Lake, codebook_version: str) -> dict:
    """A version's index.sid_quality row, with its code budget and identical-vector floor."""
    version_info = version_row(lake, codebook_version)
    rows = lake.read(index.SID_QUALITY).filter(F.col("version") == codebook_version).collect() if lake.exists(index.SID_QUALITY) else []
    if not rows:
        raise NotFoundError(f"codebook version {codebook_version} has no quality row yet: assign its SIDs first")
    out = rows[0].asDict()
    out["codes"] = " x ".join(str(s) for s in version_info["level_sizes"])
    out["conflict_floor"] = json.loads(version_info["metrics"]).get("conflict_floor", 0.0)
    out["template_id"] = version_info["template_id"]
    return out


def quality_table(rows: list[dict]) -> str:
    """A markdown table comparing versions (one dict of `quality_row` per row)."""
    head = ("| version | method | vectors | codes | conflict | floor | exclusive | items alone | largest bucket | code usage per level "
            "| geo L1 km | geo L2 km | random km | recon. MSE |")  # fmt: skip
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        usage = " / ".join(f"{u:.0%}" for u in r["code_usage"])
        mse = "-" if r.get("reconstruction_mse") is None else f"{r['reconstruction_mse']:.4f}"
        lines.append(
            f"| {r['version']} | {r['method']} | {r['template_id']} | {r['codes']} | {r['conflict_rate']:.2%} | {r['conflict_floor']:.2%} | "
            f"{r['exclusive_rate']:.2%} | {r['items_alone_rate']:.2%} | {r['largest_bucket']} | {usage} | "
            f"{fmt(r['geo_coherence_l1_km'])} | {fmt(r['geo_coherence_l2_km'])} | {fmt(r['geo_baseline_km'])} | {mse} |"
        )
    return "\n".join(lines)


def sid_report(lake: Lake, codebook_version: str, out_dir: str | Path) -> tuple[str, list[Path]]:
    """Text report of a version plus three PNG plots under out_dir; returns (text, plot paths)."""
    from geosid.quantization.plots import (
        bucket_size_plot,
        code_usage_plot,
        first_level_map,
    )

    row = version_row(lake, codebook_version)
    quality = quality_row(lake, codebook_version)
    sizes = [int(s) for s in row["level_sizes"]]
    sid_map = lake.read(index.SID_MAP).filter(F.col("version") == codebook_version).select("codes", "lat", "lon").toPandas()
    codes = np.array(sid_map["codes"].tolist(), np.int64).reshape(len(sid_map), len(sizes))
    buckets = lake.read(index.SID_COLLISIONS).filter(F.col("version") == codebook_version).select("n_items").toPandas().n_items
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        code_usage_plot(codes, sizes, out_dir / "code_usage.png"),
        bucket_size_plot(buckets.to_numpy(), out_dir / "bucket_sizes.png"),
        first_level_map(codes[:, 0], sid_map.lat.to_numpy(), sid_map.lon.to_numpy(), out_dir / "first_level_map.png"),
    ]
    metrics = json.loads(row["metrics"])
    item_geo = row.get("item_geo_version")
    pinned = f"embeddings table version {row['embeddings_version']}" + (
        f", item_geo table version {int(item_geo)}" if item_geo is not None and not pd.isna(item_geo) else ""
    )
    text = "\n".join(
        [
            f"codebook version {codebook_version}: {row['method']}, status {row['status']}, codes {' x '.join(map(str, sizes))}",
            f"  trained on {row['n_items']:,} items of {row['model_id']} / {row['template_id']} as of {row['created_dt']} ({pinned})",
            f"  items with SIDs  {quality['items']:,}   distinct code tuples {quality['sids']:,}",
            f"  conflict rate    {quality['conflict_rate']:.2%} (floor from identical embeddings: {metrics.get('conflict_floor', 0):.2%})",
            f"  exclusive rate   {quality['exclusive_rate']:.2%}",
            f"  items alone      {quality['items_alone_rate']:.2%}",
            f"  largest bucket   {quality['largest_bucket']}",
            f"  code usage       {', '.join(f'{u:.1%}' for u in quality['code_usage'])}",
            f"  perplexity       {', '.join(f'{p:.1f}' for p in quality['perplexity'])}",
            f"  geo coherence    L1 {quality['geo_coherence_l1_km'] or 0:.2f} km, L2 {quality['geo_coherence_l2_km'] or 0:.2f} km "
            f"(random pairs {quality['geo_baseline_km'] or 0:.2f} km)",
            f"  reconstruction   MSE {metrics.get('reconstruction_mse') or 0:.4f}, fit {_fit_seconds(row):.1f}s",
            f"  plots            {', '.join(str(p) for p in paths)}",
        ]
    )
    return text, paths
