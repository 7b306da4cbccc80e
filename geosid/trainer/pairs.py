"""Preference pairs for DPO: N candidates per request by beam search from the reference
model, scored by the reward (geographic, plus GMV where the source has it), then paired
by `select_pairs` (the k-th best against the k-th worst, near-ties dropped); train pairs
are written to corpus.preference_pairs through the lake, held-out pairs (from valid
requests) only measure."""

from __future__ import annotations

from dataclasses import dataclass

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
from geosid.trainer.rewards import geo_reward, gmv_scorer
from geosid.trainer.search import SIDTrie


def select_pairs(reward: np.ndarray, min_gap: float, per_request: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """reward [n, N] (NaN: no candidate) -> (row, chosen column, rejected column), each [p]:
    per request the k-th best candidate against the k-th worst (k < per_request, each
    candidate in one pair at most), kept where the reward gap is at least `min_gap` and
    above zero (ties and near-ties teach the policy noise, not a preference)."""
    assert reward.ndim == 2, f"reward is [n, N], got shape {reward.shape}"
    filled = np.where(np.isnan(reward), -np.inf, reward)
    order = np.argsort(-filled, axis=1, kind="stable")  # [n, N] best first, missing last
    present = np.isfinite(filled).sum(1)  # [n]
    rows, chosen, rejected = [], [], []
    for k in range(per_request):
        worst_at = present - 1 - k  # [n]
        ok = k < worst_at
        r = np.flatnonzero(ok)
        best, worst = order[r, k], order[r, worst_at[r]]
        gap = reward[r, best] - reward[r, worst]
        keep = (gap >= min_gap) & (gap > 0)
        rows.append(r[keep]), chosen.append(best[keep]), rejected.append(worst[keep])
    row, win, lose = (np.concatenate(parts).astype(np.int64) for parts in (rows, chosen, rejected))
    order = np.lexsort((win, row))  # request order, best pair first
    return row[order], win[order], lose[order]


def candidate_rewards(model: OneLoc, data: CorpusData, requests: Batch, cfg: TrainConfig, scorer) -> tuple[np.ndarray, np.ndarray, str]:
    """(items [n, N], reward [n, N] NaN where no candidate, the reward's name): N
    candidates per request by beam search from `model`, scored R_geo (+ gmv_weight *
    GMV / mean GMV where `scorer` is a GMV model)."""
    device = cfg.resolved_device()
    items = ranked_items(model.to(device), requests, SIDTrie(data.vocab.tokens), cfg.dpo_candidates, device)
    centre = data.vocab.cell_centres[requests.user_cell]
    safe = np.maximum(items, 0)
    d = haversine_km(centre[:, None, 0], centre[:, None, 1], data.vocab.item_lat[safe], data.vocab.item_lon[safe])
    reward = geo_reward(d, cfg.geo_max_km)
    label = f"geo(1/d, D={cfg.geo_max_km}km)"
    if scorer is not None and cfg.gmv_weight:
        gmv = scorer(requests, safe)
        reward = reward + cfg.gmv_weight * gmv / max(float(gmv.mean()), 1e-9)
        label += f" + {cfg.gmv_weight} * gmv/mean"
    return items, np.where(items >= 0, reward, np.nan), label


@dataclass
class Pairs:
    """Requests (one row per pair: a request with several pairs repeats), the pairs' SID
    tokens [p, 2, T] (chosen, rejected), their rewards [p, 2] and item indices [p, 2]."""

    requests: Batch
    tokens: np.ndarray
    rewards: np.ndarray
    items: np.ndarray
    label: str
    candidates_requests: int  # requests sampled

    def __len__(self) -> int:
        return len(self.tokens)

    def summary(self) -> dict:
        gap = self.rewards[:, 0] - self.rewards[:, 1] if len(self) else np.zeros(0)
        return {
            "requests": self.candidates_requests,
            "pairs": len(self),
            "mean_reward_gap": round(float(gap.mean()), 4) if len(gap) else None,
            "reward": self.label,
        }


def sample_pairs(model: OneLoc, data: CorpusData, cfg: TrainConfig, split: str, n_requests: int, scorer, seed: int) -> Pairs:
    """Up to `n_requests` requests of a split (seeded), their candidates, and their pairs."""
    rows = data.splits[split]
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), min(n_requests, len(rows)), replace=False))
    requests = rows.take(pick)
    items, reward, label = candidate_rewards(model, data, requests, cfg, scorer)
    row, win, lose = select_pairs(reward, cfg.dpo_min_gap, cfg.dpo_pairs_per_request)
    chosen, rejected = items[row, win], items[row, lose]
    tokens = data.vocab.tokens
    return Pairs(
        requests.take(row),
        np.stack([tokens[chosen], tokens[rejected]], 1),
        np.stack([reward[row, win], reward[row, lose]], 1),
        np.stack([chosen, rejected], 1),
        label,
        len(requests),
    )


def preference_pairs(model: OneLoc, data: CorpusData, cfg: TrainConfig, run_id: str) -> tuple[pa.Table, Pairs, Pairs | None, dict]:
    """The train pairs (as corpus.preference_pairs rows and as tensors' inputs), the held-out
    pairs from valid requests (None without a valid split), and what was built."""
    scorer, info = gmv_scorer(data, cfg)
    train = sample_pairs(model, data, cfg, "train", cfg.dpo_requests, scorer, cfg.seed + 1)
    valid = data.splits.get("valid")
    heldout = sample_pairs(model, data, cfg, "valid", cfg.dpo_heldout, scorer, cfg.seed + 3) if valid is not None and len(valid) else None
    kept, chosen, rejected = train.requests, train.items[:, 0], train.items[:, 1]
    table = pa.table(
        {
            "run_id": [run_id] * len(kept),
            "codebook_version": [data.snapshot.codebook_version] * len(kept),
            "source": [data.source] * len(kept),
            "event_id": kept.event_id.tolist(),
            "dt": pa.array(kept.day.astype("int32"), pa.int32()).cast(pa.date32()),
            "n_candidates": pa.array(np.full(len(kept), cfg.dpo_candidates), pa.int32()),
            "reward": [train.label] * len(kept),
            "chosen_item_id": data.vocab.item_ids[chosen].tolist(),
            "chosen_tokens": train.tokens[:, 0].tolist(),
            "chosen_reward": train.rewards[:, 0],
            "rejected_item_id": data.vocab.item_ids[rejected].tolist(),
            "rejected_tokens": train.tokens[:, 1].tolist(),
            "rejected_reward": train.rewards[:, 1],
        },
    )
    info.update(train.summary(), min_gap=cfg.dpo_min_gap, pairs_per_request=cfg.dpo_pairs_per_request)
    if heldout is not None:
        info["heldout"] = heldout.summary()
    return table, train, heldout, info


def write_pairs(lake_root, table: pa.Table, run_id: str) -> int:
    """corpus.preference_pairs: replace this run's pairs (one commit, the registered
    schema); returns the table version."""
    return Lake(lake_root).write_arrow(table, corpus.PREFERENCE_PAIRS, where=f"run_id = '{run_id}'")
