"""The tokenizer contract every quantizer implements, and the one registry that saves and
restores them.

A tokenizer maps item vectors x [n, d] (and, for spatial ones, item locations) to codes
[n, L] (one code per level; a semantic ID before its disambiguation digit). The shape
follows faiss's `Kmeans`:

    train(x, *, lat=None, lon=None) -> objective (sum of squared reconstruction errors)
    encode(x, *, lat=None, lon=None, taken=None) -> codes [n, L] int32
    decode(codes [n, L]) -> reconstruction [n, d] float32
    assign(x, *, lat=None, lon=None) -> (squared error [n], codes [n, L])
    level_sizes -> codes per level; level_mse -> mean squared residual after each level
    params() -> JSON-able constructor arguments (with "kind"); arrays() -> trained state

A tokenizer built with `capacity_aware=True` gives the last level by capacity-aware
assignment (`geosid.quantization.assignment`): within the items encoded together, and
away from the code tuples already `taken` ([t, L]), a code tuple holds one item where it
can. `encode_candidates` is the same split in two, for engines that compute candidates
per partition and resolve them in one place.

Tokenizers that can be aligned to an earlier version (`aligns = True`: the residual
ones) also take `train(x, align=Alignment(previous, codes))`: every level starts from
the previous tokenizer's level, and the new codes are renamed to the previous ids that
keep the most items. They encode with `prefer=` [n, L] (an item's codes under the
previous version, -1 where it has none): at every level, while the item's codes so far
equal its preferred ones, its preferred code is kept when its cost is within
`stickiness` (relative) of the best code's; the capacity-aware last level proposes it
first when it is among the item's candidates.

`restore(params, arrays)` rebuilds any trained tokenizer (from index.codebooks rows or
an .npz file); `save` / `load` write and read one file. Tokenizers that need item
locations set `uses_location = True` and refuse to train or encode without them.
"""

from __future__ import annotations

import importlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, get_args

import numpy as np

from geosid.quantization.assignment import resolve_last_level


def as_float32(x: np.ndarray, d: int | None = None) -> np.ndarray:
    """x as a C-contiguous float32 matrix [n, d]; asserts name the wrong dimension."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert x.ndim == 2, f"expected a matrix [n, d], got shape {x.shape}"
    if d is not None:
        assert x.shape[1] == d, f"expected dimension d={d}, got {x.shape[1]}"
    return x


@dataclass(frozen=True)
class Alignment:
    """What an aligned re-fit starts from: the previous version's trained tokenizer (same
    kind, dimension and level sizes) and the training items' codes under it, [n, L],
    -1 for the items it has no SID for."""

    previous: Tokenizer
    codes: np.ndarray


class Tokenizer(ABC):
    """See the module docstring for the contract."""

    kind: ClassVar[str]
    uses_location: ClassVar[bool] = False
    aligns: ClassVar[bool] = False  # train(align=...) and encode(prefer=...) supported
    stickiness: float = 0.0  # relative cost within which a preferred code is kept

    d: int
    level_mse: list[float]
    capacity_aware: bool = False
    candidates: int = 16  # last-level candidates per item for capacity-aware assignment

    @property
    @abstractmethod
    def level_sizes(self) -> tuple[int, ...]: ...

    @property
    def levels(self) -> int:
        return len(self.level_sizes)

    @abstractmethod
    def train(self, x: np.ndarray, *, lat: np.ndarray | None = None, lon: np.ndarray | None = None) -> float: ...

    @abstractmethod
    def nearest_codes(self, x: np.ndarray, *, lat=None, lon=None) -> np.ndarray:
        """codes [n, L] int32: every level's nearest code, item by item."""

    @abstractmethod
    def encode_candidates(self, x: np.ndarray, *, lat=None, lon=None, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prefix codes [n, L-1], last-level candidate codes [n, k] best first, their
        costs [n, k]); k defaults to `candidates`."""

    def widen(self, x: np.ndarray, lat=None, lon=None, k_max: int = 1024):
        """`resolve_last_level`'s widen callback over x: up to every code of the last level."""
        k = min(int(self.level_sizes[-1]), k_max)

        def more(rows: np.ndarray):
            sub = lambda a: None if a is None else np.asarray(a)[rows]
            _, codes, cost = self.encode_candidates(np.asarray(x)[rows], lat=sub(lat), lon=sub(lon), k=k)
            return codes, cost

        return more

    def preferring(self, prefer: np.ndarray | None) -> dict:
        """The keyword `prefer=` for nearest_codes / encode_candidates (none when None);
        refused by tokenizers that cannot be aligned."""
        if prefer is None:
            return {}
        if not self.aligns:
            raise ValueError(f"{self.kind} tokenizers cannot prefer earlier codes (no alignment)")
        prefer = np.asarray(prefer, np.int64)
        assert prefer.ndim == 2 and prefer.shape[1] == self.levels, f"prefer [n, {self.levels}] expected, got {prefer.shape}"
        return {"prefer": prefer}

    def encode(self, x: np.ndarray, *, lat=None, lon=None, taken: np.ndarray | None = None, prefer: np.ndarray | None = None) -> np.ndarray:
        """codes [n, L] int32: nearest codes, or with capacity_aware the last level
        assigned so that code tuples stay free of collisions where they can; `prefer`
        [n, L] earlier codes to keep where they cost little more (aligned tokenizers)."""
        keep = self.preferring(prefer)
        if not self.capacity_aware:
            return self.nearest_codes(x, lat=lat, lon=lon, **keep)

        prefix, candidates, cost = self.encode_candidates(x, lat=lat, lon=lon, **keep)
        last = resolve_last_level(prefix, candidates, cost, self.level_sizes, taken, widen=self.widen(x, lat, lon))
        return np.concatenate([prefix, last[:, None]], axis=1).astype(np.int32)

    @abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray: ...

    def assign(self, x: np.ndarray, *, lat=None, lon=None) -> tuple[np.ndarray, np.ndarray]:
        """(squared reconstruction error [n], codes [n, L])."""
        x = as_float32(x, self.d)
        codes = self.encode(x, lat=lat, lon=lon)
        error = x - self.decode(codes)
        return (error * error).sum(1), codes

    @abstractmethod
    def params(self) -> dict:
        """JSON-able constructor arguments, with "kind": `from_params` rebuilds it untrained."""

    @classmethod
    def from_params(cls, params: dict) -> Tokenizer:
        # "assignment" records the capacity-aware algorithm's revision (not an argument)
        return cls(**{k: v for k, v in params.items() if k not in ("kind", "assignment")})

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """The trained state, one named array each."""

    @abstractmethod
    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Set the trained state from `arrays()` output (1-D arrays may arrive as [1, n])."""

    def _locations(self, n: int, lat, lon) -> tuple[np.ndarray, np.ndarray]:
        if lat is None or lon is None:
            raise ValueError(f"{self.kind} places items by location: pass lat= and lon=")
        lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        assert lat.shape == lon.shape == (n,), f"{n} vectors but locations of shape {lat.shape} / {lon.shape}"
        return lat, lon

    def save(self, path: str | Path) -> None:
        save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        tokenizer = load(path)
        if not isinstance(tokenizer, cls):
            raise TypeError(f"{path} holds a {tokenizer.kind} tokenizer, not {cls.kind}")
        return tokenizer


# kind -> "module:Class"; imported on use, so the registry itself is cheap to import.
# The tokenizer kinds, defined once; TOKENIZERS says where each is implemented.
TokenizerKind = Literal["residual_kmeans", "residual_kmeans_fsq", "geo_prefix"]
TOKENIZERS = {
    "residual_kmeans": "geosid.quantization.residual:ResidualKMeans",
    "residual_kmeans_fsq": "geosid.quantization.residual:ResidualKMeansFSQ",
    "geo_prefix": "geosid.quantization.geo_prefix:GeoPrefixTokenizer",
}


assert set(get_args(TokenizerKind)) == set(TOKENIZERS), "every tokenizer kind has an implementation"


def tokenizer_class(kind: str) -> type[Tokenizer]:
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known: {', '.join(TOKENIZERS)}")
    module, _, name = TOKENIZERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def state(tokenizer: Tokenizer) -> dict[str, np.ndarray]:
    """Everything needed to restore a trained tokenizer: its arrays and its level_mse."""
    return {**tokenizer.arrays(), "level_mse": np.asarray(tokenizer.level_mse, np.float64)}


def restore(params: dict, arrays: dict[str, np.ndarray]) -> Tokenizer:
    """A trained tokenizer from its params and `state()` arrays."""
    tokenizer = tokenizer_class(params["kind"]).from_params(params)
    arrays = dict(arrays)
    tokenizer.level_mse = [float(v) for v in np.asarray(arrays.pop("level_mse", []), np.float64).ravel()]
    tokenizer.load_arrays(arrays)
    return tokenizer


def save(tokenizer: Tokenizer, path: str | Path) -> None:
    """One .npz (params + arrays), written under a temporary name and renamed."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.savez(handle, params=json.dumps(tokenizer.params()), **state(tokenizer))
    os.replace(tmp, path)


def load(path: str | Path) -> Tokenizer:
    data = np.load(path, allow_pickle=False)
    return restore(json.loads(str(data["params"])), {k: data[k] for k in data.files if k != "params"})
