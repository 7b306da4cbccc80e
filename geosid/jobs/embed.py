"""Embed: silver.item_geo -> documents -> silver.item_embeddings, incrementally.

A representation is a document template, a text encoder and, for templates that carry
the item's exact location (geo-doc-v2), a location encoder: the stored vector is then the
fusion of the text embedding and the location encoding, and the model id names both
(`<text model>+<location encoder id>`), so vectors of different representations never
mix. The text embedding of a document is computed once: a template whose text is
another template's document (geo-doc-v2 reads geo-doc-v1's) reuses the stored vector.

The table keeps a row per item and day on which its document changed: a day embeds the
documents whose item has no vector before the day, or whose latest vector before it is
of another document. So a day's rows depend on the inputs up to it only: a re-run of the
same day embeds nothing, a re-run of an older day leaves the later days' rows alone, and
a repair that rebuilds the days in order keeps each day's rows that still hold (their
vectors are not computed again) and replaces the rest. Embedding runs on the engine's workers (mapInPandas); each worker process loads
the model once.
"""

from __future__ import annotations

import datetime as dt_
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.embedding.documents import TEMPLATE_V1, TEXT_TEMPLATE, WITH_LOCATION, documents
from geosid.embedding.encoders import MINILM_RUNTIMES, load_encoder, minilm_model_id, resolve_spec
from geosid.embedding.location import LocationEncoder
from geosid.errors import InvalidRequestError
from geosid.lake import Lake, as_date
from geosid.schemas import silver

EMBEDDING_COLUMNS = [f.name for f in silver.ITEM_EMBEDDINGS.schema.fields]


def text_model_id(spec: str) -> str:
    """The model id a text encoder spec embeds with, known without loading the model."""

    if resolve_spec(spec) in MINILM_RUNTIMES:
        return minilm_model_id(spec)
    if spec.startswith("hf:"):
        return f"hf:{os.path.basename(os.path.normpath(spec[3:]))}"
    raise InvalidRequestError(f"unknown encoder {spec!r}: use minilm, {', '.join(MINILM_RUNTIMES)} or hf:<model dir>")


@dataclass(frozen=True)
class Representation:
    """How an item becomes a vector: a template, a text encoder, a location encoder (for
    templates with a location part)."""

    template_id: str = TEMPLATE_V1
    encoder: str = "minilm"
    location: LocationEncoder | None = None

    def __post_init__(self):
        if WITH_LOCATION.get(self.template_id) and self.location is None:
            object.__setattr__(self, "location", LocationEncoder())
        if not WITH_LOCATION.get(self.template_id, False) and self.location is not None:
            raise InvalidRequestError(f"template {self.template_id} carries no location: it takes no location encoder")

    @property
    def text_model_id(self) -> str:
        return text_model_id(self.encoder)

    @property
    def model_id(self) -> str:
        return self.text_model_id + (f"+{self.location.encoder_id}" if self.location else "")

    def to_record(self) -> dict:
        """As a build records it (`ops.builds.params`)."""
        return {"template": self.template_id, "encoder": self.encoder, "location_weight": self.location.weight if self.location else None}

    @classmethod
    def from_record(cls, params: dict) -> Representation:
        weight = params.get("location_weight")
        return cls(params["template"], params["encoder"], LocationEncoder(weight=weight) if weight is not None else None)


KEYS = ["source", "item_id", "template_id"]


def latest_vectors(embeddings: DataFrame, model_id: str, upto: dt_.date, *, inclusive: bool = True) -> DataFrame:
    """Each item's latest row of `model_id` made on or before `upto` (strictly before, with
    `inclusive` False): its vector as of that day."""
    made = F.col("embedded_dt") <= F.lit(upto) if inclusive else F.col("embedded_dt") < F.lit(upto)
    rows = embeddings.filter((F.col("model_id") == model_id) & made)
    latest = rows.groupBy(*KEYS).agg(F.max("embedded_dt").alias("embedded_dt"))
    return rows.join(latest, [*KEYS, "embedded_dt"], "left_semi")


def pending(docs: DataFrame, existing: DataFrame, model_id: str, as_of: dt_.date) -> DataFrame:
    """Documents that `as_of` embeds: no vector of the item before the day, or its latest
    one before the day is of another document."""
    before = latest_vectors(existing, model_id, as_of, inclusive=False).select(*KEYS, F.col("doc_hash").alias("embedded_hash"))
    return (
        docs.join(before, KEYS, "left").filter(F.col("embedded_hash").isNull() | (F.col("embedded_hash") != F.col("doc_hash"))).drop("embedded_hash")
    )


def made_on(existing: DataFrame, model_id: str, template_id: str, day: dt_.date) -> DataFrame:
    """The rows `day` already holds for a representation (an earlier or killed run of it)."""
    return existing.filter((F.col("model_id") == model_id) & (F.col("template_id") == template_id) & (F.col("embedded_dt") == F.lit(day)))


def embed_partitions(representation: Representation, embedded_dt: dt_.date, *, progress: bool = True) -> Callable:
    """The mapInPandas function: document batches (with `text_vector` where the text is
    already embedded) -> embedding rows."""
    model_id, location = representation.model_id, representation.location

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        encoder = None
        done = 0
        for pdf in batches:
            if not len(pdf):
                continue
            known = pdf["text_vector"].notna().to_numpy()
            if (~known).any() and encoder is None:
                encoder = load_encoder(representation.encoder)
                if encoder.model_id != representation.text_model_id:
                    raise RuntimeError(f"worker loaded {encoder.model_id}, the driver expected {representation.text_model_id}")
            text = np.zeros((len(pdf), encoder.dim if encoder else len(pdf["text_vector"].iloc[0])), np.float32)  # [n, d]
            if known.any():
                text[known] = np.stack(pdf["text_vector"][known].to_numpy())
            if (~known).any():
                text[~known] = encoder.encode(pdf["text"][~known].tolist())  # float32, unit rows
            vectors = location.fuse(text, pdf["lat"].to_numpy(), pdf["lon"].to_numpy()) if location else text  # [n, D]
            assert len(vectors) == len(pdf), f"vectors {vectors.shape} for {len(pdf)} documents"
            done += len(pdf)
            if progress:
                print(f"    embedded {done:,} documents in this partition", file=sys.stderr, flush=True)
            yield pd.DataFrame(
                {
                    "source": pdf["source"],
                    "item_id": pdf["item_id"],
                    "template_id": pdf["template_id"],
                    "model_id": model_id,
                    "doc_hash": pdf["doc_hash"],
                    "document": pdf["document"],
                    "dim": vectors.shape[1],
                    "vector": list(vectors),
                    "embedded_dt": embedded_dt,
                }
            )[EMBEDDING_COLUMNS]

    return run


@dataclass
class EmbedReport:
    dt: dt_.date
    model_id: str
    template_id: str
    items: int
    embedded: int
    seconds: float
    table_version: int | None
    text_reused: int = 0  # of the embedded, how many took a stored text vector

    def to_dict(self) -> dict:
        return {
            "dt": self.dt.isoformat(),
            "model_id": self.model_id,
            "template_id": self.template_id,
            "items": self.items,
            "embedded": self.embedded,
            "text_reused": self.text_reused,
            "table_version": self.table_version,
            "seconds": round(self.seconds, 2),
        }

    @property
    def docs_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"embeddings {self.dt}: {self.embedded:,} of {self.items:,} documents embedded "
            f"({self.items - self.embedded:,} unchanged) with {self.model_id}, template {self.template_id}, "
            f"in {self.seconds:.1f}s" + (f"; {self.text_reused:,} reused a stored text vector" if self.text_reused else "")
        )


def with_text_vectors(todo: DataFrame, existing: DataFrame, representation: Representation) -> DataFrame:
    """Add `text_vector`: the stored embedding of the row's text under its text template
    and the same text encoder, when there is one (null otherwise)."""
    text_template = TEXT_TEMPLATE[representation.template_id]
    stored = existing.filter((F.col("template_id") == text_template) & (F.col("model_id") == representation.text_model_id)).select(
        "source", "item_id", F.col("doc_hash").alias("text_hash"), F.col("vector").alias("text_vector")
    )
    # a text embedded on several days (it changed, then changed back) has one vector
    stored = stored.dropDuplicates(["source", "item_id", "text_hash"])
    return todo.join(stored, ["source", "item_id", "text_hash"], "left")


def run_embed(
    lake: Lake, as_of: dt_.date | str, representation: Representation = Representation(), *, progress: bool = True, chunk_size: int = 4096, log=print
) -> EmbedReport:
    """Embed the documents of the items of `as_of` (from silver.item_geo) that changed
    since the item's latest vector before the day (or have none).

    The work is committed in chunks of about `chunk_size` documents (a hash of the item
    picks its chunk): a run killed midway keeps every chunk it committed, and the re-run
    embeds only the rest. Rows of the day that no longer match (a repair after the day's
    inputs changed) are replaced first. Progress: documents done / total and documents/s
    per chunk."""
    started = time.perf_counter()
    as_of = as_date(as_of)
    model_id, template_id = representation.model_id, representation.template_id
    docs = documents(lake.read(silver.ITEM_GEO, dt=as_of), template_id)
    spark = lake.spark
    if lake.exists(silver.ITEM_EMBEDDINGS):
        existing = lake.read(silver.ITEM_EMBEDDINGS)
    else:
        existing = spark.createDataFrame([], silver.ITEM_EMBEDDINGS.schema)
    run = f"embed-{template_id}-{as_of}"
    due = lake.checkpoint(pending(docs, existing, model_id, as_of), f"{run}-due")
    today = made_on(existing, model_id, template_id, as_of)
    kept = today.join(due.select(*KEYS, "doc_hash"), [*KEYS, "doc_hash"], "left_semi")
    todo = with_text_vectors(due.join(today.select(*KEYS, "doc_hash"), [*KEYS, "doc_hash"], "left_anti"), existing, representation)
    todo = lake.checkpoint(todo, run)  # counted, then embedded: computed once
    try:
        n_items, n_todo = docs.count(), todo.count()
        day_scope = f"template_id = '{template_id}' AND model_id = '{model_id}' AND embedded_dt = DATE'{as_of.isoformat()}'"
        if lake.exists(silver.ITEM_EMBEDDINGS) and today.count() != kept.count():
            # rows of the day made from other inputs (a repair): the day keeps only what still holds
            lake.write(lake.checkpoint(kept, f"{run}-kept"), silver.ITEM_EMBEDDINGS, where=day_scope)
        reused = todo.filter(F.col("text_vector").isNotNull()).count() if n_todo else 0
        table_version = lake.table_version(silver.ITEM_EMBEDDINGS) if lake.exists(silver.ITEM_EMBEDDINGS) else None
        if n_todo:
            chunks = max(1, -(-n_todo // chunk_size))
            log(f"    embedding {n_todo:,} new or changed documents of {n_items:,} with {model_id} in {chunks} commit(s)")
            keyed = todo.withColumn("_chunk", F.pmod(F.xxhash64("source", "item_id"), F.lit(chunks)))
            sizes = {r["_chunk"]: r["count"] for r in keyed.groupBy("_chunk").count().collect()}
            done, chunk_started = 0, time.perf_counter()
            for chunk in range(chunks):
                part = keyed.filter(F.col("_chunk") == chunk).drop("_chunk")
                # Enough partitions for every core, each large enough to batch well.
                partitions = max(1, min(chunk_size // 2_000 + 1, int(spark.conf.get("spark.default.parallelism", "0") or 0) or 2))
                embedded = part.repartition(partitions, "item_id").mapInPandas(
                    embed_partitions(representation, as_of, progress=False), silver.ITEM_EMBEDDINGS.schema
                )
                table_version = lake.merge(embedded, silver.ITEM_EMBEDDINGS)
                done += sizes.get(chunk, 0)
                rate = done / max(time.perf_counter() - chunk_started, 1e-9)
                eta = (n_todo - done) / rate if rate else 0.0
                if progress or chunks > 1:
                    log(f"    committed chunk {chunk + 1}/{chunks}: {done:,} / {n_todo:,} documents, {rate:,.0f} documents/s, ETA {eta:,.0f}s")
    finally:
        lake.drop_checkpoints(run)
    return EmbedReport(as_of, model_id, template_id, n_items, n_todo, time.perf_counter() - started, table_version, reused)
