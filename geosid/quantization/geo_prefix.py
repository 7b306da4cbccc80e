"""Geo-prefix tokenizer (a comparison baseline): the first digit is a spatial partition of
item locations (k-means on points of the unit sphere, so distances are true and the
antimeridian is no edge), the remaining digits residual k-means on the embedding."""

from __future__ import annotations

import dataclasses

import numpy as np

from geosid.quantization.base import Tokenizer, as_float32
from geosid.quantization.kmeans import KMeans, nearest_centroids
from geosid.quantization.levels import KMeansTraining
from geosid.quantization.residual import ResidualKMeans, assignment_params, stored_assignment, stored_training


def unit_sphere(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """[n, 3] float32 points on the unit sphere."""
    lat, lon = np.radians(np.asarray(lat, np.float64)), np.radians(np.asarray(lon, np.float64))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1).astype(np.float32)


class GeoPrefixTokenizer(Tokenizer):
    """codes [n, L]: (spatial region, residual k-means codes of the embedding...)."""

    kind = "geo_prefix"
    uses_location = True

    def __init__(
        self, d: int, codes=(256, 256, 256), training: KMeansTraining = KMeansTraining(), *, capacity_aware: bool = False, candidates: int = 16
    ):
        self.d, self.codes, self.training = d, tuple(int(k) for k in codes), training
        self.capacity_aware, self.candidates = bool(capacity_aware), int(candidates)
        self.regions: np.ndarray | None = None  # [codes[0], 3] points on the unit sphere
        rest_training = dataclasses.replace(training, seed=training.seed + 100)
        self.rest = ResidualKMeans(d, self.codes[1:], rest_training, candidates=candidates)

    @classmethod
    def for_budget(cls, d: int, level_sizes: tuple[int, ...], training: KMeansTraining, *, capacity_aware: bool = False, **_) -> GeoPrefixTokenizer:
        return cls(d, level_sizes, training, capacity_aware=capacity_aware)

    @classmethod
    def from_params(cls, params: dict) -> GeoPrefixTokenizer:
        options = stored_assignment(params)
        return cls(params["d"], params["codes"], stored_training(params), capacity_aware=options["capacity_aware"], candidates=options["candidates"])

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return self.codes

    @property
    def level_mse(self) -> list[float]:
        """The embedding's residual error after each embedding level (the region level
        reconstructs nothing of the vector)."""
        return self.rest.level_mse

    @level_mse.setter
    def level_mse(self, values: list[float]) -> None:
        self.rest.level_mse = list(values)

    def params(self) -> dict:
        return {"kind": self.kind, "d": self.d, "codes": list(self.codes), **self.training.stored(), **assignment_params(self)}

    def train(self, x, *, lat=None, lon=None) -> float:
        x = as_float32(x, self.d)
        lat, lon = self._locations(len(x), lat, lon)
        t = self.training
        km = KMeans(3, self.codes[0], t.niter, t.seed, t.sample_size, t.backend, init="k-means++")
        km.train(unit_sphere(lat, lon))
        self.regions = km.centroids
        return self.rest.train(x)

    def _regions(self, x, lat, lon) -> tuple[np.ndarray, np.ndarray]:
        assert self.regions is not None, "train() or load_arrays() first"
        x = as_float32(x, self.d)
        lat, lon = self._locations(len(x), lat, lon)
        return x, nearest_centroids(unit_sphere(lat, lon), self.regions)[1][:, None].astype(np.int32)

    def nearest_codes(self, x, *, lat=None, lon=None) -> np.ndarray:
        x, region = self._regions(x, lat, lon)
        return np.concatenate([region, self.rest.nearest_codes(x)], axis=1)

    def encode_candidates(self, x, *, lat=None, lon=None, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, region = self._regions(x, lat, lon)
        prefix, candidates, cost = self.rest.encode_candidates(x, k=k or self.candidates)
        return np.concatenate([region, prefix], axis=1), candidates, cost

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """The embedding part's reconstruction (the region code carries no vector)."""
        codes = np.asarray(codes)
        assert codes.ndim == 2 and codes.shape[1] == self.levels, f"expected codes [n, {self.levels}], got {codes.shape}"
        return self.rest.decode(codes[:, 1:])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"regions": self.regions, **self.rest.arrays()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.regions = np.asarray(arrays["regions"], np.float32)
        self.rest.load_arrays({k: v for k, v in arrays.items() if k != "regions"})
