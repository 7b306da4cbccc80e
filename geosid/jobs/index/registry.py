"""Codebook versions: the spec a version is fit from, its id, the version rows of
`index.codebook_versions` and the tokenizer they store; which version is in force on a day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt_
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.errors import ImmutableVersionError, InvalidRequestError, UnknownNameError
from geosid.lake import Lake, as_date
from geosid.quantization.base import TOKENIZERS, Tokenizer, TokenizerKind, restore, state, tokenizer_class
from geosid.quantization.levels import KMeansTraining
from geosid.schemas import index

METHODS = tuple(TOKENIZERS)


DEFAULT_TEMPLATE = "geo-doc-v1"


@dataclass(frozen=True)
class CodebookSpec:
    """What to fit. `codes`: codes per level (None: sized to the data, 3 levels)."""

    method: TokenizerKind = "residual_kmeans_fsq"
    codes: tuple[int, ...] | None = None
    niter: int = 20
    seed: int = 1234
    sample_size: int | None = None
    # FSQ's projection starts from PCA: on the NYC geo vectors 40 epochs reach a residual
    # MSE within 0.2% of 200 epochs' (measured), at a fifth of the time
    fsq_epochs: int = 40
    fsq_lr: float = 0.01
    capacity_aware: bool = False  # last level by capacity-aware assignment
    # an aligned re-fit: warm-started from this version, its codes renamed to its ids, and
    # an item keeps its code there when it costs at most (1 + stickiness) x the best code
    align_to: str | None = None
    stickiness: float = 0.1

    def __post_init__(self):
        if self.method not in METHODS:
            raise InvalidRequestError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.stickiness < 0:
            raise InvalidRequestError(f"stickiness is a relative cost, >= 0; got {self.stickiness}")

    def stored(self) -> dict:
        """What a version's params record of the spec (the alignment fields only when
        aligned, so the ids of versions fitted before alignment existed stay the same)."""
        out = dataclasses.asdict(self)
        if self.align_to is None:
            del out["align_to"], out["stickiness"]
        return out

    @property
    def label(self) -> str:
        """The method as tables and reports name it: `residual_kmeans+capacity` etc."""
        return self.method + ("+capacity" if self.capacity_aware else "")

    def build(self, d: int, level_sizes: tuple[int, ...]) -> Tokenizer:
        training = KMeansTraining(self.niter, self.seed, self.sample_size)
        options = {"stickiness": self.stickiness} if self.align_to else {}
        return tokenizer_class(self.method).for_budget(
            d, level_sizes, training, fsq_epochs=self.fsq_epochs, fsq_lr=self.fsq_lr, capacity_aware=self.capacity_aware, **options
        )


def parse_codes(text: str | None) -> tuple[int, ...] | None:
    """Codes per level from `64,64,64` (None or empty: sized to the data)."""
    if not text:
        return None
    try:
        codes = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise InvalidRequestError(f"codes per level must be integers joined by commas, e.g. 64,64,64; got {text!r}") from None
    if any(c < 2 for c in codes):
        raise InvalidRequestError(f"every level needs at least 2 codes; got {text!r}")
    return codes


def default_codes(n_items: int, levels: int = 3) -> tuple[int, ...]:
    """Codes per level sized to the data: the power of two at or above twice the
    levels-th root of the item count (so the code space is ~2^levels x the items),
    between 16 and 8192 (OneLoc / OneMall use 3 x 8192 at scale)."""
    k = 2 ** math.ceil(math.log2(max(2.0, 2 * n_items ** (1 / levels))))
    return (int(min(max(k, 16), 8192)),) * levels


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


def version_metrics(row: dict) -> dict:
    """The metrics of a version row (stored as a JSON string column; parsed here only)."""
    return json.loads(row["metrics"]) if row.get("metrics") else {}


def version_params(row: dict) -> dict:
    """The tokenizer parameters of a version row (`spec`, what was asked, kept for the record, dropped)."""
    return {k: v for k, v in json.loads(row["params"]).items() if k != "spec"}


def as_json(value: dict) -> str:
    """How params and metrics are stored: sorted keys, numpy scalars as floats."""
    return json.dumps(value, sort_keys=True, default=float)


def level_sizes_of(lake: Lake, codebook_version: str) -> tuple[int, ...]:
    return tuple(int(s) for s in version_row(lake, codebook_version)["level_sizes"])


def load_tokenizer(lake: Lake, codebook_version: str) -> Tokenizer:
    """The trained tokenizer of a version, from index.codebooks."""
    row = version_row(lake, codebook_version)
    arrays: dict[str, list] = {}
    for r in lake.read(index.CODEBOOKS).filter(F.col("version") == codebook_version).orderBy("kind", "row").collect():
        arrays.setdefault(r.kind, []).append(np.asarray(r["values"], np.float32))
    return restore(version_params(row), {kind: np.stack(rows) for kind, rows in arrays.items()})


def codebook_rows(spark, codebook_version: str, tokenizer: Tokenizer) -> DataFrame:
    rows = []
    for kind, array in state(tokenizer).items():
        matrix = np.atleast_2d(np.asarray(array, np.float32))
        rows += [(codebook_version, kind, i, [float(v) for v in matrix[i]]) for i in range(len(matrix))]
    return spark.createDataFrame(rows, index.CODEBOOKS.schema)


def published_version(lake: Lake, as_of: dt_.date | str | None = None, model_id: str | None = None, template_id: str | None = None) -> str | None:
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


def require_mutable(lake: Lake, codebook_version: str) -> dict:
    row = version_row(lake, codebook_version)
    if row["status"] != "candidate":
        raise ImmutableVersionError(f"codebook version {codebook_version} is {row['status']} and immutable")
    return row
