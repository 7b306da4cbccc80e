"""How far two codebook versions are apart, over the items both give a SID.

    stability(old [n, L], new [n, L'], old_sids=None, new_sids=None) -> Stability
    code_map(old [n], new [n]) -> CodeMap (for each new code, the old code most of its items had)

- SID retention: the share of items whose SID (codes and disambiguation digit) is the
  same string under both versions; code retention: the same code tuple.
- Per-level retention, raw: the same code id at level l. After matching: the same code
  once the new level's codes are relabelled by the one-to-one matching that keeps the
  most items (the Hungarian algorithm on the level's contingency table; greedy by count
  past `EXACT_MATCHING_LIMIT` codes, where the table no longer fits in memory). Matched
  retention is what a re-fit could keep at best by renaming codes alone.
- First-level agreement: the adjusted Rand index of the two first-level partitions
  (1: the same partition whatever the ids; about 0: no more alike than chance).
- Neighbour overlap: an item's prefix neighbours are the other items that share its
  first `depth` codes (default: all but the last level); the overlap is the share of an
  item's old neighbours that are still its neighbours, averaged over the items that had
  any. It is invariant to code renaming: it says whether the neighbourhoods a model has
  learnt survive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

EXACT_MATCHING_LIMIT = 4096  # codes per level up to which the matching is exact


@dataclass(frozen=True)
class Stability:
    items: int  # items with a SID under both versions
    sid_retention: float
    code_retention: float
    level_retention: tuple[float, ...]
    level_retention_matched: tuple[float, ...]
    first_level_ari: float
    neighbour_overlap: float
    neighbour_depth: int

    def to_dict(self) -> dict:
        out = asdict(self)
        out["level_retention"] = list(self.level_retention)
        out["level_retention_matched"] = list(self.level_retention_matched)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> Stability:
        fields = {k: values[k] for k in cls.__dataclass_fields__}
        fields["level_retention"] = tuple(fields["level_retention"])
        fields["level_retention_matched"] = tuple(fields["level_retention_matched"])
        return cls(**fields)

    def summary(self) -> str:
        levels = " / ".join(f"{r:.1%}" for r in self.level_retention)
        matched = " / ".join(f"{r:.1%}" for r in self.level_retention_matched)
        return (
            f"{self.items:,} common items: SID kept {self.sid_retention:.1%} (code tuple {self.code_retention:.1%}), "
            f"per level {levels} (matched {matched}), first-level ARI {self.first_level_ari:.3f}, "
            f"neighbour overlap {self.neighbour_overlap:.1%}"
        )


def _dense(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes relabelled 0..k-1 in order of value, and k."""
    uniques, inverse = np.unique(values, return_inverse=True)
    return inverse.ravel(), len(uniques)


def matching(old: np.ndarray, new: np.ndarray) -> dict[int, int]:
    """The one-to-one map new code -> old code that keeps the most items (old [n], new [n])."""
    old_ids, old_values = np.unique(old, return_inverse=True)
    new_ids, new_values = np.unique(new, return_inverse=True)
    table = np.zeros((len(new_ids), len(old_ids)), np.int64) if max(len(old_ids), len(new_ids)) <= EXACT_MATCHING_LIMIT else None
    if table is not None:
        np.add.at(table, (new_values.ravel(), old_values.ravel()), 1)
        rows, cols = linear_sum_assignment(table, maximize=True)
        return {int(new_ids[r]): int(old_ids[c]) for r, c in zip(rows, cols) if table[r, c] > 0}
    # greedy: the largest overlaps first, each code used once
    pairs, counts = np.unique(np.stack([new_values.ravel(), old_values.ravel()], 1), axis=0, return_counts=True)
    out: dict[int, int] = {}
    used: set[int] = set()
    for (n, o), _ in sorted(zip(pairs.tolist(), counts.tolist()), key=lambda p: -p[1]):
        if n not in out and o not in used:
            out[n] = o
            used.add(o)
    return {int(new_ids[n]): int(old_ids[o]) for n, o in out.items()}


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two partitions given as labels [n] (Hubert and Arabie):
    (index - expected) / (max - expected) over the pairs of items."""
    pairs = lambda counts: float((counts.astype(np.float64) * (counts - 1) / 2).sum())  # noqa: E731
    n = len(a)
    if n < 2:
        return 1.0
    _, both = np.unique(np.stack([np.asarray(a), np.asarray(b)], 1), axis=0, return_counts=True)
    index = pairs(both)
    rows, cols = pairs(np.unique(a, return_counts=True)[1]), pairs(np.unique(b, return_counts=True)[1])
    expected = rows * cols / (n * (n - 1) / 2)
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else float((index - expected) / (maximum - expected))


def _group_ids(codes: np.ndarray) -> np.ndarray:
    """One id per distinct row of codes [n, l]."""
    return np.unique(np.asarray(codes), axis=0, return_inverse=True)[1].ravel()


def neighbour_overlap(old: np.ndarray, new: np.ndarray, depth: int) -> float:
    """Mean share of an item's old prefix neighbours (first `depth` codes) that share its
    new prefix too (old [n, L], new [n, L']); items with no old neighbour are left out."""
    old_group, new_group = _group_ids(old[:, :depth]), _group_ids(new[:, :depth])
    old_size = np.bincount(old_group)[old_group]
    both = _group_ids(np.stack([old_group, new_group], 1))
    both_size = np.bincount(both)[both]
    has = old_size > 1
    if not has.any():
        return 1.0
    return float(((both_size[has] - 1) / (old_size[has] - 1)).mean())


def stability(old: np.ndarray, new: np.ndarray, old_sids=None, new_sids=None, depth: int | None = None) -> Stability:
    """See the module doc. old [n, L] and new [n, L'] are the two versions' codes of the
    same n items (row i: one item); the SIDs (with their digits), when given, are [n]."""
    old, new = np.asarray(old, np.int64), np.asarray(new, np.int64)
    assert old.ndim == new.ndim == 2 and len(old) == len(new), f"codes of the same items expected, got {old.shape} and {new.shape}"
    n, levels = len(old), min(old.shape[1], new.shape[1])
    depth = max(1, levels - 1) if depth is None else depth
    if n == 0:
        empty = (0.0,) * levels
        return Stability(0, 0.0, 0.0, empty, empty, 0.0, 0.0, depth)
    code_retention = float((old == new).all(1).mean()) if old.shape[1] == new.shape[1] else 0.0
    if old_sids is not None and new_sids is not None:
        sid_retention = float((np.asarray(old_sids, object) == np.asarray(new_sids, object)).mean())
    else:
        sid_retention = code_retention
    raw, matched = [], []
    for level in range(levels):
        raw.append(float((old[:, level] == new[:, level]).mean()))
        mapping = matching(old[:, level], new[:, level])
        renamed = np.array([mapping.get(int(c), -1) for c in new[:, level]], np.int64)
        matched.append(float((renamed == old[:, level]).mean()))
    return Stability(
        items=n,
        sid_retention=sid_retention,
        code_retention=code_retention,
        level_retention=tuple(raw),
        level_retention_matched=tuple(matched),
        first_level_ari=adjusted_rand(old[:, 0], new[:, 0]),
        neighbour_overlap=neighbour_overlap(old, new, depth),
        neighbour_depth=depth,
    )


@dataclass(frozen=True)
class CodeMap:
    """For each new code of a level, the old code most of its items had."""

    new_code: np.ndarray  # [m] int64
    old_code: np.ndarray  # [m] int64
    items: np.ndarray  # [m] items of the new code (among the common items)
    share: np.ndarray  # [m] float: the share of those items that had old_code


def code_map(old: np.ndarray, new: np.ndarray) -> CodeMap:
    """old [n], new [n]: the codes of one level of the same items under two versions."""
    old, new = np.asarray(old, np.int64), np.asarray(new, np.int64)
    if not len(old):
        z = np.zeros(0, np.int64)
        return CodeMap(z, z, z, np.zeros(0))
    pairs, counts = np.unique(np.stack([new, old], 1), axis=0, return_counts=True)
    # per new code: its most frequent old code (ties: the smallest old code)
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pairs, counts = pairs[order], counts[order]
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    totals = np.bincount(_dense(pairs[:, 0])[0], weights=counts)
    return CodeMap(pairs[first, 0], pairs[first, 1], totals.astype(np.int64), counts[first] / totals)
