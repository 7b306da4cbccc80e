"""Residual tokenizers: a stack of level quantizers, each fit on the residual the previous
levels left (the shape of vector-quantize-pytorch's ResidualVQ / ResidualFSQ).

- ResidualKMeans: L k-means levels.
- ResidualKMeansFSQ (OneMall's ResKmeansFSQ): k-means for the first L-1 levels, FSQ for
  the last (`geosid.quantization.levels.FSQLevel`).

Deterministic for a seed: k-means level l uses seed + l, the FSQ level the seed itself.
"""

from __future__ import annotations

import numpy as np

from geosid.quantization.assignment import REVISION as ASSIGNMENT_REVISION
from geosid.quantization.base import Tokenizer, as_float32
from geosid.quantization.levels import FSQ, FSQLevel, FSQTraining, KMeansLevel, KMeansTraining, fsq_levels_for

__all__ = ["FSQ", "FSQTraining", "KMeansTraining", "ResidualKMeans", "ResidualKMeansFSQ", "ResidualQuantizer"]


def kmeans_levels(d: int, codes: tuple[int, ...], training: KMeansTraining) -> list[KMeansLevel]:
    """One k-means level per entry of `codes`; level l seeded with seed + l."""
    t = training
    return [KMeansLevel(d, k, t.niter, t.seed + level, t.sample_size, t.backend) for level, k in enumerate(codes)]


def stored_training(params: dict) -> KMeansTraining:
    """The k-means settings a version's params recorded."""
    return KMeansTraining(params["niter"], params["seed"], params.get("sample_size"))


def stored_assignment(params: dict) -> dict:
    """The assignment options a version's params recorded (absent before capacity-aware
    assignment existed: off)."""
    return {"capacity_aware": params.get("capacity_aware", False), "candidates": params.get("candidates", 16)}


class ResidualQuantizer(Tokenizer):
    """codes [n, L]: level l encodes the residual after levels 0..l-1 (see module doc)."""

    def __init__(self, d: int, stages: list, *, capacity_aware: bool = False, candidates: int = 16):
        self.d = d
        self.stages = stages  # level quantizers, first to last
        self.level_mse: list[float] = []  # mean squared residual norm after each level
        self.capacity_aware, self.candidates = bool(capacity_aware), int(candidates)

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return tuple(stage.size for stage in self.stages)

    def _stage_name(self, level: int) -> str:
        """Prefix of a level's arrays in `arrays()`."""
        return f"level{level}_"

    def train(self, x, *, lat=None, lon=None) -> float:
        """Fit every level on the residual the previous ones left; returns the final
        objective (sum of squared residuals)."""
        residual = as_float32(x, self.d).copy()
        self.level_mse = []
        for stage in self.stages:
            stage.train(residual)
            residual -= stage.decode(stage.encode(residual))
            self.level_mse.append(float((residual * residual).sum(1).mean()))
        return float((residual * residual).sum())

    def _prefix(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(codes of every level but the last [n, L-1], the residual they leave [n, d])."""
        residual = as_float32(x, self.d).copy()
        codes = np.empty((len(residual), len(self.stages) - 1), np.int32)
        for level, stage in enumerate(self.stages[:-1]):
            idx = stage.encode(residual)
            codes[:, level] = idx
            residual -= stage.decode(idx)
        return codes, residual

    def nearest_codes(self, x, *, lat=None, lon=None) -> np.ndarray:
        """codes [n, L] int32, each level's nearest code."""
        prefix, residual = self._prefix(x)
        return np.concatenate([prefix, self.stages[-1].encode(residual)[:, None].astype(np.int32)], axis=1)

    def encode_candidates(self, x, *, lat=None, lon=None, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        prefix, residual = self._prefix(x)
        candidates, cost = self.stages[-1].candidates(residual, k or self.candidates)
        return prefix, candidates, cost

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction [n, d] of codes [n, L]: the sum of the levels' decodes."""
        codes = np.asarray(codes)
        assert codes.ndim == 2 and codes.shape[1] == self.levels, f"expected codes [n, {self.levels}], got {codes.shape}"
        out = np.zeros((len(codes), self.d), np.float32)
        for level, stage in enumerate(self.stages):
            out += stage.decode(codes[:, level])
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for level, stage in enumerate(self.stages):
            out.update({self._stage_name(level) + name: array for name, array in stage.arrays().items()})
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for level, stage in enumerate(self.stages):
            prefix = self._stage_name(level)
            stage.load_arrays({name[len(prefix) :]: a for name, a in arrays.items() if name.startswith(prefix)})


class ResidualKMeans(ResidualQuantizer):
    """L levels of k-means, `codes[l]` centroids at level l."""

    kind = "residual_kmeans"

    def __init__(
        self, d: int, codes=(256, 256, 256), training: KMeansTraining = KMeansTraining(), *, capacity_aware: bool = False, candidates: int = 16
    ):
        self.codes = tuple(int(k) for k in codes)
        self.training = training
        super().__init__(d, kmeans_levels(d, self.codes, training), capacity_aware=capacity_aware, candidates=candidates)

    @classmethod
    def for_budget(cls, d: int, level_sizes: tuple[int, ...], training: KMeansTraining, *, capacity_aware: bool = False, **_) -> ResidualKMeans:
        return cls(d, level_sizes, training, capacity_aware=capacity_aware)

    @classmethod
    def from_params(cls, params: dict) -> ResidualKMeans:
        return cls(params["d"], params["codes"], stored_training(params), **stored_assignment(params))

    def params(self) -> dict:
        out = {"kind": self.kind, "d": self.d, "codes": list(self.codes), **self.training.stored()}
        if self.capacity_aware:  # absent from the versions fitted before it existed
            out.update(capacity_aware=True, candidates=self.candidates, assignment=ASSIGNMENT_REVISION)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        # the names index.codebooks has stored since the first version
        return {f"centroids_{level}": stage.centroids for level, stage in enumerate(self.stages)}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for level, stage in enumerate(self.stages):
            stage.load_arrays({"centroids": arrays[f"centroids_{level}"]})


class ResidualKMeansFSQ(ResidualQuantizer):
    """k-means levels with `codes` centroids, then one FSQ level of prod(fsq_levels) codes."""

    kind = "residual_kmeans_fsq"

    def __init__(
        self,
        d: int,
        codes=(256, 256),
        fsq_levels=(8, 8, 8, 8),
        training: KMeansTraining = KMeansTraining(),
        fsq_training: FSQTraining = FSQTraining(),
        *,
        capacity_aware: bool = False,
        candidates: int = 16,
    ):
        self.codes = tuple(int(k) for k in codes)
        self.training, self.fsq_training = training, fsq_training
        self.fsq_level = FSQLevel(d, tuple(fsq_levels), training.seed, fsq_training.epochs, fsq_training.lr, fsq_training.batch_size)
        super().__init__(d, [*kmeans_levels(d, self.codes, training), self.fsq_level], capacity_aware=capacity_aware, candidates=candidates)

    @property
    def fsq(self) -> FSQ:
        return self.fsq_level.fsq

    @classmethod
    def for_budget(
        cls,
        d: int,
        level_sizes: tuple[int, ...],
        training: KMeansTraining,
        fsq_epochs: int = 40,
        fsq_lr: float = 0.01,
        *,
        capacity_aware: bool = False,
        **_,
    ) -> ResidualKMeansFSQ:
        """k-means for all levels but the last, whose code count (a power of two) becomes FSQ channels."""
        return cls(
            d, level_sizes[:-1], fsq_levels_for(level_sizes[-1]), training, FSQTraining(epochs=fsq_epochs, lr=fsq_lr), capacity_aware=capacity_aware
        )

    @classmethod
    def from_params(cls, params: dict) -> ResidualKMeansFSQ:
        fsq = FSQTraining(params["epochs"], params["lr"], params["batch_size"])
        return cls(
            params["d"],
            params["codes"],
            params["fsq_levels"],
            stored_training(params),
            fsq,
            **stored_assignment(params),
        )

    def params(self) -> dict:
        out = {
            "kind": self.kind,
            "d": self.d,
            "codes": list(self.codes),
            **self.training.stored(),
            "fsq_levels": list(self.fsq.levels),
            "epochs": self.fsq_training.epochs,
            "lr": self.fsq_training.lr,
            "batch_size": self.fsq_training.batch_size,
        }
        if self.capacity_aware:
            out.update(capacity_aware=True, candidates=self.candidates, assignment=ASSIGNMENT_REVISION)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"centroids_{level}": stage.centroids for level, stage in enumerate(self.stages[:-1])}
        out.update({f"fsq_{name}": array for name, array in self.fsq_level.arrays().items()})
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for level, stage in enumerate(self.stages[:-1]):
            stage.load_arrays({"centroids": arrays[f"centroids_{level}"]})
        self.fsq_level.load_arrays({name[4:]: a for name, a in arrays.items() if name.startswith("fsq_")})
