"""Next-token pretraining of OneLoc over the SID tokens of a pinned corpus's train split."""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import torch

from geosid.trainer.evaluation import evaluate
from geosid.trainer.loading import (
    TrainConfig,
    autocast,
    load_corpus,
    minibatches,
    new_model,
)
from geosid.trainer.model import ntp_loss
from geosid.trainer.runs import new_run_id, save_run


def pretrain(lake_root, cfg: TrainConfig, codebook_version: str | None = None, table_versions: dict | None = None,
             run_id: str | None = None, log=print) -> dict:  # fmt: skip
    """Next-token pretraining over the SID tokens of the train split; evaluates on test.
    Returns the run record (also written under the lake's _models/)."""
    device = cfg.resolved_device()
    started = time.perf_counter()
    data = load_corpus(lake_root, codebook_version, table_versions, cfg.max_history)
    model = new_model(data, cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    train = data.splits["train"]
    rng = np.random.default_rng(cfg.seed)
    history, tokens, seen = [], 0, time.perf_counter()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for epoch in range(cfg.epochs):
        model.train()
        total, steps = 0.0, 0
        for idx in minibatches(len(train), cfg.batch_size, rng):
            x = train.take(idx).tensors(device)
            with autocast(device):
                loss = ntp_loss(model(x), x["target"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, steps = total + loss.item(), steps + 1
            tokens += int((x["hist_kind"] > 0).sum()) + x["target"].numel()
            if cfg.max_steps and steps >= cfg.max_steps:
                break
        history.append(round(total / max(steps, 1), 4))
        log(f"    epoch {epoch + 1}/{cfg.epochs}: next-token loss {history[-1]:.4f}")
    train_s = time.perf_counter() - seen
    metrics = {"train_loss": history, "train_s": round(train_s, 1), "tokens_per_s": round(tokens / max(train_s, 1e-9))}
    if device == "cuda":
        metrics["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    metrics["eval"] = evaluate(model, data, cfg)
    run_id = run_id or new_run_id("pretrain")
    meta = {
        "run_id": run_id, "kind": "pretrain", "manifest": data.snapshot.manifest(), "model_config": model.cfg.to_dict(),
        "train_config": asdict(cfg), "device": device, "rows": {k: len(v) for k, v in data.splits.items()},
        "unknown_targets": data.unknown_targets,
        "parameters": sum(p.numel() for p in model.parameters()), "metrics": metrics,
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    save_run(lake_root, run_id, model.cpu().state_dict(), meta)
    return meta
