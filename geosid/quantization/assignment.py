"""Capacity-aware assignment of the last level: a code tuple holds one item where it can.

Items are grouped by their prefix (the codes of every level but the last). An item whose
nearest last-level code is free (not taken before, not wanted by another item of its
prefix) keeps it; the others are given, greedily by distance over all their candidates,
the next-nearest code that is still free (ties: the earlier item). An item none of
whose candidates is free gets a wider list (`widen`: every code of the level, where the
caller can compute it) and a second pass. Only when its prefix holds more items than
the level has codes does an item share a code tuple, and then the least crowded of its
candidates, so collisions spread instead of piling up.
Deterministic: the result depends on the set of items, their order only through ties,
and the codes already `taken` (an index's earlier items, which never move).
"""

from __future__ import annotations

import numpy as np

# Enters the params (and so the version id) of capacity-aware tokenizers: a change of
# this algorithm makes new versions, never silently other SIDs under an old id.
REVISION = "greedy-widen-spread-v3"


def tuple_keys(codes: np.ndarray, level_sizes: tuple[int, ...]) -> np.ndarray:
    """codes [n, L] -> one int64 per row (mixed radix over the level sizes)."""
    codes = np.asarray(codes, np.int64).reshape(-1, len(level_sizes))
    keys = np.zeros(len(codes), np.int64)
    for level, size in enumerate(level_sizes):
        keys = keys * int(size) + codes[:, level]
    return keys


def _greedy(last: np.ndarray, items: np.ndarray, candidates: np.ndarray, cost: np.ndarray, base: np.ndarray, occupied: set) -> None:
    """Give each of `items` (rows of candidates / cost) its best free candidate, pairs
    nearest first over all of them (ties: the earlier item)."""
    k = candidates.shape[1]
    owner = np.repeat(items, k)
    choice = candidates.reshape(-1)
    order = np.lexsort((owner, cost.reshape(-1)))
    for i, code in zip(owner[order].tolist(), choice[order].tolist()):
        if last[i] >= 0 or code < 0:
            continue
        key = int(base[i]) + code
        if key not in occupied:
            occupied.add(key)
            last[i] = code


def resolve_last_level(prefix: np.ndarray, candidates: np.ndarray, cost: np.ndarray, level_sizes: tuple[int, ...],
                       taken: np.ndarray | None = None, widen=None) -> np.ndarray:  # fmt: skip
    """Last-level codes [n] for prefix codes [n, L-1], candidate codes [n, k] (best first,
    -1: none) and their costs [n, k]; `taken` [t, L] code tuples already occupied;
    `widen(rows) -> (codes [m, k'], cost [m, k'])` more candidates for the given rows."""
    n, k = candidates.shape
    assert prefix.shape == (n, len(level_sizes) - 1), f"prefix {prefix.shape} for {n} items and {len(level_sizes)} levels"
    last_size = int(level_sizes[-1])
    base = tuple_keys(prefix, level_sizes[:-1]) * last_size  # [n]
    taken_keys = np.zeros(0, np.int64) if taken is None or len(taken) == 0 else tuple_keys(taken, level_sizes)
    occupied = set(taken_keys.tolist())
    first = candidates[:, 0]
    first_key = base + first
    _, inverse, counts = np.unique(first_key, return_inverse=True, return_counts=True)
    alone = (counts[inverse] == 1) & ~np.isin(first_key, taken_keys)
    last = np.where(alone, first, -1)
    occupied.update(first_key[alone].tolist())
    rest = np.flatnonzero(~alone)
    if len(rest):
        _greedy(last, rest, candidates[rest], cost[rest], base, occupied)
    lists = {}  # row -> (codes, cost) of its widest candidate list
    stuck = np.flatnonzero(last < 0)
    if len(stuck) and widen is not None:
        wide, wide_cost = widen(stuck)
        _greedy(last, stuck, wide, wide_cost, base, occupied)
        lists = {int(r): (wide[j], wide_cost[j]) for j, r in enumerate(stuck)}
    stuck = np.flatnonzero(last < 0)
    if len(stuck):
        # a crowded prefix: share, on the least crowded candidate (then the nearest)
        load: dict[int, int] = {}
        for key in np.concatenate([taken_keys, (base + last)[last >= 0]]).tolist():
            load[key] = load.get(key, 0) + 1
        for r in stuck.tolist():
            codes, _ = lists.get(r, (candidates[r], cost[r]))
            codes = codes[codes >= 0]
            best = min(range(len(codes)), key=lambda j: (load.get(int(base[r]) + int(codes[j]), 0), j))
            last[r] = int(codes[best])
            key = int(base[r]) + last[r]
            load[key] = load.get(key, 0) + 1
    return last
