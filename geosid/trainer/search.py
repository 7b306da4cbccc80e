"""Constrained beam search over valid SIDs and the ranking metrics.

Every method (models here, baselines in `geosid.trainer.baselines`) returns ranked item
indices [n, K] (-1 where fewer than K), and `ranking_metrics` scores them all alike.
"""

from __future__ import annotations

import numpy as np
import torch

from geosid.trainer.data import Batch


class SIDTrie:
    """Prefix trie of the valid SID token sequences [I, T]; a full SID maps to one item."""

    def __init__(self, tokens: np.ndarray):
        self.T = tokens.shape[1]
        self.children: dict[tuple, np.ndarray] = {}
        groups: dict[tuple, set] = {}
        for row in map(tuple, tokens.tolist()):
            for j in range(self.T):
                groups.setdefault(row[:j], set()).add(row[j])
        self.children = {prefix: np.array(sorted(v), np.int64) for prefix, v in groups.items()}
        self.item_of = {row: i for i, row in enumerate(map(tuple, tokens.tolist()))}

    def allowed(self, prefix: tuple) -> np.ndarray:
        return self.children.get(prefix, np.zeros(0, np.int64))


@torch.no_grad()
def beam_search(model, x: Batch, trie: SIDTrie, beam: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (items [b, beam] (-1: none), log-probabilities [b, beam]), best first.

    Only valid SID prefixes are ever expanded, so every returned SID is an item's.
    """
    memory, valid, prompt, _ = model.encode(x)
    codes, prior = model.memory_codes(x), model.copy_prior(x)
    b, device = memory.shape[0], memory.device
    prefixes = torch.zeros(b, 1, 0, dtype=torch.long, device=device)  # [b, k, j]
    scores = torch.zeros(b, 1, device=device)
    for j in range(trie.T):
        k = prefixes.shape[1]
        logits, _ = model.decode(
            memory.repeat_interleave(k, 0),
            valid.repeat_interleave(k, 0),
            prompt.repeat_interleave(k, 0),
            prefixes.reshape(b * k, j),
            codes.repeat_interleave(k, 0),
            None if prior is None else prior.repeat_interleave(k, 0),
        )
        logp = logits.float().log_softmax(-1)  # [b*k, V_j]
        mask = torch.full_like(logp, float("-inf"))
        flat = prefixes.reshape(b * k, j).tolist()
        rows, cols = [], []
        for r, prefix in enumerate(flat):
            allowed = trie.allowed(tuple(prefix))
            rows.append(np.full(len(allowed), r))
            cols.append(allowed)
        if rows:
            mask[torch.as_tensor(np.concatenate(rows), device=device), torch.as_tensor(np.concatenate(cols), device=device)] = 0
        total = (scores.reshape(b * k, 1) + logp + mask).reshape(b, -1)  # [b, k * V_j]
        top = total.topk(min(beam, total.shape[1]), dim=1)
        vocab = logp.shape[1]
        parent, token = top.indices // vocab, top.indices % vocab
        prefixes = torch.cat([prefixes.gather(1, parent[..., None].expand(-1, -1, j)), token[..., None]], 2)
        scores = top.values
    items = np.full((b, prefixes.shape[1]), -1, np.int64)
    finite = torch.isfinite(scores).cpu().numpy()
    for r, row in enumerate(prefixes.cpu().tolist()):
        for c, tokens in enumerate(row):
            if finite[r, c]:
                items[r, c] = trie.item_of.get(tuple(tokens), -1)
    return items, scores.cpu().numpy()


def ranking_metrics(ranked: np.ndarray, target: np.ndarray, ks=(5, 10, 20)) -> dict:
    """Recall@K and NDCG@K with one relevant item per request, and the next-POI papers'
    names for the same lists: Acc@1 (with one target Acc@K is Recall@K) and MRR@max(ks),
    the mean reciprocal rank of the target within the top max(ks) (0 beyond: the papers
    rank every POI, so their MRR counts the tail this one leaves out, at most 1/(K+1) per
    request). ranked [n, >=max(ks)]."""
    hit = ranked == target[:, None]
    rank = np.where(hit.any(1), hit.argmax(1), np.iinfo(np.int64).max)
    out = {}
    for k in ks:
        inside = rank < k
        out[f"recall@{k}"] = float(inside.mean()) if len(target) else 0.0
        out[f"ndcg@{k}"] = float(np.where(inside, 1.0 / np.log2(np.minimum(rank, k) + 2), 0.0).mean()) if len(target) else 0.0
    top = max(ks)
    out["acc@1"] = float((rank < 1).mean()) if len(target) else 0.0
    out[f"mrr@{top}"] = float(np.where(rank < top, 1.0 / (np.minimum(rank, top) + 1), 0.0).mean()) if len(target) else 0.0
    return out
