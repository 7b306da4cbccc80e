"""Rewards for preference alignment: geographic (1/distance within D) and GMV (a
regression model trained on pay events).

Distances are measured from the centre of the user's real-time cell (the corpus carries
cells, not coordinates) to the item's location in the SID map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from geosid.geo.geometry import haversine_km
from geosid.trainer.config import TrainConfig
from geosid.trainer.data import Batch
from geosid.trainer.loading import CorpusData


def geo_reward(distance_km: np.ndarray, max_km: float = 5.0, min_km: float = 0.1) -> np.ndarray:
    """R_geo = 1 / d if d <= max_km else 0. d is floored at min_km (an item inside the
    user's own cell would otherwise get an unbounded reward from cell-centre noise)."""
    d = np.maximum(np.asarray(distance_km, np.float64), min_km)
    return np.where(d <= max_km, 1.0 / d, 0.0)


@dataclass
class GMVFeatures:
    """[n, 2F + 2]: item cell context, user cell context, log(1 + km), log(1 + item popularity)."""

    @staticmethod
    def build(item_ctx: np.ndarray, user_ctx: np.ndarray, distance_km: np.ndarray, popularity: np.ndarray) -> np.ndarray:
        return np.concatenate([item_ctx, user_ctx, np.log1p(distance_km)[:, None], np.log1p(popularity)[:, None]], axis=1).astype(np.float32)


class GMVModel(nn.Module):
    """A small MLP regressing log(1 + GMV) of a pay from user / item / cell features."""

    def __init__(self, n_inputs: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_inputs, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.register_buffer("mean", torch.zeros(n_inputs))
        self.register_buffer("std", torch.ones(n_inputs))
        # predictions stay within the train pays' range: an MLP extrapolates without bound
        # on candidates unlike any pay, and expm1 of that overflows to inf (then NaN rewards)
        self.register_buffer("log_gmv_max", torch.tensor(float("inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std).squeeze(-1)

    @torch.no_grad()
    def predict_gmv(self, x: np.ndarray) -> np.ndarray:
        log_gmv = self(torch.as_tensor(x, dtype=torch.float32)).clamp(min=0.0, max=float(self.log_gmv_max))
        return np.expm1(log_gmv.numpy())


def train_gmv_model(x: np.ndarray, gmv: np.ndarray, epochs: int = 60, seed: int = 0) -> tuple[GMVModel, dict]:
    """Fit on 80% of the pays, report MSE of log(1 + GMV) on the other 20% beside the
    mean predictor's."""
    assert x.ndim == 2 and len(x) == len(gmv), f"x {x.shape} and gmv {gmv.shape} disagree"
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    order = rng.permutation(len(x))
    cut = max(1, int(0.8 * len(x)))
    train, test = order[:cut], order[cut:]
    y = np.log1p(np.maximum(gmv, 0)).astype(np.float32)
    model = GMVModel(x.shape[1])
    model.mean.copy_(torch.as_tensor(x[train].mean(0)))
    std = x[train].std(0)
    model.std.copy_(torch.as_tensor(np.where(std > 1e-6, std, 1.0)))  # a constant feature must not blow up unlike values
    model.log_gmv_max.fill_(float(y[train].max()))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = torch.as_tensor(x[train]), torch.as_tensor(y[train])
    for _ in range(epochs):
        for batch in torch.randperm(len(train)).split(512):
            loss = nn.functional.mse_loss(model(xt[batch]), yt[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        held = test if len(test) else train
        pred = model(torch.as_tensor(x[held])).numpy()
    metrics = {
        "pays": len(x),
        "test_mse_log_gmv": float(np.mean((pred - y[held]) ** 2)),
        "mean_predictor_mse": float(np.mean((y[train].mean() - y[held]) ** 2)),
    }
    return model.eval(), metrics


def gmv_scorer(data: CorpusData, cfg: TrainConfig):
    """(score(batch rows, items [n, k]) -> predicted GMV [n, k], metrics), from the train
    split's pays; (None, reason) when the source carries no GMV (check-ins)."""
    train = data.splits["train"]
    if data.streamed:  # a streamed train split keeps no per-row GMV to fit on
        return None, {"gmv_model": "not trained: the train split is streamed; the reward is geographic alone"}
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
