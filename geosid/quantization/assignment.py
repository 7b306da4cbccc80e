"""Capacity-aware assignment of the last level: a code tuple holds one item where it can.

Items are grouped by their prefix (the codes of every level but the last). An item whose
nearest last-level code is free (not taken before, not wanted by another item of its
prefix) keeps it. The others propose, in rounds, their next candidate (nearest first):
a free code goes to the nearest of the items proposing it in that round (ties: the
earlier item), the rest try their next candidate. An item none of whose candidates is
free gets a wider list (`widen`: every code of the level, where the caller can compute
it) and more rounds. Only when its prefix holds more items than the level has codes
does an item share a code tuple; the items left over then spread over their candidate
lists (the j-th left-over item of a prefix takes its j-th candidate), not onto one code.

Every step is vectorized (rounds over arrays, chunked when widened), so a badly spread
codebook costs rounds, not a Python loop over items. Deterministic: the result depends
on the set of items, their order only through ties, and the codes already `taken` (an
index's earlier items, which never move).

An item whose first candidate cost is negative (`KEPT`) keeps that code whatever else
wants it: an aligned version's item keeping its code under the previous version (items
that shared a code tuple there share it again, and so keep their SIDs). The kept codes
are settled first; the other items are assigned around them.
"""

from __future__ import annotations

import numpy as np

# Enters the params (and so the version id) of capacity-aware tokenizers: a change of
# this algorithm makes new versions, never silently other SIDs under an old id. v5: the
# candidates' costs are exact per row (the same item, the same costs in any batch).
REVISION = "proposal-rounds-v5"

KEPT = -1.0  # a first candidate cost that marks the code as kept (real costs are >= 0)


def tuple_keys(codes: np.ndarray, level_sizes: tuple[int, ...]) -> np.ndarray:
    """codes [n, L] -> one int64 per row (mixed radix over the level sizes)."""
    codes = np.asarray(codes, np.int64).reshape(-1, len(level_sizes))
    keys = np.zeros(len(codes), np.int64)
    for level, size in enumerate(level_sizes):
        keys = keys * int(size) + codes[:, level]
    return keys


class _Occupied:
    """The set of occupied tuple keys: a bitmap over the key space when it is small
    enough (256^3 codes: 16 MB), else a sorted array with a small sorted buffer of recent
    additions, merged when it grows (so a round costs O(its keys), not O(all keys))."""

    BITMAP_LIMIT = 1 << 28

    def __init__(self, keys: np.ndarray, space: int):
        self.bitmap = np.zeros(space, bool) if space <= self.BITMAP_LIMIT else None
        if self.bitmap is not None:
            self.bitmap[keys] = True
        else:
            self.keys, self.recent = np.unique(keys), np.zeros(0, np.int64)

    @staticmethod
    def _in(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
        if not len(sorted_keys):
            return np.zeros(len(keys), bool)
        pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        return sorted_keys[pos] == keys

    def contains(self, keys: np.ndarray) -> np.ndarray:
        if self.bitmap is not None:
            return self.bitmap[keys]
        return self._in(self.keys, keys) | self._in(self.recent, keys)

    def add(self, keys: np.ndarray) -> None:
        if not len(keys):
            return
        if self.bitmap is not None:
            self.bitmap[keys] = True
            return
        self.recent = np.union1d(self.recent, keys)
        if len(self.recent) > max(1024, len(self.keys) // 8):
            self.keys, self.recent = np.union1d(self.keys, self.recent), np.zeros(0, np.int64)


def _rounds(last: np.ndarray, rows: np.ndarray, candidates: np.ndarray, cost: np.ndarray, base: np.ndarray, occupied: _Occupied) -> None:
    """Proposal rounds for `rows` (their candidate lists [m, k], nearest first) until
    every row has a free code or has run through its list; sets `last` in place."""
    m, k = candidates.shape
    pointer = np.zeros(m, np.int64)
    active = np.flatnonzero(last[rows] < 0)
    while len(active):
        code = candidates[active, pointer[active]]
        key = base[rows[active]] + code
        free = (code >= 0) & ~occupied.contains(key)
        proposers = active[free]
        if len(proposers):
            order = np.lexsort((rows[proposers], cost[proposers, pointer[proposers]], key[free]))
            ordered_keys = key[free][order]
            first = np.r_[True, ordered_keys[1:] != ordered_keys[:-1]]
            winners = proposers[order[first]]
            last[rows[winners]] = candidates[winners, pointer[winners]]
            occupied.add(ordered_keys[first])
        pointer[active] += 1
        active = active[(last[rows[active]] < 0) & (pointer[active] < k)]


def resolve_last_level(
    prefix: np.ndarray,
    candidates: np.ndarray,
    cost: np.ndarray,
    level_sizes: tuple[int, ...],
    taken: np.ndarray | None = None,
    widen=None,
    chunk: int = 16_384,
) -> np.ndarray:
    """Last-level codes [n] for prefix codes [n, L-1], candidate codes [n, k] (best first,
    -1: none) and their costs [n, k]; `taken` [t, L] code tuples already occupied;
    `widen(rows) -> (codes [m, k'], cost [m, k'])` more candidates for the given rows."""
    n, k = candidates.shape
    assert prefix.shape == (n, len(level_sizes) - 1), f"prefix {prefix.shape} for {n} items and {len(level_sizes)} levels"
    base = tuple_keys(prefix, level_sizes[:-1]) * int(level_sizes[-1])  # [n]
    taken_keys = np.zeros(0, np.int64) if taken is None or len(taken) == 0 else tuple_keys(taken, level_sizes)
    space = float(np.prod(np.asarray(level_sizes, dtype=np.float64)))  # code tuples there are
    occupied = _Occupied(taken_keys, int(min(space, 2**62)))
    first = candidates[:, 0]
    first_key = base + first
    kept = (cost[:, 0] < 0) & (first >= 0)
    last = np.where(kept, first, -1)
    occupied.add(np.unique(first_key[kept]))
    _, inverse, counts = np.unique(np.where(kept, -1, first_key), return_inverse=True, return_counts=True)
    alone = ~kept & (counts[inverse.ravel()] == 1) & ~occupied.contains(first_key) & (first >= 0)
    last = np.where(alone, first, last)
    occupied.add(first_key[alone])
    contested = np.flatnonzero(~alone & ~kept)
    if len(contested):
        _rounds(last, contested, candidates[contested], cost[contested], base, occupied)
    lists_codes, lists_rows = candidates, None  # the candidate lists the stuck rows end with (None: their own)
    stuck = np.flatnonzero(last < 0)
    if len(stuck) and widen is not None:
        wide_parts = []
        for start in range(0, len(stuck), chunk):
            rows = stuck[start : start + chunk]
            wide, wide_cost = widen(rows)
            _rounds(last, rows, wide, wide_cost, base, occupied)
            left = last[rows] < 0
            wide_parts.append((rows[left], wide[left]))
        stuck = np.flatnonzero(last < 0)
        if len(stuck):
            width = max(w.shape[1] for _, w in wide_parts)
            lists_rows = np.concatenate([r for r, _ in wide_parts])
            lists_codes = np.full((len(lists_rows), width), -1, np.int64)
            for (rows, wide), offset in zip(wide_parts, np.cumsum([0] + [len(r) for r, _ in wide_parts[:-1]])):
                lists_codes[offset : offset + len(rows), : wide.shape[1]] = wide
    if len(stuck):
        # A crowded prefix: its j-th left-over item takes the j-th of its own candidates,
        # so collisions spread over the prefix's codes instead of piling up on one.
        if lists_rows is None:
            own = stuck
        else:
            position = np.argsort(lists_rows, kind="stable")
            own = position[np.searchsorted(lists_rows[position], stuck)]
        codes = lists_codes[own]  # [s, k'] each stuck row's list
        order = np.lexsort((stuck, base[stuck]))
        group_start = np.r_[True, base[stuck][order][1:] != base[stuck][order][:-1]]
        rank_sorted = np.arange(len(stuck)) - np.maximum.accumulate(np.where(group_start, np.arange(len(stuck)), 0))
        rank = np.empty(len(stuck), np.int64)
        rank[order] = rank_sorted
        valid = (codes >= 0).sum(1)
        pick = np.where(valid > 0, rank % np.maximum(valid, 1), 0)
        last[stuck] = np.where(valid > 0, codes[np.arange(len(stuck)), pick], np.maximum(candidates[stuck, 0], 0))
    return last
