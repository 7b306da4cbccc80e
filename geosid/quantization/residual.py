"""Residual quantizers producing multi-level codes (semantic IDs).

- ResidualKMeans: L levels of k-means, each fit on the residual the previous left.
- ResidualKMeansFSQ (OneMall's ResKmeansFSQ): residual k-means for the first L-1 levels,
  then FSQ for the last: a learned projection of the residual onto m bounded scalars,
  each rounded to one of its levels (product of levels = the last level's code count),
  trained with a straight-through estimator to reconstruct the residual.

All follow the faiss shape: train(x) -> objective, assign(x) -> (dist, codes), plus
encode / decode and save / load (npz), deterministic for a seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from geosid.quantization.kmeans import KMeans, _as_float32, nearest_centroids


class ResidualKMeans:
    """codes [n, L]: level l is the nearest of `codes[l]` centroids to the level-l residual."""

    kind = "residual_kmeans"

    def __init__(
        self,
        d: int,
        codes: list[int] | tuple[int, ...] = (256, 256, 256),
        niter: int = 20,
        seed: int = 1234,
        sample_size: int | None = None,
        backend: str = "auto",
    ):
        self.d, self.codes = d, tuple(int(k) for k in codes)
        self.niter, self.seed, self.sample_size, self.backend = niter, seed, sample_size, backend
        self.centroids: list[np.ndarray] = []  # per level [k_l, d]
        self.level_mse: list[float] = []  # mean squared residual norm after each level

    @property
    def levels(self) -> int:
        return len(self.codes)

    def params(self) -> dict:
        return {"kind": self.kind, "d": self.d, "codes": list(self.codes), "niter": self.niter, "seed": self.seed, "sample_size": self.sample_size}

    def _fit_levels(self, x: np.ndarray, codes: tuple[int, ...]) -> np.ndarray:
        """Fit k-means levels on successive residuals; returns the last residual."""
        residual = x.copy()
        self.centroids, self.level_mse = [], []
        for level, k in enumerate(codes):
            km = KMeans(self.d, k, self.niter, self.seed + level, self.sample_size, self.backend)
            km.train(residual)
            _, idx = km.assign(residual)
            residual -= km.centroids[idx]
            self.centroids.append(km.centroids)
            self.level_mse.append(float((residual * residual).sum(1).mean()))
        return residual

    def train(self, x: np.ndarray) -> float:
        """Fit all levels on x [n, d]; returns the final objective (sum of squared residuals)."""
        x = _as_float32(x, self.d)
        residual = self._fit_levels(x, self.codes)
        return float((residual * residual).sum())

    def _encode_kmeans(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        residual = _as_float32(x, self.d).copy()
        codes = np.empty((len(residual), len(self.centroids)), np.int32)
        for level, centroids in enumerate(self.centroids):
            _, idx = nearest_centroids(residual, centroids)
            codes[:, level] = idx
            residual -= centroids[idx]
        return codes, residual

    def encode(self, x: np.ndarray) -> np.ndarray:
        """codes [n, L] int32."""
        assert self.centroids, "train() or load() first"
        return self._encode_kmeans(x)[0]

    def _decode_kmeans(self, codes: np.ndarray) -> np.ndarray:
        """Sum of the k-means levels' centroids for codes [n, >= k-means levels] -> [n, d]."""
        codes = np.asarray(codes)
        assert codes.ndim == 2 and codes.shape[1] == self.levels, f"expected codes [n, {self.levels}], got {codes.shape}"
        out = np.zeros((len(codes), self.d), np.float32)
        for level, centroids in enumerate(self.centroids):
            out += centroids[codes[:, level]]
        return out

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction [n, d] of codes [n, L]."""
        return self._decode_kmeans(codes)

    def assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(squared reconstruction error [n], codes [n, L])."""
        x = _as_float32(x, self.d)
        codes = self.encode(x)
        error = x - self.decode(codes)
        return (error * error).sum(1), codes

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"centroids_{level}": c for level, c in enumerate(self.centroids)}

    def save(self, path: str | Path) -> None:
        np.savez(path, params=json.dumps(self.params()), level_mse=np.array(self.level_mse), **self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> "ResidualKMeans":
        data = np.load(path, allow_pickle=False)
        params = json.loads(str(data["params"]))
        return from_params(params, {k: data[k] for k in data.files}, list(data["level_mse"]))

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.centroids = [arrays[f"centroids_{level}"].astype(np.float32) for level in range(self._kmeans_levels())]

    def _kmeans_levels(self) -> int:
        return self.levels


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
        import torch

        levels = torch.tensor(self.levels, dtype=z.dtype, device=z.device)
        # (1 + eps) keeps offset / half below 1 for 2-level channels (atanh(>= 1) is NaN)
        half = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def quantize(self, z):
        """z [.., m] -> values in [-1, 1] [.., m] (straight-through) and integer digits [.., m]."""
        import torch

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


class ResidualKMeansFSQ(ResidualKMeans):
    """Residual k-means for the first levels, FSQ (product of `fsq_levels` codes) for the last."""

    kind = "residual_kmeans_fsq"

    def __init__(
        self,
        d: int,
        codes: list[int] | tuple[int, ...] = (256, 256),
        fsq_levels: tuple[int, ...] = (8, 8, 8, 8),
        niter: int = 20,
        seed: int = 1234,
        sample_size: int | None = None,
        backend: str = "auto",
        epochs: int = 200,
        lr: float = 0.01,
        batch_size: int = 8192,
    ):
        super().__init__(d, codes, niter, seed, sample_size, backend)
        self.fsq = FSQ(fsq_levels)
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.w_in: np.ndarray | None = None  # [d, m]
        self.b_in: np.ndarray | None = None  # [m]
        self.w_out: np.ndarray | None = None  # [m, d]
        self.b_out: np.ndarray | None = None  # [d]

    @property
    def levels(self) -> int:
        return len(self.codes) + 1

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return (*self.codes, self.fsq.size)

    def params(self) -> dict:
        return {**super().params(), "kind": self.kind, "fsq_levels": list(self.fsq.levels), "epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size}

    def _kmeans_levels(self) -> int:
        return len(self.codes)

    def train(self, x: np.ndarray) -> float:
        import torch

        x = _as_float32(x, self.d)
        residual = self._fit_levels(x, self.codes)  # [n, d]
        m = len(self.fsq.levels)
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        scale = float(np.sqrt((residual * residual).sum(1).mean()) + 1e-12)
        r = torch.from_numpy(residual / scale)  # unit-scale residuals [n, d]
        project_in, project_out = torch.nn.Linear(self.d, m), torch.nn.Linear(m, self.d)
        self._pca_init(residual / scale, project_in, project_out)
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
        error = x - self.decode(self.encode(x))
        self.level_mse.append(float((error * error).sum(1).mean()))
        return float((error * error).sum())

    def _pca_init(self, r: np.ndarray, project_in, project_out, sample: int = 20_000) -> None:
        """Start the projection on the residual's top principal directions, scaled so that
        tanh(1.2 z) (close to the Gaussian CDF) spreads every channel evenly over its
        levels: a default init maps every residual to nearly the same code."""
        import torch

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

    def _fsq_digits(self, residual: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            _, digits = self.fsq.quantize(torch.from_numpy(residual @ self.w_in + self.b_in))
        return digits.numpy()

    def encode(self, x: np.ndarray) -> np.ndarray:
        assert self.w_in is not None, "train() or load() first"
        codes, residual = self._encode_kmeans(x)
        last = self.fsq.digits_to_codes(self._fsq_digits(residual))
        return np.concatenate([codes, last[:, None].astype(np.int32)], axis=1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        values = self.fsq.digits_to_values(self.fsq.codes_to_digits(np.asarray(codes)[:, -1]))  # [n, m]
        return self._decode_kmeans(codes) + values @ self.w_out + self.b_out

    def arrays(self) -> dict[str, np.ndarray]:
        return {**super().arrays(), "fsq_w_in": self.w_in, "fsq_b_in": self.b_in, "fsq_w_out": self.w_out, "fsq_b_out": self.b_out}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        super()._restore(arrays)
        self.w_in, self.b_in = arrays["fsq_w_in"], arrays["fsq_b_in"]
        self.w_out, self.b_out = arrays["fsq_w_out"], arrays["fsq_b_out"]


def from_params(params: dict, arrays: dict[str, np.ndarray], level_mse: list[float] | None = None) -> ResidualKMeans:
    """Rebuild a trained quantizer from its params and arrays (as saved)."""
    kind = params["kind"]
    common = {k: params[k] for k in ("d", "codes", "niter", "seed", "sample_size")}
    if kind == ResidualKMeans.kind:
        quantizer = ResidualKMeans(**common)
    elif kind == ResidualKMeansFSQ.kind:
        quantizer = ResidualKMeansFSQ(
            **common, fsq_levels=tuple(params["fsq_levels"]), epochs=params["epochs"], lr=params["lr"], batch_size=params["batch_size"]
        )
    else:
        raise ValueError(f"unknown quantizer kind {kind!r}")
    quantizer._restore(arrays)
    quantizer.level_mse = list(level_mse or [])
    return quantizer
