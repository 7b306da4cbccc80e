"""Evaluation: constrained beam search over the valid SIDs, Recall@K / NDCG@K, the mean
geographic reward of the top 10, and the baselines scored by the same code."""

from __future__ import annotations

import time

import numpy as np

from geosid.geo.geometry import haversine_km
from geosid.trainer.data import Batch
from geosid.trainer.loading import CorpusData, TrainConfig, autocast, load_run
from geosid.trainer.model import OneLoc
from geosid.trainer.rewards import geo_reward
from geosid.trainer.search import (
    SIDTrie,
    beam_search,
    most_popular,
    nearest_popular,
    ranking_metrics,
)

KS = (5, 10, 20)


def ranked_items(model: OneLoc, batch: Batch, trie: SIDTrie, beam: int, device: str, chunk: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(batch), chunk):
        part = batch.take(np.arange(start, min(start + chunk, len(batch))))
        with autocast(device):
            items, _ = beam_search(model, part.tensors(device), trie, beam)
        out.append(items)
    return np.concatenate(out) if out else np.zeros((0, beam), np.int64)


def mean_geo_reward(data: CorpusData, batch: Batch, ranked: np.ndarray, max_km: float, k: int = 10) -> float:
    """Mean R_geo of the top-k items over requests (distance from the user cell's centre)."""
    centre = data.vocab.cell_centres[batch.user_cell]  # [n, 2]
    items = ranked[:, :k]
    ok = items >= 0
    d = haversine_km(centre[:, None, 0], centre[:, None, 1], data.vocab.item_lat[np.maximum(items, 0)], data.vocab.item_lon[np.maximum(items, 0)])
    return float(np.where(ok, geo_reward(d, max_km), 0.0).sum() / max(ok.sum(), 1))


def evaluate(model: OneLoc, data: CorpusData, cfg: TrainConfig, split: str = "test") -> dict:
    """Recall / NDCG @5/10/20 of the model and the two baselines on a split, and the mean
    geographic reward of each one's top 10."""
    device = cfg.resolved_device()
    batch = data.splits[split]
    if cfg.eval_limit and len(batch) > cfg.eval_limit:
        batch = batch.take(np.random.default_rng(cfg.seed).choice(len(batch), cfg.eval_limit, replace=False))
    trie = SIDTrie(data.vocab.tokens)
    started = time.perf_counter()
    ranked = ranked_items(model.to(device), batch, trie, max(cfg.beam, max(KS)), device)
    seconds = time.perf_counter() - started
    train = data.splits["train"]
    popular = most_popular(train.target_item, len(batch), max(KS))
    target_cells = data.vocab.item_cell[np.maximum(train.target_item, 0)]
    nearest = nearest_popular(train.target_item, target_cells, batch.user_cell, batch.nbr_cell, max(KS))
    out = {"split": split, "requests": len(batch), "beam_search_s": round(seconds, 2)}
    for name, items in (("oneloc", ranked), ("most_popular", popular), ("nearest_popular", nearest)):
        out[name] = {**ranking_metrics(items, batch.target_item, KS), "geo_reward@10": mean_geo_reward(data, batch, items, cfg.geo_max_km)}
    return out


def eval_run(lake_root, run_id: str, split: str = "test", eval_limit: int | None = None) -> dict:
    """Reload a saved run with its pinned corpus and evaluate it on a split."""
    model, data, cfg, _ = load_run(lake_root, run_id)
    if eval_limit:
        cfg.eval_limit = eval_limit
    return {"run_id": run_id, "manifest": data.snapshot.manifest(), **evaluate(model, data, cfg, split)}


def metrics_table(evaluation: dict, label: str = "oneloc") -> str:
    """Markdown rows: method | Recall@5/10/20 | NDCG@5/10/20 | geo reward@10."""
    header = "| method | R@5 | R@10 | R@20 | N@5 | N@10 | N@20 | geo reward@10 |\n|---|---|---|---|---|---|---|---|"
    lines = [header]
    for name in ("oneloc", "most_popular", "nearest_popular"):
        m = evaluation[name]
        shown = label if name == "oneloc" else name
        lines.append(
            f"| {shown} | " + " | ".join(f"{m[f'{kind}@{k}']:.4f}" for kind in ("recall", "ndcg") for k in KS) + f" | {m['geo_reward@10']:.4f} |"
        )
    return "\n".join(lines)
