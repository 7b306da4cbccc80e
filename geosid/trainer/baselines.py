"""Non-learned next-item baselines, scored by the same metric code as the models.

Every baseline returns ranked item indices [n, K] (-1 where it has fewer than K) from
the same inputs a model sees for a request: the history items (oldest first, -1 =
padding) and, for the geographic ones, the request's cell and its neighbours. Popularity
and transitions are counted on the train split only.

- most_popular: the train targets' most frequent items.
- nearest_popular: the most popular train targets in the user's cell, then in its
  neighbour cells, then globally; ties within a cell by global popularity.
- repeat: the user's most visited history items, ties by recency; then most popular.
- recent: the user's distinct history items, most recent first; then most popular.
- markov (global): the items that most often followed the user's last item, as a
  train target after that item, ties by global popularity; then repeat.
- markov_user: the same, counted only on the user's own history, ties by the user's
  visits then recency (the repeat order); then repeat.

Ties are frequent (most transitions are seen once), so each rule breaks them by its
own evidence, never by the item's index: an index carries no signal, and a tie-break by
it made the rules differ between lakes built alike.
"""

from __future__ import annotations

import numpy as np


def _fill(ranked: list[int], k: int, *fallbacks) -> list[int]:
    """`ranked`, then each fallback's items not yet in, cut to k."""
    out, seen = [], set()
    for source in (ranked, *fallbacks):
        for item in source:
            item = int(item)
            if item >= 0 and item not in seen:
                seen.add(item)
                out.append(item)
                if len(out) == k:
                    return out
    return out


def _as_matrix(rows: list[list[int]], k: int) -> np.ndarray:
    out = np.full((len(rows), k), -1, np.int64)
    for r, items in enumerate(rows):
        out[r, : len(items)] = items[:k]
    return out


def popularity_rank(train_targets: np.ndarray) -> dict[int, int]:
    """item -> its position in `popularity` (items never a train target are absent)."""
    return {int(item): rank for rank, item in enumerate(popularity(train_targets).tolist())}


def popularity(train_targets: np.ndarray) -> np.ndarray:
    """Items by train-target frequency, most frequent first (ties: lower index)."""
    counts = np.bincount(train_targets[train_targets >= 0])
    order = np.argsort(-counts, kind="stable")
    return order[counts[order] > 0]


def most_popular(train_targets: np.ndarray, n: int, k: int) -> np.ndarray:
    """The k items most often a train target, for every one of n requests."""
    top = popularity(train_targets)[:k]
    return np.tile(np.pad(top, (0, max(0, k - len(top))), constant_values=-1), (n, 1))


def nearest_popular(train_targets, train_cells, request_cells, request_neighbours, k: int) -> np.ndarray:
    """Per request: items most popular as train targets in the user's cell, then in its
    neighbour cells, then globally; ranked [n, k]."""
    by_cell: dict[int, list[int]] = {}
    pairs: dict[tuple[int, int], int] = {}
    for item, cell in zip(train_targets.tolist(), train_cells.tolist()):
        if item >= 0:
            pairs[(cell, item)] = pairs.get((cell, item), 0) + 1
    global_rank = popularity_rank(train_targets)
    for (cell, item), _ in sorted(pairs.items(), key=lambda kv: (kv[0][0], -kv[1], global_rank[kv[0][1]])):
        by_cell.setdefault(cell, []).append(item)
    top = popularity(train_targets)[: 4 * k]
    rows = []
    for cell, ring in zip(request_cells.tolist(), request_neighbours.tolist()):
        rows.append(_fill(by_cell.get(cell, []), k, *[by_cell.get(c, []) for c in ring if c > 0], top))
    return _as_matrix(rows, k)


def _history(row: np.ndarray) -> list[int]:
    return [int(i) for i in row if i >= 0]


def repeat_ranking(history: list[int]) -> list[int]:
    """Distinct history items by visits (desc), ties by the latest visit (most recent first)."""
    last_seen: dict[int, int] = {}
    counts: dict[int, int] = {}
    for position, item in enumerate(history):
        counts[item] = counts.get(item, 0) + 1
        last_seen[item] = position
    return sorted(counts, key=lambda i: (-counts[i], -last_seen[i]))


def repeat(hist_items: np.ndarray, train_targets: np.ndarray, k: int) -> np.ndarray:
    top = popularity(train_targets)[:k]
    return _as_matrix([_fill(repeat_ranking(_history(row)), k, top) for row in hist_items], k)


def recent(hist_items: np.ndarray, train_targets: np.ndarray, k: int) -> np.ndarray:
    top = popularity(train_targets)[:k]
    rows = []
    for row in hist_items:
        history = _history(row)
        rows.append(_fill(list(reversed(history)), k, top))
    return _as_matrix(rows, k)


def transitions(pairs_from: np.ndarray, pairs_to: np.ndarray, tie_rank: dict[int, int] | None = None) -> dict[int, list[int]]:
    """item -> the items that followed it, most often first; ties by `tie_rank` (lower
    first; items it lacks after those it has), then by the lower index."""
    counts: dict[tuple[int, int], int] = {}
    for a, b in zip(pairs_from.tolist(), pairs_to.tolist()):
        if a >= 0 and b >= 0:
            counts[(a, b)] = counts.get((a, b), 0) + 1
    rank = tie_rank or {}
    following: dict[int, list[int]] = {}
    for (a, b), _ in sorted(counts.items(), key=lambda kv: (-kv[1], rank.get(kv[0][1], len(rank)), kv[0][1])):
        following.setdefault(a, []).append(b)
    return following


def last_items(hist_items: np.ndarray) -> np.ndarray:
    """The latest history item of each row (-1 when the history is empty); rows oldest first, left-aligned."""
    valid = hist_items >= 0
    position = np.where(valid.any(1), valid.sum(1) - 1, 0)
    return np.where(valid.any(1), hist_items[np.arange(len(hist_items)), position], -1)


def markov(hist_items: np.ndarray, train_hist_items: np.ndarray, train_targets: np.ndarray, k: int) -> np.ndarray:
    """First-order Markov on the train split's (last item -> target) transitions, then repeat."""
    following = transitions(last_items(train_hist_items), train_targets, popularity_rank(train_targets))
    top = popularity(train_targets)[:k]
    rows = []
    for row, last in zip(hist_items, last_items(hist_items).tolist()):
        history = _history(row)
        rows.append(_fill(following.get(last, []), k, repeat_ranking(history), top))
    return _as_matrix(rows, k)


def markov_user(hist_items: np.ndarray, train_targets: np.ndarray, k: int) -> np.ndarray:
    """First-order Markov on the user's own history (consecutive pairs), then repeat."""
    top = popularity(train_targets)[:k]
    rows = []
    for row in hist_items:
        history = _history(row)
        by_repeat = repeat_ranking(history)
        own = transitions(np.array(history[:-1], np.int64), np.array(history[1:], np.int64), {item: r for r, item in enumerate(by_repeat)})
        rows.append(_fill(own.get(history[-1], []) if history else [], k, by_repeat, top))
    return _as_matrix(rows, k)


BASELINES = ("most_popular", "nearest_popular", "repeat", "recent", "markov", "markov_user")
