"""SASRec (Kang & McAuley, 2018), the strongest traditional baseline of the OneLoc paper:
a causal transformer over the history's item ids that scores every item as the next one.

Trained in-house (`geosid.trainer.training.train_ranker`) on the same pinned corpus, rows
and splits as OneLoc, with the same training loop (valid selection, early stopping,
checkpoints): each row's history (oldest first) -> the target item, full softmax over
the catalog (cross-entropy, as the strongest published SASRec variants train it),
output layer tied to the item embedding.

Shapes: b batch, H history slots (left-aligned, oldest first), d width, I items.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geosid.trainer.data import Batch

SIZES = {
    "tiny": dict(d_model=64, n_heads=2, layers=2, d_ff=256),
    "small": dict(d_model=128, n_heads=2, layers=2, d_ff=512),
    "paper": dict(d_model=256, n_heads=4, layers=2, d_ff=1024),
}


@dataclass
class SASRecConfig:
    n_items: int  # items of the catalog (the vocabulary)
    max_len: int  # history slots
    d_model: int = 64
    n_heads: int = 2
    layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class SASRec(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.items = nn.Embedding(cfg.n_items + 1, cfg.d_model, padding_idx=0)  # row 0: padding
        self.positions = nn.Embedding(cfg.max_len, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        # Small initial embeddings: the output layer is tied to them, and N(0, 1) rows give
        # logits of std ~sqrt(d) over the whole catalog, a start the loss never left (measured
        # on NYC: stuck at ln(items) for two epochs).
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """history [b, H] item indices (-1 padding, left-aligned) -> logits [b, I] of the next item."""
        b, h = history.shape
        assert h <= self.cfg.max_len, f"history of {h} slots, model built for {self.cfg.max_len}"
        valid = history >= 0  # [b, H]
        x = self.items(history + 1) * self.cfg.d_model**0.5 + self.positions.weight[:h]  # [b, H, d]
        causal = torch.triu(torch.ones(h, h, dtype=torch.bool, device=history.device), 1)
        # an empty history still has its first (padding) slot to read, so no row is all-masked
        padding = ~valid
        padding[:, 0] = False
        y = self.norm(self.blocks(self.drop(x), mask=causal, src_key_padding_mask=padding))  # [b, H, d]
        last = (valid.sum(1) - 1).clamp(min=0)  # [b]
        state = y[torch.arange(b, device=history.device), last]  # [b, d]
        return state @ self.items.weight[1:].T  # [b, I]

    @torch.no_grad()
    def rank(self, batch: Batch, k: int, device: str) -> np.ndarray:
        """[n, k] the top-k items by score, best first."""
        logits = self(torch.as_tensor(batch.hist_item, device=device))
        return logits.float().topk(min(k, logits.shape[1]), dim=1).indices.cpu().numpy()


def sasrec_step(model: SASRec, rows: Batch):
    device = next(model.parameters()).device
    logits = model(torch.as_tensor(rows.hist_item, device=device))
    loss = F.cross_entropy(logits.float(), torch.as_tensor(rows.target_item, device=device))
    return loss, int((rows.hist_item >= 0).sum()) + len(rows)
