"""The training set of a codebook version: items known on a logical date with their
location and latest embedding, read from pinned table versions of silver.
"""

from __future__ import annotations

import datetime as dt_
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.errors import InvalidRequestError, NotFoundError
from geosid.jobs.embed import latest_vectors
from geosid.jobs.index.registry import DEFAULT_TEMPLATE
from geosid.lake import Lake
from geosid.schemas import silver


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
