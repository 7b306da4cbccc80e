"""A classic next-POI baseline: a GRU over the check-in sequence with time and place
features (the recurrent family of the next-POI tables: GRU4Rec, ST-RNN, LSTPM's short-term
part), scoring every item as the next one.

Each history slot feeds the item's embedding plus embeddings of its hour of the week, of
its age (log2 minutes before the request) and of its cell; the last state, joined with the
request's hour of the week, goes through an MLP onto the item embeddings (tied output, full
softmax cross-entropy), trained with the same loop, rows and splits as SASRec and OneLoc.

Shapes: b batch, H history slots (left-aligned, oldest first), d width, I items, C cells.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geosid.trainer.data import AGE_BUCKETS, HOURS, Batch

SIZES = {
    "tiny": dict(d_model=64, layers=1),
    "small": dict(d_model=128, layers=1),
    "paper": dict(d_model=256, layers=2),
}


@dataclass
class GRURecConfig:
    n_items: int  # items of the catalog (the vocabulary)
    n_cells: int  # cell indices (0: unknown)
    max_len: int  # history slots
    d_model: int = 64
    layers: int = 1
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class GRURec(nn.Module):
    def __init__(self, cfg: GRURecConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.items = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)  # row 0: padding
        self.hours = nn.Embedding(HOURS + 1, d, padding_idx=0)
        self.ages = nn.Embedding(AGE_BUCKETS + 1, d, padding_idx=0)
        self.cells = nn.Embedding(cfg.n_cells + 1, d, padding_idx=0)
        self.rnn = nn.GRU(d, d, cfg.layers, batch_first=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.request_hour = nn.Embedding(HOURS + 1, d)
        # an MLP: the next item depends on the state and the hour together, not on each alone
        self.out = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(cfg.dropout)
        for table in (self.items, self.hours, self.ages, self.cells, self.request_hour):
            nn.init.normal_(table.weight, std=0.02)  # small: the output is tied to the item rows

    def forward(self, history, hour, age, cell, request_hour) -> torch.Tensor:
        """history / hour / age / cell [b, H] (history: item indices, -1 padding; the rest
        0 padding), request_hour [b] -> logits [b, I] of the next item."""
        b, h = history.shape
        assert h <= self.cfg.max_len, f"history of {h} slots, model built for {self.cfg.max_len}"
        x = self.items(history + 1) + self.hours(hour) + self.ages(age) + self.cells(cell.clamp(0, self.cfg.n_cells))  # [b, H, d]
        y, _ = self.rnn(self.drop(x))  # [b, H, d]
        last = ((history >= 0).sum(1) - 1).clamp(min=0)  # [b]
        state = y[torch.arange(b, device=history.device), last]  # [b, d]
        query = self.out(self.drop(torch.cat([state, self.request_hour(request_hour)], dim=-1)))  # [b, d]
        return query @ self.items.weight[1:].T  # [b, I]

    def scores(self, rows: Batch) -> torch.Tensor:
        device = self.items.weight.device

        def tensor(a):
            return torch.as_tensor(a, device=device)

        return self(tensor(rows.hist_item), tensor(rows.hist_hour), tensor(rows.hist_age), tensor(rows.hist_cell), tensor(rows.request_hour))

    @torch.no_grad()
    def rank(self, batch: Batch, k: int, device: str) -> np.ndarray:
        """[n, k] the top-k items by score, best first."""
        logits = self.scores(batch)
        return logits.float().topk(min(k, logits.shape[1]), dim=1).indices.cpu().numpy()


def gru_step(model: GRURec, rows: Batch):
    logits = model.scores(rows)
    loss = F.cross_entropy(logits.float(), torch.as_tensor(rows.target_item, device=logits.device))
    return loss, int((rows.hist_item >= 0).sum()) + len(rows)
