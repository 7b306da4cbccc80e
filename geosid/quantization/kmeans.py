"""k-means in the shape of faiss's `Kmeans`: `train(x) -> objective`, `centroids`,
`assign(x) -> (dist, idx)`.

Backends: faiss (CPU, or faiss-gpu where installed) and a torch Lloyd implementation
(CUDA where available; it runs on CPU too, which is how it is tested here).

faiss silently trains on at most `max_points_per_centroid` (256) points per centroid;
here every training point is used unless `sample_size` is set, and then the sample is
drawn explicitly and reproducibly from `seed`.
"""

from __future__ import annotations

import numpy as np

from geosid.quantization.base import as_float32


def cuda_available() -> bool:
    try:
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


class KMeans:
    """k centroids in d dimensions.

    backend: "auto" (faiss-gpu if present, else torch on CUDA if present, else faiss CPU),
    "faiss", or "torch" (with `device`, default cuda when available).
    """

    def __init__(
        self,
        d: int,
        k: int,
        niter: int = 25,
        seed: int = 1234,
        sample_size: int | None = None,
        backend: str = "auto",
        device: str | None = None,
        *,
        verbose: bool = False,
        init: str = "random",
    ):
        assert d > 0 and k > 0, f"need d > 0 and k > 0, got d={d}, k={k}"
        if init not in ("random", "k-means++"):
            raise ValueError(f"init must be 'random' or 'k-means++', got {init!r}")
        self.d, self.k, self.niter, self.seed, self.init = d, k, niter, seed, init
        self.sample_size, self.verbose = sample_size, verbose
        self.backend, self.device = self._resolve(backend, device)
        self.centroids: np.ndarray | None = None  # [k, d] float32
        self.obj: np.ndarray = np.zeros(0)  # objective (sum of squared distances) per iteration

    @staticmethod
    def _resolve(backend: str, device: str | None) -> tuple[str, str]:
        import faiss  # lazy: loaded where k-means runs

        if backend == "auto":
            if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
                return "faiss", "cuda"
            if cuda_available():
                return "torch", "cuda"
            return "faiss", "cpu"
        if backend == "faiss":
            gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
            return "faiss", "cuda" if (gpu and device != "cpu") else "cpu"
        if backend == "torch":
            return "torch", device or ("cuda" if cuda_available() else "cpu")
        raise ValueError(f"backend must be auto, faiss or torch, got {backend!r}")

    def _training_points(self, x: np.ndarray) -> np.ndarray:
        if self.sample_size is not None and self.sample_size < len(x):
            rng = np.random.default_rng(self.seed)
            return x[np.sort(rng.choice(len(x), self.sample_size, replace=False))]
        return x

    def train(self, x: np.ndarray, init: np.ndarray | None = None) -> float:
        """Fit the centroids on x [n, d], from `init` [k, d] when given (a warm start:
        centroid i starts where init's i-th is, so code ids carry over); returns the final
        objective (sum of squared distances)."""
        x = self._training_points(as_float32(x, self.d))
        if len(x) < self.k:
            raise ValueError(f"cannot fit k={self.k} centroids on {len(x)} points")
        if init is not None:
            init = as_float32(init, self.d)
            assert init.shape == (self.k, self.d), f"init centroids [{self.k}, {self.d}] expected, got {init.shape}"
        if self.backend == "faiss":
            self._train_faiss(x, init)
        else:
            self._train_torch(x, init=init)
        return float(self.obj[-1])

    def _train_faiss(self, x: np.ndarray, init: np.ndarray | None = None) -> None:
        import faiss  # lazy: loaded where k-means runs

        km = faiss.Kmeans(
            self.d,
            self.k,
            niter=self.niter,
            seed=self.seed,
            verbose=self.verbose,
            gpu=self.device == "cuda",
            # use every point: faiss would otherwise subsample to 256 per centroid
            max_points_per_centroid=int(np.ceil(len(x) / self.k)) + 1,
            min_points_per_centroid=1,
        )
        if init is None and self.init == "k-means++":
            init = self._kmeans_plus_plus(x)
        km.train(x, init_centroids=init)
        self.centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
        self.obj = np.asarray(km.obj, dtype=np.float64)

    def _train_torch(self, x: np.ndarray, batch: int = 65_536, init: np.ndarray | None = None) -> None:
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        generator = torch.Generator().manual_seed(self.seed)
        data = torch.from_numpy(x).to(self.device)  # [n, d]
        if init is not None:
            centroids = torch.from_numpy(np.array(init)).to(self.device)
        elif self.init == "k-means++":
            centroids = torch.from_numpy(self._kmeans_plus_plus(x)).to(self.device)
        else:
            init = torch.randperm(len(x), generator=generator)[: self.k]
            centroids = data[init.to(self.device)].clone()  # [k, d]
        objective = []
        for _ in range(self.niter):
            sums = torch.zeros_like(centroids)
            counts = torch.zeros(self.k, device=self.device)
            total = 0.0
            for start in range(0, len(data), batch):
                chunk = data[start : start + batch]  # [b, d]
                dist, idx = _nearest(chunk, centroids)
                total += float(dist.sum())
                sums.index_add_(0, idx, chunk)
                counts.index_add_(0, idx, torch.ones_like(idx, dtype=counts.dtype))
            objective.append(total)
            empty = counts == 0
            centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
            if bool(empty.any()):
                # re-seed empty clusters on random points, as faiss splits big ones
                pick = torch.randint(0, len(data), (int(empty.sum()),), generator=generator)
                centroids[empty] = data[pick.to(self.device)]
        self.centroids = centroids.float().cpu().numpy()
        self.obj = np.asarray(objective)

    def _kmeans_plus_plus(self, x: np.ndarray) -> np.ndarray:
        """k-means++ seeds (each next seed drawn with probability ~ squared distance to the
        nearest seed so far): O(n k d), for small k or low d such as spatial partitions."""
        rng = np.random.default_rng(self.seed)
        seeds = [x[rng.integers(len(x))]]
        nearest = ((x - seeds[0]) ** 2).sum(1)
        for _ in range(1, self.k):
            total = nearest.sum()
            pick = rng.integers(len(x)) if total == 0 else rng.choice(len(x), p=nearest / total)
            seeds.append(x[pick])
            nearest = np.minimum(nearest, ((x - x[pick]) ** 2).sum(1))
        return np.ascontiguousarray(np.stack(seeds), dtype=np.float32)

    def assign(self, x: np.ndarray, batch: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid of each row: (squared distance [n] float32, index [n] int64)."""
        assert self.centroids is not None, "train() first"
        return nearest_centroids(as_float32(x, self.d), self.centroids, batch)


def _nearest(x, centroids):
    """torch: squared distance and index of the nearest centroid; x [b, d], centroids [k, d]."""
    import torch  # lazy: heavy (seconds to import): loaded where it is used

    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2   -> [b, k]
    dist = (x * x).sum(1, keepdim=True) - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    best, idx = torch.min(dist, dim=1)
    return best.clamp(min=0), idx


def nearest_centroids(x: np.ndarray, centroids: np.ndarray, batch: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest centroid (faiss flat L2 index), in batches: (dist [n], idx [n])."""
    import faiss  # lazy: loaded where k-means runs

    x = as_float32(x, centroids.shape[1])
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist = np.empty(len(x), np.float32)
    idx = np.empty(len(x), np.int64)
    for start in range(0, len(x), batch):
        d, i = index.search(x[start : start + batch], 1)
        dist[start : start + batch], idx[start : start + batch] = d[:, 0], i[:, 0]
    return dist, idx
