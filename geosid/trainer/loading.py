"""What every training step starts from: the training config, the corpus loader (pinned
snapshot -> vocabulary -> featurized splits), a new model, and a saved run reloaded (its
model and its corpus at exactly the table versions it recorded).

Pretraining is `geosid.trainer.training`, evaluation `geosid.trainer.evaluation`,
preference pairs `geosid.trainer.pairs`, alignment `geosid.trainer.dpo`, run records
`geosid.trainer.runs`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from geosid.errors import InvalidRequestError, NotFoundError
from geosid.geo.geometry import cells_from_name
from geosid.lake import Lake
from geosid.schemas import corpus, index
from geosid.trainer.config import TrainConfig
from geosid.trainer.data import Batch, Transitions, Vocab, build_vocab, featurize, sequence_cells
from geosid.trainer.gru import GRURec, GRURecConfig
from geosid.trainer.model import OneLoc, OneLocConfig
from geosid.trainer.runs import RunRecord, read_run, weights_path
from geosid.trainer.sasrec import SASRec, SASRecConfig
from geosid.trainer.snapshot import CorpusSnapshot, RowFilter
from geosid.trainer.stream import Featurizer, StreamedSplit, sample_rows, train_pass

TABLES = (corpus.TRAINING_SEQUENCES.name, corpus.CELL_CONTEXT.name, index.SID_MAP.name, index.CODEBOOK_VERSIONS.name)


@dataclass
class CorpusData:
    snapshot: CorpusSnapshot
    vocab: Vocab
    behaviors: list[str]
    splits: dict[str, Batch]  # the train split is a StreamedSplit when `streamed`
    cell_system: str
    source: str
    unknown_targets: dict  # per split: rows whose target item is not in the version's SID map
    streamed: bool = False
    vocab_order: str = "item_id"  # the SID map's rows by item id, or ("file") as read

    def manifest(self) -> dict:
        """What a run records: the pinned snapshot, and the order and fingerprint of the
        item vocabulary its weights index (`load_run` refuses a vocabulary that differs)."""
        return {**self.snapshot.manifest(), "item_vocab": vocab_fingerprint(self.vocab), "item_vocab_order": self.vocab_order}


def vocab_fingerprint(vocab: Vocab) -> str:
    """A digest of the item ids in vocabulary order (the rows an item-id table indexes)."""
    return hashlib.sha256("\n".join(map(str, vocab.item_ids)).encode()).hexdigest()[:16]


def load_corpus(
    lake_root,
    codebook_version: str | None,
    table_versions: dict | None,
    max_history: int,
    splits=("train", "valid", "test"),
    protocol: str = "time",
    item_min_count: int = 1,
    candidates: int = 0,
    stream: TrainConfig | None = None,
    vocab_order: str = "item_id",
) -> CorpusData:
    """Pin the corpus (one split protocol's rows), the SID map and the codebook's row;
    featurize each split. Item-id embedding rows go to items seen at least
    `item_min_count` times in the train split (targets and histories). Each request gets
    `candidates` transition candidates counted on the train split (`Transitions`; a train
    row's own transition left out). With `stream` (a TrainConfig) and a train split of
    more than its `stream_above` rows, the train split is streamed (`load_streamed`).
    `vocab_order` "file" keeps the SID map's file order (runs recorded before item_vocab)."""

    # corpus.cell_context is optional (no geo snapshots yet): its features are then zero.
    lake = Lake(lake_root)
    present = [t for t in TABLES if lake.exists(t)]
    for required in (corpus.TRAINING_SEQUENCES.name, index.SID_MAP.name):
        if required not in present:
            raise NotFoundError(f"no {required} under {Path(lake_root).resolve()}: build the corpus first (geosid corpus build, or the daily runs)")
    snapshot = CorpusSnapshot.open(lake_root, codebook_version, table_versions, rows=RowFilter(protocol=protocol), tables=present)
    if stream is not None and stream.stream_above is not None:
        n_train = snapshot.of_splits("train").count()
        if n_train > stream.stream_above:
            return load_streamed(snapshot, max_history, splits, item_min_count, candidates, stream, n_train, vocab_order)
    version = snapshot.codebook_version
    # File order changes when partitions are rewritten; a fixed row order keeps runs reproducible.
    rows = snapshot.to_table(corpus.TRAINING_SEQUENCES.name).sort_by([("dt", "ascending"), ("event_id", "ascending")])
    if rows.num_rows == 0:
        raise NotFoundError(f"the corpus under {version} has no rows at {snapshot.table_versions}: build it first (geosid corpus build)")
    cell_system = rows["cell_system"][0].as_py()
    first = rows["histories"][0].as_py()
    behaviors = [h["behavior"] for h in first]
    # a range protocol's catalog is the items its pre-processing kept (what the papers rank)
    catalog = None if protocol == "time" else protocol_items(rows)
    vocab = _snapshot_vocab(snapshot, sequence_cells(rows), cell_system, catalog, vocab_order)
    train_rows = rows.filter(pc.field("split") == "train")
    seen = [train_rows["target_item_id"], pc.list_flatten(pc.list_flatten(train_rows["histories"]).combine_chunks().field("events")).field("item_id")]
    found = np.concatenate([vocab.item_index(np.asarray(c.to_numpy(zero_copy_only=False), dtype=object)) for c in seen])
    vocab.set_item_embeddings(np.bincount(found[found >= 0], minlength=len(vocab.item_ids)), item_min_count)
    by_split, unknown = {}, {}
    for name in dict.fromkeys(("train", *splits)) if candidates else splits:
        part = rows.filter(pc.field("split") == name)
        by_split[name] = featurize(part, vocab, behaviors, max_history)
        unknown[name] = part.num_rows - len(by_split[name])
    if candidates:
        train = by_split["train"]
        transitions = Transitions.count(train.latest_item, train.target_item, len(vocab.item_ids), candidates + 1)
        by_split = {name: by_split[name].with_candidates(vocab, transitions, candidates, leave_one_out=name == "train") for name in splits}
    return CorpusData(snapshot, vocab, behaviors, by_split, cell_system, rows["source"][0].as_py(), unknown, vocab_order=vocab_order)


def protocol_items(rows: pa.Table) -> pa.Array:
    """The items a protocol's rows name, as targets or in histories."""
    events = pc.list_flatten(pc.list_flatten(rows["histories"]).combine_chunks().field("events"))
    return pc.unique(pa.concat_arrays([rows["target_item_id"].combine_chunks(), events.field("item_id")]))


def _snapshot_vocab(
    snapshot: CorpusSnapshot, seen_cells: np.ndarray, cell_system: str, catalog: pa.Array | None = None, order: str = "item_id"
) -> Vocab:
    """The vocabulary of the snapshot's codebook version: its SID map (its `catalog`
    items only, when given) by item id, level sizes and cell context, and the cells the
    rows name. The SID map's file order differs between lakes built alike (the engine's
    write order), and ties among items (rules, candidates) fall to the lower index."""
    assert order in ("item_id", "file"), f"vocabulary order {order!r}: item_id or file"
    version = snapshot.codebook_version
    sid_map = snapshot.version_rows(index.SID_MAP.name)
    if order == "item_id":
        sid_map = sid_map.sort_by("item_id")
    if catalog is not None:
        sid_map = sid_map.filter(pc.is_in(sid_map["item_id"], value_set=catalog))
    codebook = snapshot.version_rows(index.CODEBOOK_VERSIONS.name).to_pylist()
    assert codebook, f"codebook version {version} is not in index.codebook_versions"
    level_sizes = tuple(int(s) for s in codebook[0]["level_sizes"])
    context = snapshot.to_table(corpus.CELL_CONTEXT.name) if corpus.CELL_CONTEXT.name in snapshot.table_versions else None
    return build_vocab(sid_map, level_sizes, context, seen_cells, cells_from_name(cell_system))


def load_streamed(
    snapshot: CorpusSnapshot,
    max_history: int,
    splits,
    item_min_count: int,
    candidates: int,
    cfg: TrainConfig,
    n_train: int,
    vocab_order: str = "item_id",
) -> CorpusData:
    """`load_corpus` for a corpus too large to featurize up front: the vocabulary from the
    rows' cell columns read chunk by chunk, one pass over the train rows
    (`geosid.trainer.stream.train_pass`), the train split as a `StreamedSplit`; valid and
    test are random samples (valid_limit rows; eval_limit, else stream_eval_rows)."""

    chunk = 8192
    version = snapshot.codebook_version
    first = next(snapshot.batches(columns=["cell_system", "source", "histories"], batch_size=1), None)
    if first is None:
        raise NotFoundError(f"the corpus under {version} has no rows at {snapshot.table_versions}: build it first (geosid corpus build)")
    cell_system, source = first["cell_system"][0].as_py(), first["source"][0].as_py()
    behaviors = [h["behavior"] for h in first["histories"][0].as_py()]
    seen = [
        sequence_cells(pa.Table.from_batches([b]))
        for b in snapshot.batches(columns=["user_cell_id", "target_cell_id", "neighbour_cell_ids"], batch_size=65_536)
    ]
    vocab = _snapshot_vocab(snapshot, pd.unique(np.concatenate(seen)), cell_system, order=vocab_order)
    train = snapshot.of_splits("train")
    passed = train_pass(train, vocab, behaviors, max_history, chunk)
    vocab.set_item_embeddings(passed.item_counts, item_min_count)
    transitions = Transitions.count(passed.latest_item, passed.target_item, len(vocab.item_ids), candidates + 1) if candidates else None
    featurizer = Featurizer(vocab, behaviors, max_history, transitions, candidates)
    by_split = {"train": StreamedSplit(train, featurizer, passed, chunk, cfg.shuffle_rows, cfg.stream_workers)}
    unknown = {"train": n_train - len(passed.target_item)}
    limits = {"valid": cfg.valid_limit, "test": cfg.eval_limit or cfg.stream_eval_rows}
    for name in splits:
        if name == "train":
            continue
        part = sample_rows(snapshot.of_splits(name), limits.get(name), cfg.seed, chunk)
        by_split[name] = featurizer.rows(part, leave_one_out=False)
        unknown[name] = part.num_rows - len(by_split[name])
    return CorpusData(snapshot, vocab, behaviors, by_split, cell_system, source, unknown, streamed=True, vocab_order=vocab_order)


def autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)


def minibatches(n: int, size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for start in range(0, n, size):
        yield order[start : start + size]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The row order of one epoch: a function of (seed, epoch) alone, so a run resumed
    at an epoch boundary sees the batches an uninterrupted one would."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def new_model(data: CorpusData, cfg: TrainConfig) -> OneLoc:
    """A fresh OneLoc (or TIGER: the same model with every geo part off) for the corpus."""
    if cfg.model not in ("oneloc", "tiger"):
        raise ValueError(f"model {cfg.model!r} is not a SID decoder; use oneloc or tiger (sasrec: geosid.trainer.sasrec)")
    build = OneLocConfig.tiger if cfg.model == "tiger" else OneLocConfig.sized
    model_cfg = build(
        cfg.size,
        token_sizes=data.vocab.token_sizes,
        n_cells=len(data.vocab.cells),
        n_behaviors=len(data.behaviors),
        n_items=data.vocab.n_item_embeddings,
        **cfg.ablation,
        **({} if cfg.dropout is None else {"dropout": cfg.dropout}),
    )
    torch.manual_seed(cfg.seed)
    return OneLoc(model_cfg)


def load_run(lake_root, run_id: str, cfg: TrainConfig | None = None) -> tuple[OneLoc, CorpusData, TrainConfig, RunRecord]:
    """A saved run's model, its corpus at the recorded versions, its config and record.
    The vocabulary must be the one the weights index: a run recorded before `item_vocab`
    gets the SID map's file order, as it was trained."""
    record = read_run(lake_root, run_id)
    cfg = cfg or TrainConfig(**record.train_config)
    recorded = record.manifest.get("item_vocab")
    data = load_corpus(
        lake_root,
        record.codebook_version,
        record.table_versions,
        cfg.max_history,
        protocol=record.manifest.get("protocol") or "time",
        item_min_count=cfg.item_min_count,
        candidates=cfg.candidates if record.model_config.get("candidates") else 0,
        vocab_order=record.manifest.get("item_vocab_order", "file"),
    )
    current = vocab_fingerprint(data.vocab)
    if recorded and recorded != current:
        raise InvalidRequestError(f"run {run_id} was trained on item vocabulary {recorded}, but its pinned SID map gives {current} now: retrain it")
    model = model_from_record(record)
    model.load_state_dict(torch.load(weights_path(lake_root, run_id), map_location="cpu"))
    return model, data, cfg, record


def candidate_slots(cfg: TrainConfig) -> int:
    """Transition candidates the run's model reads (OneLoc with its `candidates` switch on)."""
    return cfg.candidates if cfg.model == "oneloc" and cfg.ablation.get("candidates", True) else 0


def model_from_record(record: RunRecord):
    """The untrained model a run record describes (OneLoc / TIGER, SASRec or the GRU)."""
    config = record.model_config
    if record.train_config.get("model") == "sasrec":
        return SASRec(SASRecConfig(**config))
    if record.train_config.get("model") == "gru":
        return GRURec(GRURecConfig(**config))
    # runs recorded before the repeat (routine) features existed were trained without them
    return OneLoc(
        OneLocConfig(
            **{"repeat_features": False, "routine_features": False, "candidates": False, **config, "token_sizes": tuple(config["token_sizes"])}
        )
    )
