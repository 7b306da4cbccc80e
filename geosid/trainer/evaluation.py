"""Evaluation: a model's ranking (constrained beam search over valid SIDs for OneLoc and
TIGER, the top items by score for SASRec), Recall@K / NDCG@K, the mean geographic reward
of the top 10, and every baseline scored by the same code on the same requests.

Each result also splits the requests into repeat targets (the venue is in the user's
history) and new ones, so a model that loses says where.
"""

from __future__ import annotations

import time

import numpy as np

from geosid.geo.geometry import haversine_km
from geosid.trainer import baselines as B
from geosid.trainer.config import TrainConfig
from geosid.trainer.data import Batch
from geosid.trainer.loading import CorpusData, autocast, load_run
from geosid.trainer.rewards import geo_reward, gmv_scorer
from geosid.trainer.search import SIDTrie, beam_search, ranking_metrics

KS = (5, 10, 20)


def ranked_items(model, batch: Batch, trie: SIDTrie | None, k: int, device: str, chunk: int = 256) -> np.ndarray:
    """[n, k] item indices, best first (-1 where fewer): beam search for SID decoders, top
    scores for item-id models (anything with a `rank` method)."""
    model.eval()
    out = []
    for start in range(0, len(batch), chunk):
        part = batch.take(np.arange(start, min(start + chunk, len(batch))))
        with autocast(device):
            if hasattr(model, "rank"):
                items = model.rank(part, k, device)
            else:
                items, _ = beam_search(model, part.tensors(device), trie, k)
        out.append(items)
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def mean_geo_reward(data: CorpusData, batch: Batch, ranked: np.ndarray, max_km: float, k: int = 10) -> float:
    """Mean R_geo of the top-k items over requests (distance from the user cell's centre)."""
    centre = data.vocab.cell_centres[batch.user_cell]  # [n, 2]
    items = ranked[:, :k]
    ok = items >= 0
    d = haversine_km(centre[:, None, 0], centre[:, None, 1], data.vocab.item_lat[np.maximum(items, 0)], data.vocab.item_lon[np.maximum(items, 0)])
    return float(np.where(ok, geo_reward(d, max_km), 0.0).sum() / max(ok.sum(), 1))


def is_repeat(batch: Batch) -> np.ndarray:
    """[n] bool: the target is among the request's history items."""
    return (batch.hist_item == batch.target_item[:, None]).any(1)


def baseline_rankings(data: CorpusData, batch: Batch, k: int, names=B.BASELINES) -> dict[str, np.ndarray]:
    """Every baseline's ranking of the requests, from the train split's counts."""
    train = data.splits["train"]
    out = {}
    for name in names:
        if name == "most_popular":
            out[name] = B.most_popular(train.target_item, len(batch), k)
        elif name == "nearest_popular":
            target_cells = data.vocab.item_cell[np.maximum(train.target_item, 0)]
            out[name] = B.nearest_popular(train.target_item, target_cells, batch.user_cell, batch.nbr_cell, k)
        elif name == "repeat":
            out[name] = B.repeat(batch.hist_item, train.target_item, k)
        elif name == "recent":
            out[name] = B.recent(batch.hist_item, train.target_item, k)
        elif name == "markov":
            out[name] = B.markov(batch.hist_item, train.hist_item, train.target_item, k)
        elif name == "markov_user":
            out[name] = B.markov_user(batch.hist_item, train.target_item, k)
        else:
            raise ValueError(f"unknown baseline {name!r}; known: {B.BASELINES}")
    return out


def gmv_metrics(batch: Batch, ranked: np.ndarray, gmv_of, k: int = 10) -> dict:
    """gmv@k: the GMV model's expected GMV of the top-k list, mean over its items and the
    requests; hit_gmv@k: the realized GMV of the targets found in the top k, per request
    (0 for a miss or a target without GMV)."""
    items = ranked[:, :k]
    ok = items >= 0
    expected = np.where(ok, gmv_of(batch, np.maximum(items, 0)), 0.0)
    hit = (items == batch.target_item[:, None]).any(1)
    realized = np.where(hit & np.isfinite(batch.gmv), np.nan_to_num(batch.gmv), 0.0)
    return {f"gmv@{k}": float(expected.sum() / max(ok.sum(), 1)), f"hit_gmv@{k}": float(realized.mean()) if len(realized) else 0.0}


def score(data: CorpusData, batch: Batch, ranked: np.ndarray, cfg: TrainConfig, gmv_of=None) -> dict:
    """Recall / NDCG at KS on all requests, on repeat targets and on new ones; geo reward@10;
    with a GMV model (`gmv_of`), gmv@10 and hit_gmv@10."""
    repeat = is_repeat(batch)
    out = {**ranking_metrics(ranked, batch.target_item, KS), "geo_reward@10": mean_geo_reward(data, batch, ranked, cfg.geo_max_km)}
    if gmv_of is not None:
        out.update(gmv_metrics(batch, ranked, gmv_of))
    for label, mask in (("repeat", repeat), ("new", ~repeat)):
        part = ranking_metrics(ranked[mask], batch.target_item[mask], KS)
        out.update({f"{label}_{k}": v for k, v in part.items() if k in ("recall@5", "ndcg@5", "recall@20")})
    return out


def limited(batch: Batch, limit: int | None, seed: int) -> Batch:
    if limit and len(batch) > limit:
        return batch.take(np.sort(np.random.default_rng(seed).choice(len(batch), limit, replace=False)))
    return batch


def evaluate(model, data: CorpusData, cfg: TrainConfig, split: str = "test", baselines=B.BASELINES, name: str | None = None) -> dict:
    """The model and the baselines on a split: {split, requests, repeat_share, <method>: metrics}.
    The model's key is `name` (default: "oneloc" for a SID decoder, else the ranker's kind)."""
    device = cfg.resolved_device()
    batch = limited(data.splits[split], cfg.eval_limit, cfg.seed)
    trie = None if hasattr(model, "rank") else SIDTrie(data.vocab.tokens)
    k = max(cfg.beam, max(KS))
    started = time.perf_counter()
    ranked = ranked_items(model.to(device), batch, trie, k, device)
    seconds = time.perf_counter() - started
    name = name or ("oneloc" if cfg.decodes_sids else cfg.model)
    gmv_of, _ = gmv_scorer(data, cfg)  # None where the source carries no GMV
    out = {
        "split": split,
        "requests": len(batch),
        "repeat_share": float(is_repeat(batch).mean()) if len(batch) else 0.0,
        "beam_search_s": round(seconds, 2),
        name: score(data, batch, ranked, cfg, gmv_of),
    }
    return out | baseline_scores(data, batch, cfg, baselines, gmv_of)


def baseline_scores(data: CorpusData, batch: Batch, cfg: TrainConfig, baselines=B.BASELINES, gmv_of=None) -> dict:
    """Every baseline's metrics on the requests, scored as a model's are."""
    return {name: score(data, batch, items, cfg, gmv_of) for name, items in baseline_rankings(data, batch, max(KS), baselines).items()}


def validator(data: CorpusData, cfg: TrainConfig):
    """validate(model) -> the selection metric on (up to valid_limit) valid requests; None
    when the corpus has no valid split."""
    batch = data.splits.get("valid")
    batch = limited(batch, cfg.valid_limit, cfg.seed) if batch is not None else None
    if batch is None or len(batch) == 0:
        return None
    metric = cfg.select

    def validate(model) -> float:
        trie = None if hasattr(model, "rank") else SIDTrie(data.vocab.tokens)
        ranked = ranked_items(model, batch, trie, max(cfg.beam, max(KS)), cfg.resolved_device())
        return ranking_metrics(ranked, batch.target_item, KS)[metric]

    return validate


def eval_run(lake_root, run_id: str, split: str = "test", eval_limit: int | None = None) -> dict:
    """Reload a saved run with its pinned corpus and evaluate it on a split."""
    model, data, cfg, _ = load_run(lake_root, run_id)
    if eval_limit:
        cfg.eval_limit = eval_limit
    return {"run_id": run_id, "manifest": data.snapshot.manifest(), **evaluate(model, data, cfg, split)}


METHOD_ORDER = ("oneloc", "sasrec", "gru", *B.BASELINES)


def metrics_table(evaluation: dict, label: str = "oneloc", methods=None) -> str:
    """Markdown rows: method | Recall@5/10/20 (= Acc@5/10/20) | NDCG@5/10/20 | Acc@1 |
    MRR@20 | geo reward@10 [| GMV@10 | hit GMV@10 where the source has GMV] (the model's
    row first, named `label`)."""
    names = methods or [m for m in METHOD_ORDER if m in evaluation]
    gmv = [k for k in ("gmv@10", "hit_gmv@10") if any(k in evaluation[n] for n in names)]
    header = (
        "| method | R@5 | R@10 | R@20 | N@5 | N@10 | N@20 | Acc@1 | MRR@20 | geo reward@10 |"
        + "".join(f" {k.replace('_', ' ').replace('gmv', 'GMV')} |" for k in gmv)
        + "\n|"
        + "---|" * (10 + len(gmv))
    )
    lines = [header]
    for name in names:
        m = evaluation[name]
        shown = label if name in ("oneloc", "sasrec", "gru") else name
        cells = (
            [m[f"{kind}@{k}"] for kind in ("recall", "ndcg") for k in KS]
            + [m.get("acc@1"), m.get("mrr@20"), m["geo_reward@10"]]
            + [m.get(k) for k in gmv]
        )
        lines.append(f"| {shown} | " + " | ".join("–" if v is None else f"{v:.4f}" for v in cells) + " |")
    return "\n".join(lines)
