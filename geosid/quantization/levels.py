"""Level quantizers: one level of a residual tokenizer, each mapping residuals r [n, d] to
one code per row and back.

    train(r) ; encode(r) -> codes [n] int64 ; decode(codes) -> [n, d] float32
    candidates(r, k) -> (codes [n, k], cost [n, k]): the k best codes, best first
    size (codes of the level) ; arrays() / load_arrays() (trained state, names unprefixed)

- KMeansLevel: the nearest of k centroids (faiss k-means, every point used).
- FSQLevel: finite scalar quantization of a learned projection of the residual onto m
  bounded scalars, each rounded to one of its levels (codes: the mixed-radix number of
  the digits; product of levels = the level's code count), trained with a
  straight-through estimator to reconstruct the residual (OneMall's last level).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from geosid.quantization.kmeans import KMeans, nearest_centroids


@dataclass(frozen=True)
class KMeansTraining:
    """How every k-means level of a tokenizer trains (faiss `Kmeans`'s settings): level l
    uses seed + l; `sample_size` trains on that many points (None: all)."""

    niter: int = 20
    seed: int = 1234
    sample_size: int | None = None
    backend: str = "auto"  # faiss, or torch on a GPU when there is one

    def stored(self) -> dict:
        """What a version's params record (the backend is no property of the codebook)."""
        return {"niter": self.niter, "seed": self.seed, "sample_size": self.sample_size}


@dataclass(frozen=True)
class FSQTraining:
    """How an FSQ level's projection trains."""

    epochs: int = 200
    lr: float = 0.01
    batch_size: int = 8192


class KMeansLevel:
    def __init__(self, d: int, k: int, niter: int, seed: int, sample_size: int | None = None, backend: str = "auto"):
        self.d, self.k, self.niter, self.seed, self.sample_size, self.backend = d, k, niter, seed, sample_size, backend
        self.centroids: np.ndarray | None = None  # [k, d]

    @property
    def size(self) -> int:
        return self.k

    def train(self, residual: np.ndarray, init: dict[str, np.ndarray] | None = None) -> None:
        """Fit on residuals [n, d]; `init`: another level's arrays to start from (a warm start)."""
        km = KMeans(self.d, self.k, self.niter, self.seed, self.sample_size, self.backend)
        km.train(residual, init=None if init is None else init["centroids"])
        self.centroids = km.centroids

    def relabel(self, order: np.ndarray) -> None:
        """Code i becomes what code order[i] was (order: a permutation of the codes)."""
        self.centroids = np.ascontiguousarray(self.centroids[np.asarray(order)])

    def cost(self, residual: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """[n] squared distance of each row to the given code's centroid, as `candidates`
        computes it (float64, row by row)."""
        diff = residual.astype(np.float64) - self.centroids[np.asarray(codes)].astype(np.float64)
        return np.einsum("nd,nd->n", diff, diff)

    def encode(self, residual: np.ndarray) -> np.ndarray:
        assert self.centroids is not None, "train() or load_arrays() first"
        return nearest_centroids(residual, self.centroids)[1]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.centroids[np.asarray(codes)]

    def candidates(self, residual: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest centroids of each row, nearest first (squared distances, ties by
        code). faiss picks them; their distances are then computed again row by row in
        float64, because faiss's BLAS path gives a row distances that differ in the last
        bits with the rows searched beside it, and a capacity-aware assignment orders
        items by these costs: the same item must get the same costs in any batch."""
        import faiss  # lazy: loaded where k-means runs

        k = min(k, self.k)
        index = faiss.IndexFlatL2(self.d)
        index.add(np.ascontiguousarray(self.centroids, np.float32))
        _, idx = index.search(np.ascontiguousarray(residual, np.float32), k)  # [n, k]
        idx = idx.astype(np.int64)
        cost = np.empty(idx.shape, np.float64)
        rows = max(1, 2**22 // max(1, k * self.d))  # about 32 MB of float64 differences a pass
        centroids = self.centroids.astype(np.float64)
        for start in range(0, len(idx), rows):
            block = residual[start : start + rows].astype(np.float64)[:, None, :] - centroids[idx[start : start + rows]]  # [b, k, d]
            cost[start : start + rows] = np.einsum("bkd,bkd->bk", block, block)
        order = np.lexsort((idx, cost), axis=1)
        return np.take_along_axis(idx, order, 1), np.take_along_axis(cost, order, 1)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.centroids = np.asarray(arrays["centroids"], np.float32)


class FSQ:
    """Finite scalar quantization of m channels with `levels[i]` values each.

    z [.., m] -> bounded (tanh) -> rounded to integers; codes are mixed-radix indices in
    [0, prod(levels)). Rounding passes gradients straight through.
    """

    def __init__(self, levels: tuple[int, ...] = (8, 8, 8, 8)):
        assert all(level >= 2 for level in levels), f"every FSQ level needs >= 2 values, got {levels}"
        self.levels = tuple(int(level) for level in levels)
        self.size = int(np.prod(self.levels))
        self.basis = np.cumprod((1, *self.levels[:-1])).astype(np.int64)  # mixed radix, first channel fastest

    def bound(self, z):
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        levels = torch.tensor(self.levels, dtype=z.dtype, device=z.device)
        # (1 + eps) keeps offset / half below 1 for 2-level channels (atanh(>= 1) is NaN)
        half = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def quantize(self, z):
        """z [.., m] -> values in [-1, 1] [.., m] (straight-through) and integer digits [.., m]."""
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        bounded = self.bound(z)
        rounded = bounded + (torch.round(bounded) - bounded).detach()  # straight-through
        half_width = torch.tensor([level // 2 for level in self.levels], dtype=z.dtype, device=z.device)
        digits = (torch.round(bounded) + half_width).long()  # [.., m] in [0, level)
        return rounded / half_width, digits

    def digits_to_codes(self, digits: np.ndarray) -> np.ndarray:
        return (np.asarray(digits, np.int64) * self.basis).sum(-1)

    def codes_to_digits(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, np.int64)[..., None]
        return (codes // self.basis) % np.array(self.levels)

    def digits_to_values(self, digits: np.ndarray) -> np.ndarray:
        half_width = np.array([level // 2 for level in self.levels], np.float32)
        return (np.asarray(digits, np.float32) - half_width) / half_width


def fsq_levels_for(k: int) -> tuple[int, ...]:
    """FSQ levels whose product is k (a power of two): channels of 8 (then 4 / 2)."""
    if k < 2 or k & (k - 1):
        raise ValueError(f"the FSQ level's code count must be a power of two, got {k}")
    bits = int(math.log2(k))
    levels = [8] * (bits // 3)
    if bits % 3:
        levels.append(2 ** (bits % 3))
    return tuple(levels)


class FSQLevel:
    """Project the residual onto m channels (PCA-initialized), FSQ them, project back."""

    def __init__(self, d: int, levels: tuple[int, ...], seed: int, epochs: int = 200, lr: float = 0.01, batch_size: int = 8192):
        self.d, self.fsq, self.seed = d, FSQ(levels), seed
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.w_in: np.ndarray | None = None  # [d, m]
        self.b_in: np.ndarray | None = None  # [m]
        self.w_out: np.ndarray | None = None  # [m, d]
        self.b_out: np.ndarray | None = None  # [d]

    @property
    def size(self) -> int:
        return self.fsq.size

    def train(self, residual: np.ndarray, init: dict[str, np.ndarray] | None = None) -> None:
        """Fit the projection on residuals [n, d]; from PCA, or from another FSQ level's
        arrays `init` (a warm start: digits, and so codes, carry over)."""
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        m = len(self.fsq.levels)
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        scale = float(np.sqrt((residual * residual).sum(1).mean()) + 1e-12)
        r = torch.from_numpy(residual / scale)  # unit-scale residuals [n, d]
        project_in, project_out = torch.nn.Linear(self.d, m), torch.nn.Linear(m, self.d)
        if init is None:
            self._pca_init(residual / scale, project_in, project_out)
        else:
            self._warm_init(init, scale, project_in, project_out)
        optimizer = torch.optim.Adam([*project_in.parameters(), *project_out.parameters()], lr=self.lr)
        for _ in range(self.epochs):
            order = torch.randperm(len(r), generator=generator)
            for start in range(0, len(r), self.batch_size):
                batch = r[order[start : start + self.batch_size]]  # [b, d]
                values, _ = self.fsq.quantize(project_in(batch))  # [b, m]
                loss = ((project_out(values) - batch) ** 2).sum(1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.w_in = (project_in.weight.detach().numpy().T / scale).astype(np.float32)  # [d, m], on raw residuals
        self.b_in = project_in.bias.detach().numpy().astype(np.float32)
        self.w_out = (project_out.weight.detach().numpy().T * scale).astype(np.float32)  # [m, d]
        self.b_out = (project_out.bias.detach().numpy() * scale).astype(np.float32)

    def _pca_init(self, r: np.ndarray, project_in, project_out, sample: int = 20_000) -> None:
        """Start the projection on the residual's top principal directions, scaled so that
        tanh(1.2 z) (close to the Gaussian CDF) spreads every channel evenly over its
        levels: a default init maps every residual to nearly the same code."""
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        m = len(self.fsq.levels)
        rows = r if len(r) <= sample else r[np.random.default_rng(self.seed).choice(len(r), sample, replace=False)]
        mean = rows.mean(0)
        _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
        directions = vt[:m]  # [m, d]
        spread = (rows - mean) @ directions.T  # [n, m]
        std = spread.std(0) + 1e-8
        w_in = directions / std[:, None] * 1.2  # [m, d]
        half_width = np.array([level // 2 for level in self.fsq.levels], np.float64)
        with torch.no_grad():
            project_in.weight.copy_(torch.from_numpy(w_in.astype(np.float32)))
            project_in.bias.copy_(torch.from_numpy((-(mean @ w_in.T)).astype(np.float32)))
            # values in [-1, 1] back to the residual: about one std per unit of value
            project_out.weight.copy_(torch.from_numpy((directions.T * std * half_width / 2).astype(np.float32)))
            project_out.bias.copy_(torch.from_numpy(mean.astype(np.float32)))

    @staticmethod
    def _warm_init(arrays: dict[str, np.ndarray], scale: float, project_in, project_out) -> None:
        """Start from stored raw-residual weights, expressed on unit-scale residuals."""
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        with torch.no_grad():
            project_in.weight.copy_(torch.from_numpy((np.asarray(arrays["w_in"]) * scale).T.astype(np.float32)))
            project_in.bias.copy_(torch.from_numpy(np.asarray(arrays["b_in"], np.float32).ravel()))
            project_out.weight.copy_(torch.from_numpy((np.asarray(arrays["w_out"]) / scale).T.astype(np.float32)))
            project_out.bias.copy_(torch.from_numpy((np.asarray(arrays["b_out"]).ravel() / scale).astype(np.float32)))

    def cost(self, residual: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """[n] squared distance, in the bounded space, of each row to the given code's
        digits, as `candidates` computes it."""
        bounded = self._bounded(residual)  # [n, m]
        half = np.array([level // 2 for level in self.fsq.levels])
        values = self.fsq.codes_to_digits(np.asarray(codes)) - half  # [n, m]
        return ((values - bounded) ** 2).sum(1)

    def _bounded(self, residual: np.ndarray) -> np.ndarray:
        """The bounded projection [n, m] (float64 math row by row: the same item, the same values)."""
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        projected = np.einsum("nd,dm->nm", residual.astype(np.float64), self.w_in.astype(np.float64)) + self.b_in
        with torch.no_grad():
            return self.fsq.bound(torch.from_numpy(projected.astype(np.float32))).numpy().astype(np.float64)

    def encode(self, residual: np.ndarray) -> np.ndarray:
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        assert self.w_in is not None, "train() or load_arrays() first"
        with torch.no_grad():
            _, digits = self.fsq.quantize(torch.from_numpy(residual @ self.w_in + self.b_in))
        return self.fsq.digits_to_codes(digits.numpy())

    def decode(self, codes: np.ndarray) -> np.ndarray:
        values = self.fsq.digits_to_values(self.fsq.codes_to_digits(np.asarray(codes)))  # [n, m]
        return values @ self.w_out + self.b_out

    def candidates(self, residual: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k codes nearest each row's bounded projection: per channel its t nearest
        levels (t^channels >= k; every level when k covers the whole level), combined
        and ranked by squared distance in the bounded space; -1 past the codes there are."""
        m = len(self.fsq.levels)
        top = int(max(self.fsq.levels))
        t = top if k >= self.size else min(top, int(np.ceil(k ** (1 / m))) + 1)
        chunk = max(1, 20_000_000 // (t**m * m))  # rows per pass: bounded memory whatever t
        parts = [self._candidates(residual[start : start + chunk], k, t) for start in range(0, len(residual), chunk)]
        if not parts:
            return np.zeros((0, k), np.int64), np.zeros((0, k))
        return np.concatenate([c for c, _ in parts]), np.concatenate([d for _, d in parts])

    def _candidates(self, residual: np.ndarray, k: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        # the projection row by row (einsum's own loop, not BLAS, whose results for a row
        # differ in the last bits with the rows beside it): the same item, the same costs
        bounded = self._bounded(residual).astype(np.float32)  # [n, m]
        n, m = bounded.shape
        # per channel, its levels (centred) nearest first: options [n, m, t], gap [n, m, t]
        options = np.full((n, m, t), np.nan)
        gap = np.full((n, m, t), np.inf)
        for c, level in enumerate(self.fsq.levels):
            values = np.arange(level) - level // 2  # [L]
            dist = (values[None, :] - bounded[:, c : c + 1]) ** 2  # [n, L]
            order = np.argsort(dist, axis=1, kind="stable")[:, :t]
            options[:, c, : order.shape[1]] = values[order]
            gap[:, c, : order.shape[1]] = np.take_along_axis(dist, order, 1)
        combos = np.array(list(itertools.product(range(t), repeat=m)))  # [t^m, m]
        cost = gap[:, np.arange(m)[None, :], combos].sum(-1)  # [n, t^m]
        keep = min(k, len(combos))
        order = np.argsort(cost, axis=1, kind="stable")[:, :keep]
        picked = np.take_along_axis(cost, order, 1)
        chosen = options[np.arange(n)[:, None, None], np.arange(m)[None, None, :], combos[order]]  # [n, keep, m]
        half = np.array([level // 2 for level in self.fsq.levels])
        digits = np.where(np.isfinite(chosen), chosen + half, 0).astype(np.int64)
        codes = self.fsq.digits_to_codes(digits)
        return np.where(np.isfinite(picked), codes, -1), picked

    def arrays(self) -> dict[str, np.ndarray]:
        return {"w_in": self.w_in, "b_in": self.b_in, "w_out": self.w_out, "b_out": self.b_out}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.w_in = np.asarray(arrays["w_in"], np.float32)
        self.w_out = np.asarray(arrays["w_out"], np.float32)
        self.b_in = np.asarray(arrays["b_in"], np.float32).ravel()
        self.b_out = np.asarray(arrays["b_out"], np.float32).ravel()
