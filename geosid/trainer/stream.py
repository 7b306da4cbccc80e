"""The train split streamed from the pinned snapshot, for corpora too large to featurize
up front (`TrainConfig.stream_above`).

One pass over the train rows (two columns' worth of work: target items and history
items) gives what needs the whole split: the item counts behind the item-id embeddings,
the latest-item -> target transitions behind the candidates, and the row count. Then each
epoch reads the snapshot's files again, in an order drawn from (seed, epoch), featurizes
chunk by chunk in DataLoader workers, and deals minibatches out of a shuffle buffer, so
memory holds the buffer, not the split. An epoch is a function of (seed, epoch, workers):
a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch.utils.data

from geosid.schemas import corpus
from geosid.trainer.data import Batch, Transitions, Vocab, featurize, history_items, latest_items
from geosid.trainer.snapshot import CorpusSnapshot

SEQUENCES = corpus.TRAINING_SEQUENCES.name


@dataclass
class TrainPass:
    """What the one pass over the train split leaves in memory: [n] arrays, no histories."""

    item_counts: np.ndarray  # [items] occurrences as a target or history event
    latest_item: np.ndarray  # [n] per train row whose target is known
    target_item: np.ndarray  # [n]


def train_pass(snapshot: CorpusSnapshot, vocab: Vocab, behaviors: list[str], max_history: int, chunk_rows: int) -> TrainPass:
    counts = np.zeros(len(vocab.item_ids), np.int64)
    latest, target = [], []
    for batch in snapshot.batches(SEQUENCES, columns=["target_item_id", "target_ts", "histories"], batch_size=chunk_rows):
        rows = pa.Table.from_batches([batch])
        events = pc.list_flatten(pc.list_flatten(rows["histories"]).combine_chunks().field("events")).field("item_id")
        target_item = vocab.item_index(rows["target_item_id"].to_numpy(zero_copy_only=False))
        seen = np.concatenate([target_item, vocab.item_index(events.to_numpy(zero_copy_only=False))])
        counts += np.bincount(seen[seen >= 0], minlength=len(counts))
        hist_item, hist_us = history_items(rows, vocab, len(behaviors), max_history)
        known = target_item >= 0
        latest.append(latest_items(hist_item, hist_us)[known])
        target.append(target_item[known])
    empty = np.zeros(0, np.int64)
    return TrainPass(counts, np.concatenate(latest) if latest else empty, np.concatenate(target) if target else empty)


@dataclass(frozen=True)
class Featurizer:
    """How corpus rows become model inputs: the vocabulary, the behaviors and how many of
    their latest events, and the transition candidates (`slots` per request)."""

    vocab: Vocab
    behaviors: list[str]
    max_history: int
    transitions: Transitions | None
    slots: int

    def rows(self, table: pa.Table, *, leave_one_out: bool) -> Batch:
        """Featurized rows with their candidates (`leave_one_out`: a train row's own
        transition is not counted for it)."""
        rows = featurize(table, self.vocab, self.behaviors, self.max_history)
        return rows.with_candidates(self.vocab, self.transitions, self.slots, leave_one_out=leave_one_out)


class StreamedSplit:
    """The train split as an epoch-wise stream of minibatches (see the module doc). Has the
    [n] arrays the baselines count from (target_item, latest_item) but no histories."""

    hist_item = None  # not kept: the Markov baseline over train histories is not available

    def __init__(
        self,
        snapshot: CorpusSnapshot,
        featurizer: Featurizer,
        passed: TrainPass,
        chunk_rows: int = 8192,
        shuffle_rows: int = 65_536,
        workers: int = 0,
    ):
        assert snapshot.splits == ("train",), f"a streamed split reads the train rows only, got {snapshot.splits}"
        self.snapshot, self.featurizer = snapshot, featurizer
        self.chunk_rows, self.shuffle_rows, self.workers = chunk_rows, shuffle_rows, workers
        self.target_item, self.latest_item = passed.target_item, passed.latest_item

    def __len__(self) -> int:
        return len(self.target_item)

    def chunks(self, seed: int, epoch: int) -> Iterator[Batch]:
        """Featurized chunks of the epoch, files in the epoch's order (DataLoader workers
        take every workers-th file; the loader interleaves them in a fixed order)."""
        dataset = _Chunks(self, seed, epoch)
        if self.workers == 0:
            yield from dataset
            return
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=self.workers, collate_fn=_as_is)
        yield from loader

    def epoch(self, seed: int, epoch: int, batch_size: int) -> Iterator[Batch]:
        """Minibatches of one epoch: every train row once, shuffled through a buffer of
        `shuffle_rows` rows (random draws from a seeded generator)."""
        rng = np.random.default_rng([seed, epoch, 1])
        pool: list[Batch] = []
        pooled = 0
        for chunk in self.chunks(seed, epoch):
            pool.append(chunk)
            pooled += len(chunk)
            if pooled < self.shuffle_rows + batch_size:
                continue
            rows = Batch.concat(pool)
            order = rng.permutation(len(rows))
            out = (len(rows) - self.shuffle_rows) // batch_size * batch_size  # deal these, keep the rest
            for begin in range(0, out, batch_size):
                yield rows.take(order[begin : begin + batch_size])
            pool, pooled = [rows.take(order[out:])], len(rows) - out
        if pooled:
            rows = Batch.concat(pool)
            order = rng.permutation(len(rows))
            for begin in range(0, len(rows), batch_size):
                yield rows.take(order[begin : begin + batch_size])


class _Chunks(torch.utils.data.IterableDataset):
    """An epoch's featurized chunks (picklable to DataLoader workers)."""

    def __init__(self, split: StreamedSplit, seed: int, epoch: int):
        super().__init__()
        self.split, self.seed, self.epoch = split, seed, epoch

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        split = self.split
        snapshot = split.snapshot
        fragments = snapshot.fragments(SEQUENCES)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(fragments))
        schema = snapshot.dataset(SEQUENCES).schema  # carries the partition columns
        condition = snapshot._filter(SEQUENCES)
        for k, index in enumerate(order):
            if k % workers != worker:
                continue
            for batch in fragments[index].to_batches(schema=schema, filter=condition, batch_size=split.chunk_rows):
                if not batch.num_rows:
                    continue
                yield split.featurizer.rows(pa.Table.from_batches([batch]), leave_one_out=True)


def _as_is(chunk):
    return chunk


def sample_rows(snapshot: CorpusSnapshot, limit: int | None, seed: int, chunk_rows: int) -> pa.Table:
    """Up to `limit` rows of the snapshot drawn at random (all when limit is None), read
    chunk by chunk: what a streamed run validates and evaluates on."""
    total = snapshot.count(SEQUENCES)
    if not limit or total <= limit:
        return snapshot.to_table(SEQUENCES)
    keep = np.sort(np.random.default_rng(seed).choice(total, limit, replace=False))
    parts, offset = [], 0
    for batch in snapshot.batches(SEQUENCES, batch_size=chunk_rows):
        inside = keep[(keep >= offset) & (keep < offset + batch.num_rows)] - offset
        if len(inside):
            parts.append(pa.Table.from_batches([batch]).take(pa.array(inside)))
        offset += batch.num_rows
    return pa.concat_tables(parts)
