"""Preference pairs for DPO: N candidates per train request by beam search from the
reference model, scored by the reward (geographic, plus GMV where the source has it),
best vs worst kept; written to corpus.preference_pairs through the lake."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from geosid.geo.geometry import haversine_km
from geosid.lake import Lake
from geosid.schemas import corpus
from geosid.trainer.config import TrainConfig
from geosid.trainer.data import Batch
from geosid.trainer.evaluation import ranked_items
from geosid.trainer.loading import CorpusData
from geosid.trainer.model import OneLoc
from geosid.trainer.rewards import GMVFeatures, geo_reward, train_gmv_model
from geosid.trainer.search import SIDTrie


def gmv_scorer(data: CorpusData, cfg: TrainConfig):
    """(score(batch rows, items [n, k]) -> predicted GMV [n, k], metrics), from the train
    split's pays; (None, reason) when the source carries no GMV (check-ins)."""
    train = data.splits["train"]
    pays = np.flatnonzero(np.isfinite(train.gmv))
    if len(pays) < 50:
        return None, {"gmv_model": f"not trained: {len(pays)} train targets carry GMV; the reward is geographic alone"}
    popularity = np.bincount(train.target_item[train.target_item >= 0], minlength=len(data.vocab.item_ids)).astype(np.float64)

    def features(batch: Batch, items: np.ndarray) -> np.ndarray:
        n, k = items.shape
        safe = np.maximum(items, 0)
        centre = data.vocab.cell_centres[batch.user_cell]
        d = haversine_km(centre[:, None, 0], centre[:, None, 1], data.vocab.item_lat[safe], data.vocab.item_lon[safe])
        item_ctx = data.vocab.context(data.vocab.item_cell[safe], np.broadcast_to(batch.day[:, None], safe.shape))
        user_ctx = np.broadcast_to(batch.user_ctx[:, None], (n, k, batch.user_ctx.shape[-1]))
        return GMVFeatures.build(item_ctx.reshape(n * k, -1), user_ctx.reshape(n * k, -1), d.reshape(-1), popularity[safe].reshape(-1))

    paid = train.take(pays)
    model, metrics = train_gmv_model(features(paid, paid.target_item[:, None]), paid.gmv, seed=cfg.seed)
    return (lambda batch, items: model.predict_gmv(features(batch, items)).reshape(items.shape)), {"gmv_model": metrics}


def preference_pairs(model: OneLoc, data: CorpusData, cfg: TrainConfig, run_id: str) -> tuple[pa.Table, Batch, np.ndarray, dict]:
    """Sample N candidates per train request by beam search from the reference model,
    score them (R_geo + gmv_weight * GMV / mean GMV), keep best vs worst."""
    device = cfg.resolved_device()
    train = data.splits["train"]
    rng = np.random.default_rng(cfg.seed + 1)
    pick = rng.choice(len(train), min(cfg.dpo_requests, len(train)), replace=False)
    requests = train.take(np.sort(pick))
    trie = SIDTrie(data.vocab.tokens)
    items = ranked_items(model.to(device), requests, trie, cfg.dpo_candidates, device)
    centre = data.vocab.cell_centres[requests.user_cell]
    safe = np.maximum(items, 0)
    d = haversine_km(centre[:, None, 0], centre[:, None, 1], data.vocab.item_lat[safe], data.vocab.item_lon[safe])
    reward = geo_reward(d, cfg.geo_max_km)
    scorer, info = gmv_scorer(data, cfg)
    label = f"geo(1/d, D={cfg.geo_max_km}km)"
    if scorer is not None and cfg.gmv_weight:
        gmv = scorer(requests, safe)
        reward = reward + cfg.gmv_weight * gmv / max(float(gmv.mean()), 1e-9)
        label += f" + {cfg.gmv_weight} * gmv/mean"
    reward = np.where(items >= 0, reward, np.nan)
    best, worst = np.nanargmax(reward, 1), np.nanargmin(reward, 1)
    rows = np.arange(len(items))
    keep = reward[rows, best] > reward[rows, worst]  # ties teach nothing
    chosen, rejected = items[rows, best][keep], items[rows, worst][keep]
    kept = requests.take(np.flatnonzero(keep))
    tokens = data.vocab.tokens
    table = pa.table(
        {
            "run_id": [run_id] * len(kept), "codebook_version": [data.snapshot.codebook_version] * len(kept),
            "source": [data.source] * len(kept), "event_id": kept.event_id.tolist(),
            "dt": pa.array(kept.day.astype("int32"), pa.int32()).cast(pa.date32()),
            "n_candidates": pa.array(np.full(len(kept), cfg.dpo_candidates), pa.int32()), "reward": [label] * len(kept),
            "chosen_item_id": data.vocab.item_ids[chosen].tolist(), "chosen_tokens": tokens[chosen].tolist(),
            "chosen_reward": reward[rows, best][keep], "rejected_item_id": data.vocab.item_ids[rejected].tolist(),
            "rejected_tokens": tokens[rejected].tolist(), "rejected_reward": reward[rows, worst][keep],
        },
    )  # fmt: skip
    info.update(requests=len(requests), pairs=int(keep.sum()), reward=label)
    return table, kept, np.stack([tokens[chosen], tokens[rejected]], 1), info


def write_pairs(lake_root, table: pa.Table, run_id: str) -> int:
    """corpus.preference_pairs: replace this run's pairs (one commit, the registered
    schema); returns the table version."""
    return Lake(lake_root).write_arrow(table, corpus.PREFERENCE_PAIRS, where=f"run_id = '{run_id}'")
