"""Geo-prefix tokenizer (a comparison baseline): the first digit is a spatial partition of
item locations (k-means on points of the unit sphere, so distances are true and the
antimeridian is no edge), the remaining digits residual k-means on the embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from geosid.quantization.kmeans import KMeans, _as_float32, nearest_centroids
from geosid.quantization.residual import ResidualKMeans


def unit_sphere(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """[n, 3] float32 points on the unit sphere."""
    lat, lon = np.radians(np.asarray(lat, np.float64)), np.radians(np.asarray(lon, np.float64))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1).astype(np.float32)


class GeoPrefixTokenizer:
    """codes [n, L]: (spatial region, residual k-means codes of the embedding...)."""

    kind = "geo_prefix"

    def __init__(self, d: int, codes=(256, 256, 256), niter: int = 20, seed: int = 1234, sample_size: int | None = None, backend: str = "auto"):
        self.d, self.codes = d, tuple(int(k) for k in codes)
        self.niter, self.seed, self.sample_size, self.backend = niter, seed, sample_size, backend
        self.regions: np.ndarray | None = None  # [codes[0], 3]
        self.rest = ResidualKMeans(d, self.codes[1:], niter, seed + 100, sample_size, backend)

    @property
    def levels(self) -> int:
        return len(self.codes)

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return self.codes

    @property
    def level_mse(self) -> list[float]:
        return self.rest.level_mse

    def params(self) -> dict:
        return {"kind": self.kind, "d": self.d, "codes": list(self.codes), "niter": self.niter, "seed": self.seed, "sample_size": self.sample_size}

    def train(self, x: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> float:
        x = _as_float32(x, self.d)
        assert len(lat) == len(lon) == len(x), f"{len(x)} vectors but {len(lat)} locations"
        km = KMeans(3, self.codes[0], self.niter, self.seed, self.sample_size, self.backend, init="k-means++")
        km.train(unit_sphere(lat, lon))
        self.regions = km.centroids
        return self.rest.train(x)

    def encode(self, x: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        assert self.regions is not None, "train() or load() first"
        _, region = nearest_centroids(unit_sphere(lat, lon), self.regions)
        return np.concatenate([region[:, None].astype(np.int32), self.rest.encode(x)], axis=1)

    def assign(self, x: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes = self.encode(x, lat, lon)
        error = _as_float32(x, self.d) - self.rest.decode(codes[:, 1:])
        return (error * error).sum(1), codes

    def arrays(self) -> dict[str, np.ndarray]:
        return {"regions": self.regions, **self.rest.arrays()}

    def save(self, path: str | Path) -> None:
        np.savez(path, params=json.dumps(self.params()), **self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> "GeoPrefixTokenizer":
        data = np.load(path, allow_pickle=False)
        return cls.from_arrays(json.loads(str(data["params"])), {k: data[k] for k in data.files})

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]) -> "GeoPrefixTokenizer":
        tokenizer = cls(**{k: params[k] for k in ("d", "codes", "niter", "seed", "sample_size")})
        tokenizer.regions = arrays["regions"].astype(np.float32)
        tokenizer.rest._restore(arrays)
        return tokenizer
