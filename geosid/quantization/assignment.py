"""Capacity-aware assignment of the last level: a code tuple holds one item where it can.

Items are grouped by their prefix (the codes of every level but the last). An item whose
nearest last-level code is free (not taken before, not wanted by another item of its
prefix) keeps it; the others are given, greedily by distance over all their candidates,
the next-nearest code that is still free (ties: the earlier item). Only when a prefix
holds more items than its candidates can place does an item share its nearest code.
Deterministic: the result depends on the set of items, their order only through ties,
and the codes already `taken` (an index's earlier items, which never move).
"""

from __future__ import annotations

import numpy as np


def tuple_keys(codes: np.ndarray, level_sizes: tuple[int, ...]) -> np.ndarray:
    """codes [n, L] -> one int64 per row (mixed radix over the level sizes)."""
    codes = np.asarray(codes, np.int64).reshape(-1, len(level_sizes))
    keys = np.zeros(len(codes), np.int64)
    for level, size in enumerate(level_sizes):
        keys = keys * int(size) + codes[:, level]
    return keys


def resolve_last_level(prefix: np.ndarray, candidates: np.ndarray, cost: np.ndarray, level_sizes: tuple[int, ...],
                       taken: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Last-level codes [n] for prefix codes [n, L-1], candidate codes [n, k] (best first,
    -1: none) and their costs [n, k]; `taken` [t, L] code tuples already occupied."""
    n, k = candidates.shape
    assert prefix.shape == (n, len(level_sizes) - 1), f"prefix {prefix.shape} for {n} items and {len(level_sizes)} levels"
    last_size = int(level_sizes[-1])
    base = tuple_keys(prefix, level_sizes[:-1]) * last_size  # [n]
    occupied = set() if taken is None or len(taken) == 0 else set(tuple_keys(taken, level_sizes).tolist())
    first = candidates[:, 0]
    first_key = base + first
    _, inverse, counts = np.unique(first_key, return_inverse=True, return_counts=True)
    alone = (counts[inverse] == 1) & ~np.isin(first_key, np.fromiter(occupied, np.int64, len(occupied)))
    last = np.where(alone, first, -1)
    occupied.update(first_key[alone].tolist())
    rest = np.flatnonzero(~alone)
    if len(rest):
        # every (item, candidate) pair of the contested items, nearest first
        items = np.repeat(rest, k)
        choice = candidates[rest].reshape(-1)
        order = np.lexsort((items, cost[rest].reshape(-1)))
        for i, code in zip(items[order].tolist(), choice[order].tolist()):
            if last[i] >= 0 or code < 0:
                continue
            key = int(base[i]) + code
            if key not in occupied:
                occupied.add(key)
                last[i] = code
        crowded = last < 0
        last[crowded] = first[crowded]  # no free candidate: share the nearest
    return last
