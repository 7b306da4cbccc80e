"""The SID index: fit codebook versions, publish them, assign SIDs, measure collisions.

- fit_candidate: train a quantizer on a pinned snapshot of silver.item_embeddings; the
  version id hashes the parameters, the embedding model / template and the snapshot's
  table version, so the same inputs give the same version. Writes the codebooks, the
  version row (status candidate), the SIDs of the snapshot's items and the quality tables.
- publish: gates on conflict / exclusive rate and code usage; a published version is
  immutable (re-fitting or overwriting it fails); the previously published one retires.
- assign_sids: items with an embedding but no SID under a version get one, on the engine
  (the codebook travels inside the mapInPandas closure). Rows are only ever added: an
  existing item's SID never moves; a new item colliding with existing ones takes the next
  disambiguation digit of its bucket.
"""

from __future__ import annotations

import datetime as dt_
import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window, functions as F

from geosid.jobs.lake import Lake, as_date
from geosid.quantization.geo_prefix import GeoPrefixTokenizer
from geosid.quantization.metrics import conflict_floor, sid_quality
from geosid.quantization.residual import ResidualKMeans, ResidualKMeansFSQ, from_params
from geosid.schemas import index, silver

METHODS = ("residual_kmeans", "residual_kmeans_fsq", "geo_prefix")


class ImmutableVersionError(RuntimeError):
    """A published (or retired) codebook version cannot be changed."""


class GateError(RuntimeError):
    """A candidate version failed the publish gates."""


@dataclass(frozen=True)
class CodebookSpec:
    """What to fit. `codes`: codes per level (None: sized to the data, 3 levels)."""

    method: str = "residual_kmeans_fsq"
    codes: tuple[int, ...] | None = None
    niter: int = 20
    seed: int = 1234
    sample_size: int | None = None
    fsq_epochs: int = 100
    fsq_lr: float = 0.01

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")


def default_codes(n_items: int, levels: int = 3) -> tuple[int, ...]:
    """Codes per level sized to the data: the power of two at or above twice the
    levels-th root of the item count (so the code space is ~2^levels x the items),
    between 16 and 8192 (OneLoc / OneMall use 3 x 8192 at scale)."""
    k = 2 ** math.ceil(math.log2(max(2.0, 2 * n_items ** (1 / levels))))
    return (int(min(max(k, 16), 8192)),) * levels


def fsq_levels_for(k: int) -> tuple[int, ...]:
    """FSQ levels whose product is k (a power of two): channels of 8 (then 4 / 2)."""
    if k & (k - 1):
        raise ValueError(f"the FSQ level's code count must be a power of two, got {k}")
    bits = int(math.log2(k))
    levels = [8] * (bits // 3)
    if bits % 3:
        levels.append(2 ** (bits % 3))
    return tuple(levels)


def build_quantizer(spec: CodebookSpec, d: int, codes: tuple[int, ...]):
    if spec.method == "residual_kmeans":
        return ResidualKMeans(d, codes, spec.niter, spec.seed, spec.sample_size)
    if spec.method == "residual_kmeans_fsq":
        return ResidualKMeansFSQ(
            d, codes[:-1], fsq_levels_for(codes[-1]), spec.niter, spec.seed, spec.sample_size, epochs=spec.fsq_epochs, lr=spec.fsq_lr
        )
    return GeoPrefixTokenizer(d, codes, spec.niter, spec.seed, spec.sample_size)


def level_sizes(quantizer) -> tuple[int, ...]:
    return tuple(getattr(quantizer, "level_sizes", None) or quantizer.codes)


def encode(quantizer, x: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    if isinstance(quantizer, GeoPrefixTokenizer):
        return quantizer.encode(x, lat, lon)
    return quantizer.encode(x)


def restore(params: dict, arrays: dict[str, np.ndarray]):
    if params["kind"] == GeoPrefixTokenizer.kind:
        return GeoPrefixTokenizer.from_arrays(params, arrays)
    return from_params(params, arrays)


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
# I/O helpers


@dataclass
class TrainingSet:
    keys: pd.DataFrame  # source, item_id, first_seen, lat, lon
    x: np.ndarray  # [n, d] float32
    model_id: str
    template_id: str
    embeddings_version: int


def item_locations(lake: Lake, as_of: dt_.date | None = None) -> DataFrame:
    """Each item's first_seen and location as of `as_of` (default: the latest day)."""
    item_geo = lake.read(silver.ITEM_GEO)
    day = as_of or item_geo.agg(F.max("dt")).collect()[0][0]
    return item_geo.filter(F.col("dt") == F.lit(day)).select("source", "item_id", "first_seen", "lat", "lon").dropDuplicates(["source", "item_id"])


def load_training_set(lake: Lake, model_id: str | None, template_id: str, embeddings_version: int | None) -> TrainingSet:
    version = embeddings_version if embeddings_version is not None else lake.version(silver.ITEM_EMBEDDINGS)
    embeddings = lake.read(silver.ITEM_EMBEDDINGS, version=version).filter(F.col("template_id") == template_id)
    if model_id is None:
        models = [r.model_id for r in embeddings.select("model_id").distinct().collect()]
        if len(models) != 1:
            raise ValueError(f"choose a model: the embeddings hold {models}")
        model_id = models[0]
    rows = (
        embeddings.filter(F.col("model_id") == model_id)
        .join(item_locations(lake), ["source", "item_id"])
        .select("source", "item_id", "first_seen", "lat", "lon", "vector")
        .orderBy("source", "item_id")
        .toArrow()
    )
    if rows.num_rows == 0:
        raise ValueError(f"no embeddings of model {model_id!r} and template {template_id!r} at version {version}")
    x = np.stack(rows.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)  # [n, d]
    keys = rows.drop_columns(["vector"]).to_pandas()
    return TrainingSet(keys, x, model_id, template_id, version)


def version_id(params: dict, model_id: str, template_id: str, embeddings_version: int) -> str:
    payload = json.dumps({"params": params, "model": model_id, "template": template_id, "embeddings_version": embeddings_version}, sort_keys=True)
    return "cb-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def versions(lake: Lake) -> pd.DataFrame:
    if not lake.exists(index.CODEBOOK_VERSIONS):
        return pd.DataFrame(columns=index.CODEBOOK_VERSIONS.columns)
    return lake.read(index.CODEBOOK_VERSIONS).toPandas()


def version_row(lake: Lake, version: str) -> dict:
    table = versions(lake)
    match = table[table.version == version]
    if match.empty:
        raise KeyError(f"no codebook version {version!r}; known: {sorted(table.version)}")
    return match.iloc[0].to_dict()


def load_quantizer(lake: Lake, version: str):
    row = version_row(lake, version)
    arrays: dict[str, list] = {}
    for r in lake.read(index.CODEBOOKS).filter(F.col("version") == version).orderBy("kind", "row").collect():
        arrays.setdefault(r.kind, []).append(np.asarray(r["values"], np.float32))
    stacked = {kind: np.stack(rows) for kind, rows in arrays.items()}
    for kind in ("fsq_b_in", "fsq_b_out"):
        if kind in stacked:
            stacked[kind] = stacked[kind][0]
    return restore(json.loads(row["params"]), stacked)


def _codebook_rows(spark, version: str, quantizer) -> DataFrame:
    rows = []
    for kind, array in quantizer.arrays().items():
        matrix = np.atleast_2d(np.asarray(array, np.float32))
        rows += [(version, kind, i, [float(v) for v in matrix[i]]) for i in range(len(matrix))]
    return spark.createDataFrame(rows, index.CODEBOOKS.schema)


# ---------------------------------------------------------------------------------------
# Lifecycle


@dataclass
class FitReport:
    version: str
    method: str
    level_sizes: tuple[int, ...]
    n_items: int
    metrics: dict
    seconds: float
    fit_seconds: float
    assign: "AssignReport | None" = None

    def summary(self) -> str:
        m = self.metrics
        return (
            f"codebook {self.version} ({self.method}, {' x '.join(map(str, self.level_sizes))} codes) on {self.n_items:,} items: "
            f"conflict {m['conflict_rate']:.2%} (floor {m.get('conflict_floor', 0):.2%}), exclusive {m['exclusive_rate']:.2%}, "
            f"alone {m['items_alone_rate']:.2%}, "
            f"largest bucket {m['largest_bucket']}, fit {self.fit_seconds:.1f}s"
        )


def fit_candidate(
    spark,
    lake: Lake,
    spec: CodebookSpec,
    as_of: dt_.date | str,
    model_id: str | None = None,
    template_id: str = "geo-doc-v1",
    embeddings_version: int | None = None,
    reuse_published: bool = False,
) -> FitReport:
    """Fit a candidate version on a pinned embeddings snapshot and write it (see module doc).

    The same inputs give the same version id. If that version is already published (or
    retired) it is immutable: this raises ImmutableVersionError, or with
    `reuse_published` returns the stored version's report and writes nothing.
    """
    started = time.perf_counter()
    as_of = as_date(as_of)
    data = load_training_set(lake, model_id, template_id, embeddings_version)
    codes = spec.codes or default_codes(len(data.x))
    quantizer = build_quantizer(spec, data.x.shape[1], codes)
    params = {**quantizer.params(), "spec": asdict(spec)}
    version = version_id(params, data.model_id, data.template_id, data.embeddings_version)
    existing = versions(lake)
    if version in set(existing.version) and version_row(lake, version)["status"] != "candidate":
        stored = version_row(lake, version)
        if not reuse_published:
            raise ImmutableVersionError(f"codebook version {version} is {stored['status']}: it cannot be re-fitted")
        metrics = json.loads(stored["metrics"])
        sizes = tuple(int(v) for v in stored["level_sizes"])
        return FitReport(version, spec.method, sizes, int(stored["n_items"]), metrics, time.perf_counter() - started, metrics.get("fit_seconds", 0.0))
    fit_started = time.perf_counter()
    lat, lon = data.keys.lat.to_numpy(), data.keys.lon.to_numpy()
    if isinstance(quantizer, GeoPrefixTokenizer):
        quantizer.train(data.x, lat, lon)
    else:
        quantizer.train(data.x)
    fit_seconds = time.perf_counter() - fit_started
    sizes = level_sizes(quantizer)
    metrics = sid_quality(encode(quantizer, data.x, lat, lon), sizes, lat, lon)
    metrics["reconstruction_mse"] = quantizer.level_mse[-1] if quantizer.level_mse else None
    metrics["conflict_floor"] = conflict_floor(data.x)
    metrics["fit_seconds"] = round(fit_seconds, 3)
    where = f"version = '{version}'"
    lake.write(_codebook_rows(spark, version, quantizer), index.CODEBOOKS, where=where)
    row = (
        version, spec.method, "candidate", json.dumps(params, sort_keys=True), list(sizes), data.model_id, data.template_id,
        int(data.embeddings_version), len(data.x), json.dumps(metrics, sort_keys=True, default=float), as_of, None, None,
    )
    lake.merge(spark.createDataFrame([row], index.CODEBOOK_VERSIONS.schema), index.CODEBOOK_VERSIONS)
    # A candidate's SIDs are rebuilt from scratch on every fit.
    if lake.exists(index.SID_MAP):
        lake.write(spark.createDataFrame([], index.SID_MAP.schema), index.SID_MAP, where=where)
    report = FitReport(version, spec.method, sizes, len(data.x), metrics, 0.0, fit_seconds)
    report.assign = assign_sids(spark, lake, version, as_of, quantizer=quantizer)
    report.seconds = time.perf_counter() - started
    return report


def _require_mutable(lake: Lake, version: str) -> dict:
    row = version_row(lake, version)
    if row["status"] != "candidate":
        raise ImmutableVersionError(f"codebook version {version} is {row['status']} and immutable")
    return row


@dataclass(frozen=True)
class Gates:
    """Publish gates. Conflicts are judged above the floor that identical documents set
    (a catalog of venues named only by category has many); OneMall-grade targets
    (exclusive >= 95%) suit catalogs whose documents are distinct."""

    max_excess_conflict: float = 0.15  # conflict rate minus the identical-embedding floor
    min_exclusive_rate: float = 0.50
    min_code_usage: float = 0.20  # of every level


def publish(spark, lake: Lake, version: str, as_of: dt_.date | str, gates: Gates = Gates()) -> dict:
    """candidate -> published (after the gates); the model's previously published version retires."""
    row = _require_mutable(lake, version)
    metrics = json.loads(row["metrics"])
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
    if failures:
        raise GateError(f"codebook version {version} not published: " + "; ".join(failures))
    as_of = as_date(as_of)
    table = versions(lake)
    updates = []
    for _, other in table.iterrows():
        if other.status == "published" and other.model_id == row["model_id"] and other.template_id == row["template_id"]:
            updates.append({**other.to_dict(), "status": "retired", "retired_dt": as_of})
    updates.append({**row, "status": "published", "published_dt": as_of})
    frame = pd.DataFrame(updates)[index.CODEBOOK_VERSIONS.columns]
    frame["level_sizes"] = frame["level_sizes"].map(lambda v: [int(x) for x in v])
    for column in ("published_dt", "retired_dt", "created_dt"):
        frame[column] = frame[column].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
    lake.merge(spark.createDataFrame(frame.to_dict("records"), index.CODEBOOK_VERSIONS.schema), index.CODEBOOK_VERSIONS)
    return {"version": version, "status": "published", "retired": [u["version"] for u in updates[:-1]]}


def published_version(lake: Lake, model_id: str | None = None, template_id: str | None = None) -> str | None:
    table = versions(lake)
    table = table[table.status == "published"]
    if model_id:
        table = table[table.model_id == model_id]
    if template_id:
        table = table[table.template_id == template_id]
    return None if table.empty else str(table.sort_values("published_dt").iloc[-1].version)


@dataclass
class AssignReport:
    version: str
    dt: dt_.date
    new_items: int
    total_items: int
    seconds: float

    def summary(self) -> str:
        return f"SIDs under {self.version} as of {self.dt}: {self.new_items:,} new, {self.total_items:,} in all, in {self.seconds:.1f}s"


def assign_sids(spark, lake: Lake, version: str, as_of: dt_.date | str, quantizer=None) -> AssignReport:
    """Give every item with an embedding (and location) as of `as_of` a SID under `version`."""
    started = time.perf_counter()
    as_of = as_date(as_of)
    row = version_row(lake, version)
    quantizer = quantizer or load_quantizer(lake, version)
    embeddings = lake.read(silver.ITEM_EMBEDDINGS).filter(
        (F.col("model_id") == row["model_id"]) & (F.col("template_id") == row["template_id"])
    )
    candidates = embeddings.join(item_locations(lake, as_of), ["source", "item_id"]).select(
        "source", "item_id", "first_seen", "lat", "lon", "vector"
    )
    existing = (
        lake.read(index.SID_MAP).filter(F.col("version") == version)
        if lake.exists(index.SID_MAP)
        else spark.createDataFrame([], index.SID_MAP.schema)
    )
    new = candidates.join(existing.select("source", "item_id"), ["source", "item_id"], "left_anti")
    coded_schema = "source string, item_id string, first_seen timestamp, lat double, lon double, codes array<int>"

    def tokenize(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            x = np.stack(pdf["vector"].to_numpy()).astype(np.float32) if len(pdf) else np.zeros((0, 1), np.float32)
            codes = encode(quantizer, x, pdf["lat"].to_numpy(), pdf["lon"].to_numpy()) if len(pdf) else np.zeros((0, 0), np.int32)
            yield pd.DataFrame(
                {
                    "source": pdf["source"], "item_id": pdf["item_id"], "first_seen": pdf["first_seen"],
                    "lat": pdf["lat"], "lon": pdf["lon"], "codes": [list(map(int, c)) for c in codes],
                }
            )

    coded = lake.checkpoint(new.mapInPandas(tokenize, coded_schema), f"assign-{version}-{as_of}")
    try:
        n_new = coded.count()
        if n_new:
            rows = with_disambiguation(coded, existing).select(
                F.lit(version).alias("version"), "source", "item_id", "codes", "disambiguation", "sid",
                "first_seen", "lat", "lon", F.lit(as_of).alias("assigned_dt"),
            )
            lake.merge(rows, index.SID_MAP, insert_only=True)
    finally:
        lake.drop_checkpoints(f"assign-{version}-{as_of}")
    write_quality(spark, lake, version, as_of)
    total = lake.read(index.SID_MAP).filter(F.col("version") == version).count()
    return AssignReport(version, as_of, n_new, total, time.perf_counter() - started)


def write_quality(spark, lake: Lake, version: str, as_of: dt_.date) -> dict:
    """Recompute index.sid_collisions and index.sid_quality of a version from its SID map."""
    row = version_row(lake, version)
    sid_map = lake.read(index.SID_MAP).filter(F.col("version") == version)
    lake.write(collisions(sid_map), index.SID_COLLISIONS, where=f"version = '{version}'")
    local = sid_map.select("codes", "lat", "lon").toPandas()
    sizes = tuple(int(s) for s in row["level_sizes"])
    codes = np.array(local["codes"].tolist(), np.int64).reshape(len(local), len(sizes))
    metrics = sid_quality(codes, sizes, local["lat"].to_numpy(), local["lon"].to_numpy())
    fit_metrics = json.loads(row["metrics"])
    quality = (
        version, row["method"], metrics["items"], metrics["sids"], metrics["conflict_rate"], metrics["exclusive_rate"],
        metrics["items_alone_rate"], metrics["largest_bucket"], [float(v) for v in metrics["code_usage"]],
        [float(v) for v in metrics["perplexity"]], metrics.get("geo_coherence_l1_km"), metrics.get("geo_coherence_l2_km"),
        metrics.get("geo_baseline_km"), fit_metrics.get("reconstruction_mse"), as_of,
    )
    lake.write(spark.createDataFrame([quality], index.SID_QUALITY.schema), index.SID_QUALITY, where=f"version = '{version}'")
    return metrics


@dataclass
class BackfillReport:
    version: str
    days: list = field(default_factory=list)

    def summary(self) -> str:
        new = sum(d.new_items for d in self.days)
        return f"backfill {self.version}: {len(self.days)} days, {new:,} items given SIDs"


def backfill(spark, lake: Lake, version: str, first: dt_.date | str, last: dt_.date | str) -> BackfillReport:
    """Tokenize every item of the days [first, last] under `version` (existing SIDs stay);
    other versions' tables are untouched and stay readable."""
    row = version_row(lake, version)
    if row["status"] == "retired":
        raise ImmutableVersionError(f"codebook version {version} is retired; backfill a published or candidate version")
    quantizer = load_quantizer(lake, version)
    report = BackfillReport(version)
    day, last = as_date(first), as_date(last)
    days_with_items = {r.dt for r in lake.read(silver.ITEM_GEO).select("dt").distinct().collect()}
    while day <= last:
        if day in days_with_items:
            report.days.append(assign_sids(spark, lake, version, day, quantizer=quantizer))
        day += dt_.timedelta(days=1)
    return report
