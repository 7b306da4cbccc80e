"""Tensors for the OneLoc model from a pinned corpus snapshot.

A `Vocab` maps items (by their SID under the version: level codes + disambiguation digit),
cells and cell contexts to indices; `featurize` turns corpus rows into fixed-shape
numpy arrays (histories left-aligned and masked). Everything is vectorized over Arrow.

Shapes (n rows, H history slots over all behaviors, L levels, T = L + 1 SID tokens,
F cell features, R = 8 neighbours):
  hist_codes   [n, H, T] int64 (the history item's full SID: codes, then digit)
  hist_item    [n, H] int64 (vocabulary index of the history item; -1 = padding)
  hist_item_emb [n, H] int64 (its item-id embedding row: 0 padding, 1 rare, 2.. frequent)
  hist_cell    [n, H] int64          hist_ctx [n, H, F] float32
  hist_kind    [n, H] int64 (behavior index + 1; 0 = padding)
  hist_hour    [n, H] int64 (hour of the week of the event, UTC, + 1; 0 = padding)
  hist_age     [n, H] int64 (time from the event to the request: log2 buckets of minutes, + 1; 0 = padding)
  hist_visits  [n, H] int64 (how often the slot's item occurs in the history: count buckets, 0 = padding)
  hist_trans   [n, H] int64 (how often the slot's item followed the latest history item in the
               user's own history, consecutive events of one behavior: count buckets)
  hist_routine [n, H] int64 (how often the slot's item occurs in the history within
               ROUTINE_HOURS of the request's hour of the day: count buckets, 0 = padding)
  hist_routine_week [n, H] int64 (the same within ROUTINE_HOURS of the request's hour of
               the week: the same weekday)
  latest_item  [n] int64 (vocabulary index of the latest history item; -1: none)
  cand_item    [n, M] int64 (transition candidates: the items that most often followed the
               latest item as a train target, most frequent first; -1: none; see
               `Transitions`)   cand_codes [n, M, T]   cand_item_emb [n, M]
  cand_cell    [n, M] int64     cand_ctx [n, M, F]     cand_count [n, M] (count bucket; 0: none)
  request_hour [n] int64 (hour of the week of the request, UTC, + 1)
  user_cell    [n] int64           user_ctx  [n, F]          nbr_cell [n, R]   nbr_ctx [n, R, F]
  target       [n, T] int64 (SID tokens)                     target_item [n] int64
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from geosid.geo.geometry import CellSystem
from geosid.schemas import corpus

N_FEATURES = len(corpus.CELL_FEATURES)
N_NEIGHBOURS = 8
HOURS = 7 * 24  # hours of the week
AGE_BUCKETS = 24  # log2 buckets of minutes: 1 min .. ~16 years
COUNT_BUCKETS = 7  # 0, 1, 2, 3-4, 5-8, 9-16, 17+
ROUTINE_HOURS = 1  # the routine count's window: the request's hour of the day +- this many hours


def hour_of_week(us: np.ndarray) -> np.ndarray:
    """Microseconds since the epoch (UTC) -> hour of the week, 0..167 (Monday 00h = 0)."""
    hours = us // 3_600_000_000
    return (hours + 72) % HOURS  # 1970-01-01 was a Thursday: 3 days after a Monday


def age_bucket(minutes: np.ndarray) -> np.ndarray:
    """Minutes from an event to the request -> 0..AGE_BUCKETS-1 (log2)."""
    return np.clip(np.floor(np.log2(np.maximum(minutes, 1.0))), 0, AGE_BUCKETS - 1).astype(np.int64)


def count_bucket(count: np.ndarray) -> np.ndarray:
    """Counts -> 0 (none), 1, 2, 3-4, 5-8, 9-16, 17+ as 0..COUNT_BUCKETS-1."""
    log = np.ceil(np.log2(np.maximum(count, 1))).astype(np.int64) + 1
    return np.where(count > 0, np.minimum(log, COUNT_BUCKETS - 1), 0)


def latest_items(hist_item: np.ndarray, hist_us: np.ndarray) -> np.ndarray:
    """The latest history item of each row [n] (-1: no history); on equal times the later
    slot (slots are oldest first within a behavior)."""
    n, h = hist_item.shape
    known = hist_item >= 0
    times = np.where(known, hist_us, np.iinfo(np.int64).min)[:, ::-1]
    return np.where(known.any(1), hist_item[np.arange(n), h - 1 - times.argmax(1)], -1)


@dataclass
class Transitions:
    """The train split's (latest history item -> target) counts, the signal of the global
    Markov rule, given to the model as candidate events it can copy: for each item its
    `keep` most frequent next items (ties: lower index), and their counts."""

    following: np.ndarray  # [I, keep] item indices, -1 past the last
    counts: np.ndarray  # [I, keep]

    @classmethod
    def count(cls, latest: np.ndarray, target: np.ndarray, n_items: int, keep: int) -> Transitions:
        ok = (latest >= 0) & (target >= 0)
        pairs, counts = np.unique(latest[ok].astype(np.int64) * n_items + target[ok], return_counts=True)
        src, dst = pairs // n_items, pairs % n_items
        order = np.lexsort((dst, -counts, src))  # by source, most frequent first, then lower index
        src, dst, counts = src[order], dst[order], counts[order]
        rank = np.arange(len(src)) - np.searchsorted(src, src)  # position within the source's run
        kept = rank < keep
        following = np.full((n_items, keep), -1, np.int64)
        counted = np.zeros((n_items, keep), np.int64)
        following[src[kept], rank[kept]] = dst[kept]
        counted[src[kept], rank[kept]] = counts[kept]
        return cls(following, counted)

    def candidates(self, latest: np.ndarray, target: np.ndarray | None, slots: int) -> tuple[np.ndarray, np.ndarray]:
        """(items [n, slots], counts [n, slots]) following each row's latest item. With
        `target` (rows of the split the counts came from), each row's own transition is
        left out first, so a train row never sees its answer counted."""
        assert slots < self.following.shape[1], f"{slots} slots need more than the {self.following.shape[1]} kept"
        has = latest >= 0
        items = np.where(has[:, None], self.following[np.maximum(latest, 0)], -1)  # [n, keep]
        counts = np.where(has[:, None], self.counts[np.maximum(latest, 0)], 0)
        if target is not None:
            counts = counts - ((items == target[:, None]) & (items >= 0))
        order = np.argsort(-counts, axis=1, kind="stable")[:, :slots]
        items, counts = np.take_along_axis(items, order, 1), np.take_along_axis(counts, order, 1)
        return np.where(counts > 0, items, -1), np.maximum(counts, 0)


def repeat_features(hist_item: np.ndarray, hist_us: np.ndarray, block: int, chunk: int = 4096, latest: np.ndarray | None = None):
    """The user's own repeat and transition statistics of each history slot, bucketed:
    (visits [n, H]: how often the slot's item occurs in the history; transitions [n, H]:
    how often it came right after an occurrence of the latest history item, counted over
    consecutive events within each behavior's block of `block` slots). These are the
    signals the repeat and user-Markov rules rank by; the model gets them as inputs and
    as a prior of its copy head instead of having to rediscover them by attention.
    hist_item [n, H] (-1 padding), hist_us [n, H] event times."""
    n, h = hist_item.shape
    assert h % block == 0, f"{h} history slots are not whole blocks of {block}"
    known = hist_item >= 0
    latest = latest_items(hist_item, hist_us) if latest is None else latest  # [n]
    prev = np.concatenate([np.full((n, 1), -1, hist_item.dtype), hist_item[:, :-1]], 1)
    prev[:, ::block] = -1  # a block's first slot has no predecessor in its behavior
    after_latest = known & (prev == latest[:, None]) & (latest[:, None] >= 0)  # [n, H]
    visits, trans = np.zeros((n, h), np.int64), np.zeros((n, h), np.int64)
    for lo in range(0, n, chunk):
        items = hist_item[lo : lo + chunk]
        same = (items[:, :, None] == items[:, None, :]) & known[lo : lo + chunk, None, :]  # [c, H, H]
        visits[lo : lo + chunk] = same.sum(2)
        trans[lo : lo + chunk] = (same & after_latest[lo : lo + chunk, None, :]).sum(2)
    return np.where(known, count_bucket(visits), 0), np.where(known, count_bucket(trans), 0)


def routine_visits(
    hist_item: np.ndarray, hist_hour: np.ndarray, request_hour: np.ndarray, window: int = ROUTINE_HOURS, *, weekly: bool = False, chunk: int = 4096
) -> np.ndarray:
    """The user's routine at the request's time, bucketed [n, H]: how often the slot's
    item occurs in the history at an hour of the day (`weekly`: of the week) within
    `window` hours of the request's (circular). People go to the same places at the same
    times: without this a model must learn the match of two hour embeddings by attention,
    with it the copy head ranks the habitual venue of the hour first. hist_hour [n, H] and
    request_hour [n] are hours of the week + 1 (0: padding); hist_item -1 is padding."""
    n, h = hist_item.shape
    known = hist_item >= 0
    period = HOURS if weekly else 24
    gap = np.abs((hist_hour - 1) % period - ((request_hour[:, None] - 1) % period))  # [n, H]
    near = known & (np.minimum(gap, period - gap) <= window)  # [n, H] the event is at the request's time
    counts = np.zeros((n, h), np.int64)
    for lo in range(0, n, chunk):
        items = hist_item[lo : lo + chunk]
        same = items[:, :, None] == items[:, None, :]  # [c, H, H]
        counts[lo : lo + chunk] = (same & near[lo : lo + chunk, None, :]).sum(2)
    return np.where(known, count_bucket(counts), 0)


@dataclass
class Vocab:
    """Items (rows of the SID map) and cells, with each cell's context by day."""

    item_ids: np.ndarray  # [I] str
    tokens: np.ndarray  # [I, T] SID tokens: level codes then disambiguation digit
    item_lat: np.ndarray
    item_lon: np.ndarray
    item_cell: np.ndarray  # [I] cell index of each item's location
    token_sizes: tuple[int, ...]  # vocabulary size per SID position
    cells: pd.Index  # cell id -> index + 1 (0: unknown)
    cell_centres: np.ndarray  # [C + 1, 2] lat, lon
    context_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted cell * 2^20 + day
    context_features: np.ndarray = field(default_factory=lambda: np.zeros((0, N_FEATURES), np.float32))
    # item-id embedding row of each item: 1 (a shared "rare" row) unless frequent enough
    item_embed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_item_embeddings(self) -> int:
        """Rows of the item-id embedding: padding, rare, then one per frequent item."""
        return int(self.item_embed.max(initial=1)) + 1

    def set_item_embeddings(self, counts: np.ndarray, min_count: int) -> None:
        """Items seen at least `min_count` times in training get their own id embedding
        row (a frequency cut-off for large catalogs); the others share the rare row."""
        assert len(counts) == len(self.item_ids), f"{len(counts)} counts for {len(self.item_ids)} items"
        frequent = np.flatnonzero(counts >= max(min_count, 1))
        self.item_embed = np.ones(len(self.item_ids), np.int64)
        self.item_embed[frequent] = np.arange(2, len(frequent) + 2)

    @property
    def n_levels(self) -> int:
        return self.tokens.shape[1] - 1

    @functools.cached_property
    def _item_lookup(self) -> pd.Index:
        return pd.Index(self.item_ids)

    def item_index(self, item_ids) -> np.ndarray:
        """Vocabulary index of each item id (-1: not in the version's SID map)."""
        return self._item_lookup.get_indexer(np.asarray(item_ids, dtype=object))

    def cell_index(self, cell_ids) -> np.ndarray:
        found = self.cells.get_indexer(np.asarray(cell_ids, dtype=object))
        return np.where(found >= 0, found + 1, 0)

    def context(self, cell_index: np.ndarray, day: np.ndarray) -> np.ndarray:
        """[..., F] features of each cell on each day (zeros where the corpus has none)."""
        keys = cell_index.astype(np.int64) * (1 << 20) + day.astype(np.int64)
        flat = keys.reshape(-1)
        out = np.zeros((len(flat), N_FEATURES), np.float32)
        if len(self.context_keys):
            pos = np.minimum(np.searchsorted(self.context_keys, flat), len(self.context_keys) - 1)
            hit = self.context_keys[pos] == flat
            out[hit] = self.context_features[pos[hit]]
        return out.reshape(*keys.shape, N_FEATURES)


def sequence_cells(sequences: pa.Table) -> np.ndarray:
    """The distinct cells corpus rows name (user, target and neighbour cells)."""
    columns = [sequences["user_cell_id"], sequences["target_cell_id"], pc.list_flatten(sequences["neighbour_cell_ids"])]
    return pd.unique(np.concatenate([np.asarray(c.to_numpy(zero_copy_only=False), dtype=object) for c in columns]))


def build_vocab(sid_map: pa.Table, level_sizes: tuple[int, ...], cell_context: pa.Table | None, seen_cells: np.ndarray, cells: CellSystem) -> Vocab:
    """The vocabulary of one codebook version: every item of its SID map, every cell seen
    in the sequences (`sequence_cells`) or the cell context."""
    codes = np.asarray(sid_map["codes"].combine_chunks().flatten().to_numpy(zero_copy_only=False), np.int64)
    codes = codes.reshape(sid_map.num_rows, len(level_sizes))
    digit = np.asarray(sid_map["disambiguation"].to_numpy(), np.int64)
    tokens = np.concatenate([codes, digit[:, None]], axis=1)
    item_lat = np.asarray(sid_map["lat"].to_numpy(), np.float64)
    item_lon = np.asarray(sid_map["lon"].to_numpy(), np.float64)
    item_cells = np.asarray(cells.cell_of(item_lat, item_lon), dtype=object).reshape(-1)
    cell_ids = [np.asarray(seen_cells, dtype=object), item_cells]
    if cell_context is not None and cell_context.num_rows:
        cell_ids.append(np.asarray(cell_context["cell_id"].to_numpy(zero_copy_only=False), dtype=object))
    names = pd.unique(np.concatenate(cell_ids))
    index = pd.Index(sorted(n for n in names if n is not None))
    centres = np.zeros((len(index) + 1, 2))
    for k, cell in enumerate(index):
        centres[k + 1] = cells.center(cell)
    vocab = Vocab(
        item_ids=np.asarray(sid_map["item_id"].to_numpy(zero_copy_only=False), dtype=object),
        tokens=tokens,
        item_lat=item_lat,
        item_lon=item_lon,
        item_cell=np.zeros(len(item_lat), np.int64),
        token_sizes=(*map(int, level_sizes), int(digit.max(initial=0)) + 1),
        cells=index,
        cell_centres=centres,
    )
    vocab.item_embed = np.arange(2, len(vocab.item_ids) + 2)  # every item its own row until counted
    vocab.item_cell = vocab.cell_index(item_cells)
    if cell_context is not None and cell_context.num_rows:
        cell = vocab.cell_index(cell_context["cell_id"].to_numpy(zero_copy_only=False))
        day = cell_context["dt"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
        keys = cell.astype(np.int64) * (1 << 20) + day
        order = np.argsort(keys, kind="stable")
        features = np.stack(cell_context["features"].to_numpy(zero_copy_only=False)).astype(np.float32)
        vocab.context_keys, vocab.context_features = keys[order], features[order]
    return vocab


@dataclass(frozen=True)
class Array:
    """How a `Batch` field is declared: its shape over the module docstring's symbols
    (n rows, H history slots, M candidates, T SID tokens, F cell features, R neighbours),
    its dtype, and whether the model reads it (`Batch.tensors` moves only those)."""

    shape: tuple[str, ...]
    dtype: type
    model: bool


def _array(shape: str, dtype: type = np.int64, *, model: bool = True):
    return field(metadata={"array": Array(tuple(shape.split()), dtype, model)})


@dataclass(frozen=True)
class Batch:
    """Featurized rows; see the module docstring for what each field holds. Declared once
    here: `zeros` / `empty`, `take`, `concat` and `tensors` all follow the declaration.
    The arrays are numpy; after `tensors()` the model's fields are torch tensors on a
    device and the others stay numpy (evaluation and the rules read them)."""

    hist_codes: np.ndarray = _array("n H T")
    hist_item: np.ndarray = _array("n H", model=False)
    hist_item_emb: np.ndarray = _array("n H")
    hist_cell: np.ndarray = _array("n H")
    hist_ctx: np.ndarray = _array("n H F", np.float32)
    hist_kind: np.ndarray = _array("n H")
    hist_hour: np.ndarray = _array("n H")
    hist_age: np.ndarray = _array("n H")
    hist_visits: np.ndarray = _array("n H")
    hist_trans: np.ndarray = _array("n H")
    hist_routine: np.ndarray = _array("n H")
    hist_routine_week: np.ndarray = _array("n H")
    latest_item: np.ndarray = _array("n", model=False)
    cand_item: np.ndarray = _array("n M", model=False)
    cand_codes: np.ndarray = _array("n M T")
    cand_item_emb: np.ndarray = _array("n M")
    cand_cell: np.ndarray = _array("n M")
    cand_ctx: np.ndarray = _array("n M F", np.float32)
    cand_count: np.ndarray = _array("n M")
    request_hour: np.ndarray = _array("n")
    user_cell: np.ndarray = _array("n")
    user_ctx: np.ndarray = _array("n F", np.float32)
    nbr_cell: np.ndarray = _array("n R")
    nbr_ctx: np.ndarray = _array("n R F", np.float32)
    target: np.ndarray = _array("n T")
    target_item: np.ndarray = _array("n", model=False)
    day: np.ndarray = _array("n", model=False)
    event_id: np.ndarray = _array("n", object, model=False)
    gmv: np.ndarray = _array("n", np.float64, model=False)  # NaN where the target carries none

    @staticmethod
    @functools.cache
    def arrays() -> dict[str, Array]:
        """Every field's declaration, in order (computed once: batches are taken per step)."""
        return {f.name: f.metadata["array"] for f in fields(Batch)}

    @classmethod
    def zeros(cls, **dims: int) -> Batch:
        """A batch of zeros (padding everywhere) with the given sizes of n, H, M, T, F, R."""
        sizes = {"F": N_FEATURES, "R": N_NEIGHBOURS, "M": 0, **dims}
        return cls(**{name: np.zeros(tuple(sizes[s] for s in a.shape), a.dtype) for name, a in cls.arrays().items()})

    @classmethod
    def empty(cls, vocab: Vocab, slots: int) -> Batch:
        """A batch of no rows with every array's trailing shape (an empty split)."""
        return cls.zeros(n=0, H=slots, T=vocab.n_levels + 1)

    @classmethod
    def concat(cls, batches: list[Batch]) -> Batch:
        """Rows of several batches, in order."""
        return cls(**{name: np.concatenate([getattr(b, name) for b in batches]) for name in cls.arrays()})

    def __len__(self) -> int:
        return len(self.target)

    def take(self, index) -> Batch:
        return Batch(**{name: getattr(self, name)[index] for name in self.arrays()})

    def replace(self, **arrays) -> Batch:
        return dataclasses.replace(self, **arrays)

    def tensors(self, device="cpu") -> Batch:
        """The model's fields as tensors on `device` (the rest as they are)."""
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        return self.replace(**{name: torch.as_tensor(getattr(self, name), device=device) for name, a in self.arrays().items() if a.model})

    def with_candidates(self, vocab: Vocab, transitions: Transitions | None, slots: int, *, leave_one_out: bool) -> Batch:
        """This batch with its transition candidates (none: `transitions` None or 0 slots)."""
        n = len(self)
        if transitions is None or slots == 0 or n == 0:
            items, counts = np.full((n, max(slots, 0)), -1, np.int64), np.zeros((n, max(slots, 0)), np.int64)
        else:
            items, counts = transitions.candidates(self.latest_item, self.target_item if leave_one_out else None, slots)
        known = items >= 0
        cells = np.where(known, vocab.item_cell[np.maximum(items, 0)], 0)
        return self.replace(
            cand_item=items,
            cand_codes=np.where(known[..., None], vocab.tokens[np.maximum(items, 0)], 0),
            cand_item_emb=np.where(known, vocab.item_embed[np.maximum(items, 0)], 0),
            cand_cell=cells,
            cand_ctx=vocab.context(cells, np.broadcast_to(self.day[:, None], cells.shape)),
            cand_count=np.where(known, count_bucket(counts), 0),
        )


def _last_events(events: pa.ListArray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions [n, keep] into the flattened events, valid mask): each row's last `keep`
    events, left-aligned, oldest first."""
    offsets = np.asarray(events.offsets.to_numpy(), np.int64)
    lengths = np.diff(offsets)
    take = np.minimum(lengths, keep)
    start = offsets[1:] - take
    slots = np.arange(keep)[None, :]
    valid = slots < take[:, None]
    positions = np.where(valid, start[:, None] + slots, 0)
    return positions, valid


def featurize(rows: pa.Table, vocab: Vocab, behaviors: list[str], max_history: int) -> Batch:
    """Corpus rows -> Batch. Rows whose target is not in the vocabulary (none, when the
    SID map and the corpus come from the same version) are left out: callers compare
    lengths and report them."""
    n = rows.num_rows
    if n == 0:
        return Batch.empty(vocab, len(behaviors) * max_history)
    day = rows["dt"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    request_us = rows["target_ts"].combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)  # [n]
    hist_item, hist_cell, hist_kind, hist_us = _history_slots(rows, vocab, len(behaviors), max_history)
    known = hist_item >= 0
    hist_codes = np.where(known[..., None], vocab.tokens[np.maximum(hist_item, 0)], 0)  # [n, H, T] full SIDs
    hist_item_emb = np.where(known, vocab.item_embed[np.maximum(hist_item, 0)], 0)
    hist_hour = np.where(known, hour_of_week(hist_us) + 1, 0)
    hist_age = np.where(known, age_bucket((request_us[:, None] - hist_us) / 60e6) + 1, 0)
    latest = latest_items(hist_item, hist_us)  # [n]
    hist_visits, hist_trans = repeat_features(hist_item, hist_us, max_history, latest=latest)
    request_hour = hour_of_week(request_us) + 1
    user_cell = vocab.cell_index(rows["user_cell_id"].to_numpy(zero_copy_only=False))
    nbrs = rows["neighbour_cell_ids"].combine_chunks()
    nbr_positions, nbr_valid = _last_events(nbrs, N_NEIGHBOURS)
    nbr_flat = vocab.cell_index(nbrs.flatten().to_numpy(zero_copy_only=False)) if len(nbrs.flatten()) else np.zeros(1, np.int64)
    nbr_cell = np.where(nbr_valid, nbr_flat[nbr_positions], 0)
    target_item = vocab.item_index(rows["target_item_id"].to_numpy(zero_copy_only=False))
    batch = Batch(
        hist_codes=hist_codes,
        hist_item=hist_item,
        hist_item_emb=hist_item_emb,
        hist_cell=hist_cell,
        hist_ctx=vocab.context(hist_cell, np.broadcast_to(day[:, None], hist_cell.shape)),
        hist_kind=hist_kind,
        hist_hour=hist_hour,
        hist_age=hist_age,
        hist_visits=hist_visits,
        hist_trans=hist_trans,
        hist_routine=routine_visits(hist_item, hist_hour, request_hour),
        hist_routine_week=routine_visits(hist_item, hist_hour, request_hour, weekly=True),
        latest_item=latest,
        **_no_candidates(n, hist_codes.shape[-1]),  # none until with_candidates()
        request_hour=request_hour,
        user_cell=user_cell,
        user_ctx=vocab.context(user_cell, day),
        nbr_cell=nbr_cell,
        nbr_ctx=vocab.context(nbr_cell, np.broadcast_to(day[:, None], nbr_cell.shape)),
        target=vocab.tokens[np.maximum(target_item, 0)],
        target_item=target_item,
        day=day,
        event_id=np.asarray(rows["event_id"].to_numpy(zero_copy_only=False), dtype=object),
        gmv=np.asarray(rows["target_gmv"].to_numpy(zero_copy_only=False), dtype=np.float64),
    )
    return batch.take(np.flatnonzero(target_item >= 0))


def _no_candidates(n: int, tokens: int) -> dict[str, np.ndarray]:
    """The candidate fields of `n` rows without candidates (M = 0)."""
    empty = Batch.zeros(n=n, H=0, T=tokens)
    return {name: getattr(empty, name) for name in Batch.arrays() if name.startswith("cand_")}


def _history_slots(rows: pa.Table, vocab: Vocab, n_behaviors: int, max_history: int):
    """Per row, each behavior's last `max_history` events, behaviors side by side:
    (hist_item, hist_cell, hist_kind, hist_us), each [n, H]."""
    n = rows.num_rows
    per_row = pc.list_flatten(rows["histories"]).combine_chunks()  # n * n_behaviors structs, config order
    assert len(per_row) == n * n_behaviors, f"rows carry {len(per_row) // max(n, 1)} histories, expected {n_behaviors}"
    parts_item, parts_cell, parts_kind, parts_us = [], [], [], []
    for j in range(n_behaviors):
        lists = per_row.field("events").take(pa.array(np.arange(n) * n_behaviors + j))
        events = lists.flatten()
        positions, valid = _last_events(lists, max_history)
        # One padding event at the end keeps the gathers valid when no row has events.
        item = np.concatenate([vocab.item_index(events.field("item_id").to_numpy(zero_copy_only=False)), [-1]])
        cell = np.concatenate([vocab.cell_index(events.field("cell_id").to_numpy(zero_copy_only=False)), [0]])
        us = np.concatenate([events.field("event_ts").cast(pa.int64()).to_numpy(zero_copy_only=False), [0]])
        valid = valid & (item[positions] >= 0)  # an item without a SID under the version is no token
        parts_item.append(np.where(valid, item[positions], -1))
        parts_cell.append(np.where(valid, cell[positions], 0))
        parts_kind.append(np.where(valid, j + 1, 0))
        parts_us.append(np.where(valid, us[positions], 0))
    return tuple(np.concatenate(parts, axis=1) for parts in (parts_item, parts_cell, parts_kind, parts_us))  # each [n, H]


def history_items(rows: pa.Table, vocab: Vocab, n_behaviors: int, max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """(hist_item [n, H], hist_us [n, H]) of corpus rows, as `featurize` lays them out."""
    hist_item, _, _, hist_us = _history_slots(rows, vocab, n_behaviors, max_history)
    return hist_item, hist_us
