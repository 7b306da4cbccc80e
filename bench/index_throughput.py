"""Codebook fit and SID assignment throughput (items/s) at 384-d, side by side with faiss's
own ResidualQuantizer on the same data.

    python bench/index_throughput.py --fit-items 100000 --assign-items 1000000 --codes 8192 --niter 10

Data: synthetic unit vectors with cluster structure (a mixture of 2,000 Gaussian blobs),
seeded. Fit is timed on --fit-items; assignment of --assign-items is timed with the
fitted codebooks. Methods: ResidualKMeans (faiss k-means per level, every point used),
ResidualKMeansFSQ, and faiss.ResidualQuantizer (beam 1, same codes per level).
Results go to bench/results/index_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
from results_io import write_results  # noqa: E402

from geosid.quantization.kmeans import cuda_available
from geosid.quantization.metrics import sid_quality
from geosid.quantization.residual import FSQTraining, KMeansTraining, ResidualKMeans, ResidualKMeansFSQ


def data(n: int, d: int = 384, blobs: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (blobs, d)).astype(np.float32)
    out = np.empty((n, d), np.float32)
    for start in range(0, n, 200_000):
        m = min(200_000, n - start)
        out[start : start + m] = centers[rng.integers(0, blobs, m)] + rng.normal(0, 0.6, (m, d)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit-items", type=int, default=100_000)
    parser.add_argument("--assign-items", type=int, default=1_000_000)
    parser.add_argument("--codes", type=int, default=8192)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--niter", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=["residual_kmeans", "residual_kmeans_fsq", "faiss_rq"])
    args = parser.parse_args()
    import faiss

    codes = (args.codes,) * args.levels
    train = data(args.fit_items, seed=1)
    test = data(args.assign_items, seed=2)
    results = {
        "cpus": os.cpu_count(),
        "cuda": cuda_available(),
        "d": 384,
        "codes": list(codes),
        "fit_items": args.fit_items,
        "assign_items": args.assign_items,
        "niter": args.niter,
        "methods": {},
    }
    for method in args.methods:
        print(f"--- {method}", flush=True)
        if method == "residual_kmeans":
            q = ResidualKMeans(384, codes, KMeansTraining(niter=args.niter))
            _, fit_s = timed(lambda: q.train(train))
            assigned, assign_s = timed(lambda: q.encode(test))
        elif method == "residual_kmeans_fsq":
            bits = int(math.log2(args.codes))
            levels = tuple([8] * (bits // 3) + ([2 ** (bits % 3)] if bits % 3 else []))
            q = ResidualKMeansFSQ(384, codes[:-1], levels, KMeansTraining(niter=args.niter), FSQTraining(epochs=20))
            _, fit_s = timed(lambda: q.train(train))
            assigned, assign_s = timed(lambda: q.encode(test))
        else:
            rq = faiss.ResidualQuantizer(384, args.levels, int(math.log2(args.codes)))
            rq.max_beam_size = 1  # greedy, like residual k-means
            rq.cp.niter = args.niter
            rq.cp.max_points_per_centroid = args.fit_items  # all points, as ours
            _, fit_s = timed(lambda: rq.train(train))
            print(f"faiss_rq fit {fit_s:.1f}s", flush=True)
            # faiss encodes a whole call at once (1M x 8192 distances would need ~32 GB): batch it
            packed, assign_s = timed(lambda: np.concatenate([rq.compute_codes(test[i : i + 50_000]) for i in range(0, len(test), 50_000)]))
            bits = int(math.log2(args.codes))
            unpacked = np.unpackbits(packed, axis=1, bitorder="little")[:, : bits * args.levels]
            assigned = (unpacked.reshape(len(test), args.levels, bits) * (1 << np.arange(bits))).sum(2)
        quality = sid_quality(np.asarray(assigned), codes)
        results["methods"][method] = {
            "fit_s": round(fit_s, 1),
            "fit_items_per_s": round(args.fit_items / fit_s),
            "assign_s": round(assign_s, 1),
            "assign_items_per_s": round(args.assign_items / assign_s),
            "conflict_rate": round(quality["conflict_rate"], 4),
            "exclusive_rate": round(quality["exclusive_rate"], 4),
        }
        print(json.dumps(results["methods"][method]), flush=True)
    write_results("index_throughput", results)


if __name__ == "__main__":
    main()
