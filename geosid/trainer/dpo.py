"""DPO alignment of a pretrained run: pairs from it (the frozen reference), then
L = L_ntp + lambda * L_dpo on the policy (a copy of it), with the preference learning
measured (implicit reward margin, preference accuracy) on train and held-out pairs."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict

import numpy as np
import torch

from geosid.trainer.config import TrainConfig
from geosid.trainer.evaluation import evaluate
from geosid.trainer.loading import autocast, load_run, minibatches
from geosid.trainer.model import dpo_margin, ntp_loss, preference_accuracy, sequence_logprob
from geosid.trainer.pairs import Pairs, preference_pairs, write_pairs
from geosid.trainer.runs import RunRecord, new_run_id, save_run


def pair_logprobs(model, pairs: Pairs, idx: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(chosen), log p(rejected)), each [b], of the pairs `idx` under `model`."""
    x = pairs.requests.take(idx).tensors(device)
    won = torch.as_tensor(pairs.tokens[idx, 0], device=device)  # [b, T] SID tokens
    lost = torch.as_tensor(pairs.tokens[idx, 1], device=device)
    return sequence_logprob(model(x.replace(target=won)), won), sequence_logprob(model(x.replace(target=lost)), lost)


@torch.no_grad()
def heldout_preference(policy, reference, pairs: Pairs, cfg: TrainConfig, device: str) -> dict:
    """DPO loss, mean implicit margin and preference accuracy on pairs not trained on."""
    policy.eval()
    margins = []
    for start in range(0, len(pairs), cfg.batch_size):
        idx = np.arange(start, min(start + cfg.batch_size, len(pairs)))
        with autocast(device):
            margins.append(
                dpo_margin(*pair_logprobs(policy, pairs, idx, device), *pair_logprobs(reference, pairs, idx, device), cfg.dpo_beta).float()
            )
    policy.train()
    margin = torch.cat(margins) if margins else torch.zeros(0)
    return {
        "heldout_dpo": round(float(-torch.nn.functional.logsigmoid(margin).mean()), 4) if len(margin) else None,
        "heldout_margin": round(float(margin.mean()), 4) if len(margin) else None,
        "heldout_accuracy": round(preference_accuracy(margin), 4) if len(margin) else None,
    }


def dpo(lake_root, parent_run: str, cfg: TrainConfig | None = None, run_id: str | None = None, log=print) -> RunRecord:
    """Align a pretrained run: pairs from it (the frozen reference), then
    L = L_ntp + lambda * L_dpo on the policy (a copy of it). Per epoch the record holds the
    losses and, on the train pairs and on held-out pairs from valid requests, the implicit
    reward margin and the preference accuracy. Returns the run record."""
    started = time.perf_counter()
    reference, data, parent_cfg, parent = load_run(lake_root, parent_run)
    cfg = cfg or parent_cfg
    device = cfg.resolved_device()
    run_id = run_id or new_run_id("dpo")
    reference = reference.to(device).eval()
    table, pairs, heldout, info = preference_pairs(reference, data, cfg, run_id)
    pairs_version = write_pairs(lake_root, table, run_id)
    log(
        f"    {info['pairs']:,} preference pairs from {info['requests']:,} requests (mean reward gap {info['mean_reward_gap']}, "
        f"gap >= {cfg.dpo_min_gap}; {info['reward']})" + (f"; {len(heldout):,} held-out pairs" if heldout is not None else "")
    )
    policy = copy.deepcopy(reference).train()
    for p in reference.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.resolved_dpo_lr(), weight_decay=0.01)
    train = data.splits["train"]
    rng = np.random.default_rng(cfg.seed + 2)
    history = []
    for epoch in range(cfg.dpo_epochs):
        totals, steps, margins = np.zeros(3), 0, []
        for idx in minibatches(len(pairs), cfg.batch_size, rng):
            ntp_x = train.take(rng.choice(len(train), len(idx), replace=False)).tensors(device)
            with autocast(device):
                with torch.no_grad():
                    ref_won, ref_lost = pair_logprobs(reference, pairs, idx, device)
                margin = dpo_margin(*pair_logprobs(policy, pairs, idx, device), ref_won, ref_lost, cfg.dpo_beta)
                l_dpo = -torch.nn.functional.logsigmoid(margin).mean()  # = dpo_loss
                l_ntp = ntp_loss(policy(ntp_x), ntp_x.target)
                loss = l_ntp + cfg.dpo_lambda * l_dpo
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            totals += (loss.item(), l_ntp.item(), l_dpo.item())
            margins.append(margin.detach().float().cpu())
            steps += 1
        margin = torch.cat(margins) if margins else torch.zeros(0)
        row = {k: round(float(v) / max(steps, 1), 4) for k, v in zip(("loss", "ntp", "dpo"), totals)}
        row.update(train_margin=round(float(margin.mean()), 4) if len(margin) else None, train_accuracy=round(preference_accuracy(margin), 4))
        if heldout is not None and len(heldout):
            row.update(heldout_preference(policy, reference, heldout, cfg, device))
        history.append(row)
        log(
            f"    DPO epoch {epoch + 1}/{cfg.dpo_epochs}: loss {row['loss']}, dpo {row['dpo']}, preference accuracy train "
            f"{row['train_accuracy']:.3f} / held-out {row.get('heldout_accuracy')}, margin {row['train_margin']} / {row.get('heldout_margin')}"
        )
    metrics = {"dpo": history, "pairs": info, "preference_pairs_table_version": pairs_version, "eval": evaluate(policy, data, cfg)}
    record = RunRecord(
        run_id=run_id,
        kind="dpo",
        parent=parent_run,
        manifest=data.manifest(),
        model_config=policy.cfg.to_dict(),
        train_config=asdict(cfg),
        device=device,
        parent_eval=parent.metrics.get("eval"),
        metrics=metrics,
        seconds=round(time.perf_counter() - started, 1),
    )
    save_run(lake_root, record, policy.cpu().state_dict())
    return record
