"""SID quality metrics, as DESIGN.md defines them.

- conflict rate: 1 - distinct SIDs / items (codes before disambiguation)
- exclusive rate: occupied SIDs holding exactly one item / occupied SIDs
- items-alone rate: items alone on their SID / items
- largest bucket: most items on one SID
- per-level code usage (distinct codes used / codes) and perplexity (exp of the entropy of
  the code distribution)
- geo coherence: median distance (km) between items sharing a first-level code, and
  sharing a 2-level prefix (over sampled pairs, reproducible)
"""

from __future__ import annotations

import numpy as np

from geosid.geo import haversine_km


def bucket_sizes(codes: np.ndarray) -> np.ndarray:
    """Items per occupied SID; codes [n, L]."""
    _, counts = np.unique(np.asarray(codes), axis=0, return_counts=True)
    return counts


def perplexity(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def median_pair_distance_km(group: np.ndarray, lat: np.ndarray, lon: np.ndarray, pairs: int, seed: int) -> float | None:
    """Median distance between two different items of the same group, over `pairs` pairs
    drawn uniformly among all same-group pairs (None when no group has two items)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(group, kind="stable")
    g = np.asarray(group)[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    weight = sizes * (sizes - 1) / 2.0  # pairs per group
    if weight.sum() == 0:
        return None
    chosen = rng.choice(len(starts), pairs, p=weight / weight.sum())
    first = rng.integers(0, sizes[chosen])
    second = (first + rng.integers(1, sizes[chosen])) % sizes[chosen]  # a different member
    a, b = order[starts[chosen] + first], order[starts[chosen] + second]
    return float(np.median(haversine_km(lat[a], lon[a], lat[b], lon[b])))


def conflict_floor(x: np.ndarray, decimals: int = 4) -> float:
    """1 - distinct vectors / items: the conflict rate no tokenizer can go below, since
    items with identical embeddings (identical documents) must share their codes.
    Vectors equal to `decimals` places count as one: the same document embedded in two
    batches differs by float noise (padding), not in meaning."""
    return 1.0 - len(np.unique(np.round(np.asarray(x), decimals), axis=0)) / len(x)


def sid_quality(
    codes: np.ndarray,
    level_sizes: tuple[int, ...],
    lat: np.ndarray | None = None,
    lon: np.ndarray | None = None,
    pairs: int = 20_000,
    seed: int = 0,
) -> dict:
    """All metrics for codes [n, L] (before disambiguation); lat/lon [n] for geo coherence."""
    codes = np.asarray(codes)
    assert codes.ndim == 2 and codes.shape[1] == len(level_sizes), f"codes {codes.shape} vs {len(level_sizes)} levels"
    n = len(codes)
    sizes = bucket_sizes(codes)
    out = {
        "items": n,
        "sids": int(len(sizes)),
        "conflict_rate": 1.0 - len(sizes) / n,
        "exclusive_rate": float((sizes == 1).mean()),
        "items_alone_rate": float((sizes == 1).sum() / n),
        "largest_bucket": int(sizes.max()),
        "code_usage": [float(len(np.unique(codes[:, level])) / k) for level, k in enumerate(level_sizes)],
        "perplexity": [perplexity(codes[:, level]) for level in range(codes.shape[1])],
    }
    if lat is not None and lon is not None:
        lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        first = codes[:, 0].astype(np.int64)
        prefix2 = first * int(level_sizes[1]) + codes[:, 1].astype(np.int64)
        out["geo_coherence_l1_km"] = median_pair_distance_km(first, lat, lon, pairs, seed)
        out["geo_coherence_l2_km"] = median_pair_distance_km(prefix2, lat, lon, pairs, seed + 1)
        out["geo_baseline_km"] = median_pair_distance_km(np.zeros(n, np.int64), lat, lon, pairs, seed + 2)
    return out
