"""Residual tokenizers: a stack of level quantizers, each fit on the residual the previous
levels left (the shape of vector-quantize-pytorch's ResidualVQ / ResidualFSQ).

- ResidualKMeans: L k-means levels.
- ResidualKMeansFSQ (OneMall's ResKmeansFSQ): k-means for the first L-1 levels, FSQ for
  the last (`geosid.quantization.levels.FSQLevel`).

Deterministic for a seed: k-means level l uses seed + l, the FSQ level the seed itself.
"""

from __future__ import annotations

import numpy as np

from geosid.quantization.assignment import KEPT
from geosid.quantization.assignment import REVISION as ASSIGNMENT_REVISION
from geosid.quantization.base import Alignment, Tokenizer, as_float32
from geosid.quantization.levels import FSQ, FSQLevel, FSQTraining, KMeansLevel, KMeansTraining, fsq_levels_for
from geosid.quantization.stability import matching

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
    assignment, or alignment, existed: off)."""
    return {
        "capacity_aware": params.get("capacity_aware", False),
        "candidates": params.get("candidates", 16),
        "stickiness": params.get("stickiness", 0.0),
    }


def assignment_params(tokenizer: Tokenizer) -> dict:
    """What a tokenizer's params record of its assignment options (nothing for the
    defaults, so versions fitted before an option existed keep their ids)."""
    out = {}
    if tokenizer.capacity_aware:
        out.update(capacity_aware=True, candidates=tokenizer.candidates, assignment=ASSIGNMENT_REVISION)
    if tokenizer.stickiness:
        out["stickiness"] = tokenizer.stickiness
    return out


def permutation_from(mapping: dict[int, int], k: int) -> np.ndarray:
    """order [k] for `relabel`: order[old id] = the new code renamed to it; new codes the
    matching left out take the old ids it left free, in order."""
    order = np.full(k, -1, np.int64)
    for new, old in mapping.items():
        order[old] = new
    free_new = sorted(set(range(k)) - set(mapping))
    order[order < 0] = free_new
    return order


class ResidualQuantizer(Tokenizer):
    """codes [n, L]: level l encodes the residual after levels 0..l-1 (see module doc)."""

    aligns = True

    def __init__(self, d: int, stages: list, *, capacity_aware: bool = False, candidates: int = 16, stickiness: float = 0.0):
        self.d = d
        self.stages = stages  # level quantizers, first to last
        self.level_mse: list[float] = []  # mean squared residual norm after each level
        self.capacity_aware, self.candidates = bool(capacity_aware), int(candidates)
        assert stickiness >= 0, f"stickiness is a relative cost, >= 0; got {stickiness}"
        self.stickiness = float(stickiness)

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return tuple(stage.size for stage in self.stages)

    def _stage_name(self, level: int) -> str:
        """Prefix of a level's arrays in `arrays()`."""
        return f"level{level}_"

    def train(self, x, *, lat=None, lon=None, align: Alignment | None = None) -> float:
        """Fit every level on the residual the previous ones left; returns the final
        objective (sum of squared residuals). With `align`, every level starts from the
        previous tokenizer's, its k-means codes are renamed to the previous ids that keep
        the most items, and the residuals passed on are those of the preferring encode."""
        residual = as_float32(x, self.d).copy()
        self.level_mse = []
        if align is not None:
            assert align.previous.level_sizes == self.level_sizes and align.previous.d == self.d, "align to a tokenizer of the same shape"
            assert align.codes.shape == (len(residual), self.levels), f"previous codes [{len(residual)}, {self.levels}] expected"
        kept = None if align is None else np.ones(len(residual), bool)
        for level, stage in enumerate(self.stages):
            stage.train(residual, init=None if align is None else align.previous.stages[level].arrays())
            idx = stage.encode(residual)
            if align is not None:
                wanted = align.codes[:, level]
                if isinstance(stage, KMeansLevel):
                    known = wanted >= 0
                    stage.relabel(permutation_from(matching(wanted[known], idx[known]), stage.size))
                    idx = stage.encode(residual)
                idx = self._sticky(stage, residual, idx, wanted, kept)
                kept &= idx == wanted
            residual -= stage.decode(idx)
            self.level_mse.append(float((residual * residual).sum(1).mean()))
        return float((residual * residual).sum())

    def _sticky(self, stage, residual: np.ndarray, best: np.ndarray, wanted: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """best [n] with each row's wanted code instead where the row's prefix so far is
        its wanted one (kept [n]) and the wanted code costs at most (1 + stickiness) x the best."""
        rows = np.flatnonzero(kept & (wanted >= 0) & (wanted != best))
        if not len(rows):
            return best
        ok = stage.cost(residual[rows], wanted[rows]) <= stage.cost(residual[rows], best[rows]) * (1 + self.stickiness)
        out = np.array(best, copy=True)
        out[rows[ok]] = wanted[rows[ok]]
        return out

    def _prefix(self, x, prefer: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(codes of every level but the last [n, L-1], the residual they leave [n, d],
        and with `prefer` which rows' prefix is their preferred one [n] bool)."""
        residual = as_float32(x, self.d).copy()
        codes = np.empty((len(residual), len(self.stages) - 1), np.int32)
        kept = None if prefer is None else np.ones(len(residual), bool)
        for level, stage in enumerate(self.stages[:-1]):
            idx = stage.encode(residual)
            if prefer is not None:
                idx = self._sticky(stage, residual, idx, prefer[:, level], kept)
                kept &= idx == prefer[:, level]
            codes[:, level] = idx
            residual -= stage.decode(idx)
        return codes, residual, kept

    def nearest_codes(self, x, *, lat=None, lon=None, prefer: np.ndarray | None = None) -> np.ndarray:
        """codes [n, L] int32, each level's nearest code (or the preferred one, see `prefer`)."""
        prefix, residual, kept = self._prefix(x, prefer)
        last = self.stages[-1].encode(residual)
        if prefer is not None:
            last = self._sticky(self.stages[-1], residual, last, prefer[:, -1], kept)
        return np.concatenate([prefix, last[:, None].astype(np.int32)], axis=1)

    def encode_candidates(
        self, x, *, lat=None, lon=None, k: int | None = None, prefer: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        prefix, residual, kept = self._prefix(x, prefer)
        candidates, cost = self.stages[-1].candidates(residual, k or self.candidates)
        if prefer is not None:
            candidates, cost = self._preferred_first(candidates, cost, prefer[:, -1], kept)
        return prefix, candidates, cost

    def _preferred_first(self, candidates: np.ndarray, cost: np.ndarray, wanted: np.ndarray, kept: np.ndarray):
        """Candidate lists with each row's wanted last code first, marked KEPT, where its
        prefix is kept and the code is among its candidates: the codes capacity-aware
        assignment chooses from anyway (it gave the code for capacity, not for nearness, so
        a relative cost says little; its place in the list is the tolerance)."""
        hit = (candidates == wanted[:, None]) & (kept & (wanted >= 0))[:, None]  # [n, k]
        rows = np.flatnonzero(hit.any(1))
        if not len(rows):
            return candidates, cost
        candidates, cost = np.array(candidates, copy=True), np.array(cost, copy=True)
        for row in rows:
            rest = ~hit[row]
            candidates[row] = np.r_[wanted[row], candidates[row][rest]]
            cost[row] = np.r_[KEPT, cost[row][rest]]
        return candidates, cost

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
        self,
        d: int,
        codes=(256, 256, 256),
        training: KMeansTraining = KMeansTraining(),
        *,
        capacity_aware: bool = False,
        candidates: int = 16,
        stickiness: float = 0.0,
    ):
        self.codes = tuple(int(k) for k in codes)
        self.training = training
        levels = kmeans_levels(d, self.codes, training)
        super().__init__(d, levels, capacity_aware=capacity_aware, candidates=candidates, stickiness=stickiness)

    @classmethod
    def for_budget(
        cls, d: int, level_sizes: tuple[int, ...], training: KMeansTraining, *, capacity_aware: bool = False, stickiness: float = 0.0, **_
    ) -> ResidualKMeans:
        return cls(d, level_sizes, training, capacity_aware=capacity_aware, stickiness=stickiness)

    @classmethod
    def from_params(cls, params: dict) -> ResidualKMeans:
        return cls(params["d"], params["codes"], stored_training(params), **stored_assignment(params))

    def params(self) -> dict:
        # the assignment options are absent from the versions fitted before they existed
        return {"kind": self.kind, "d": self.d, "codes": list(self.codes), **self.training.stored(), **assignment_params(self)}

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
        stickiness: float = 0.0,
    ):
        self.codes = tuple(int(k) for k in codes)
        self.training, self.fsq_training = training, fsq_training
        self.fsq_level = FSQLevel(d, tuple(fsq_levels), training.seed, fsq_training.epochs, fsq_training.lr, fsq_training.batch_size)
        levels = [*kmeans_levels(d, self.codes, training), self.fsq_level]
        super().__init__(d, levels, capacity_aware=capacity_aware, candidates=candidates, stickiness=stickiness)

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
        stickiness: float = 0.0,
        **_,
    ) -> ResidualKMeansFSQ:
        """k-means for all levels but the last, whose code count (a power of two) becomes FSQ channels."""
        fsq = FSQTraining(epochs=fsq_epochs, lr=fsq_lr)
        return cls(d, level_sizes[:-1], fsq_levels_for(level_sizes[-1]), training, fsq, capacity_aware=capacity_aware, stickiness=stickiness)

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
        return {**out, **assignment_params(self)}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"centroids_{level}": stage.centroids for level, stage in enumerate(self.stages[:-1])}
        out.update({f"fsq_{name}": array for name, array in self.fsq_level.arrays().items()})
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for level, stage in enumerate(self.stages[:-1]):
            stage.load_arrays({"centroids": arrays[f"centroids_{level}"]})
        self.fsq_level.load_arrays({name[4:]: a for name, a in arrays.items() if name.startswith("fsq_")})
