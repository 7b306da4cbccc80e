"""DPO alignment of a pretrained run: pairs from it (the frozen reference), then
L = L_ntp + lambda * L_dpo on the policy (a copy of it)."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict

import numpy as np
import torch

from geosid.trainer.config import TrainConfig
from geosid.trainer.evaluation import evaluate
from geosid.trainer.loading import autocast, load_run, minibatches
from geosid.trainer.model import dpo_loss, ntp_loss, sequence_logprob
from geosid.trainer.pairs import preference_pairs, write_pairs
from geosid.trainer.runs import RunRecord, new_run_id, save_run


def dpo(lake_root, parent_run: str, cfg: TrainConfig | None = None, run_id: str | None = None, log=print) -> RunRecord:
    """Align a pretrained run: pairs from it (the frozen reference), then
    L = L_ntp + lambda * L_dpo on the policy (a copy of it). Returns the run record."""
    started = time.perf_counter()
    reference, data, parent_cfg, parent = load_run(lake_root, parent_run)
    cfg = cfg or parent_cfg
    device = cfg.resolved_device()
    run_id = run_id or new_run_id("dpo")
    reference = reference.to(device).eval()
    pairs, requests, tokens, info = preference_pairs(reference, data, cfg, run_id)
    pairs_version = write_pairs(lake_root, pairs, run_id)
    log(f"    {info['pairs']:,} preference pairs from {info['requests']:,} requests ({info['reward']})")
    policy = copy.deepcopy(reference).train()
    for p in reference.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr * 0.5, weight_decay=0.01)
    train = data.splits["train"]
    rng = np.random.default_rng(cfg.seed + 2)
    chosen_t, rejected_t = torch.as_tensor(tokens[:, 0]), torch.as_tensor(tokens[:, 1])
    history = []
    for epoch in range(cfg.dpo_epochs):
        totals = np.zeros(3)
        steps = 0
        for idx in minibatches(len(requests), cfg.batch_size, rng):
            x = requests.take(idx).tensors(device)
            won, lost = chosen_t[idx].to(device), rejected_t[idx].to(device)  # [b, T] SID tokens
            ntp_x = train.take(rng.choice(len(train), len(idx), replace=False)).tensors(device)
            with autocast(device):
                with torch.no_grad():
                    ref_won = sequence_logprob(reference({**x, "target": won}), won)
                    ref_lost = sequence_logprob(reference({**x, "target": lost}), lost)
                l_dpo = dpo_loss(
                    sequence_logprob(policy({**x, "target": won}), won), sequence_logprob(policy({**x, "target": lost}), lost),
                    ref_won, ref_lost, cfg.dpo_beta,
                )
                l_ntp = ntp_loss(policy(ntp_x), ntp_x["target"])
                loss = l_ntp + cfg.dpo_lambda * l_dpo
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            totals += (loss.item(), l_ntp.item(), l_dpo.item())
            steps += 1
        history.append({k: round(float(v) / max(steps, 1), 4) for k, v in zip(("loss", "ntp", "dpo"), totals)})
        log(f"    DPO epoch {epoch + 1}/{cfg.dpo_epochs}: {history[-1]}")
    metrics = {"dpo": history, "pairs": info, "preference_pairs_table_version": pairs_version, "eval": evaluate(policy, data, cfg)}
    record = RunRecord(
        run_id=run_id, kind="dpo", parent=parent_run, manifest=data.snapshot.manifest(), model_config=policy.cfg.to_dict(),
        train_config=asdict(cfg), device=device, parent_eval=parent.metrics.get("eval"), metrics=metrics,
        seconds=round(time.perf_counter() - started, 1),
    )  # fmt: skip
    save_run(lake_root, record, policy.cpu().state_dict())
    return record
