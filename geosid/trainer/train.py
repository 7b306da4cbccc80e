"""Pretrain, align (DPO) and evaluate OneLoc on a pinned corpus snapshot.

Every run writes `<lake>/_models/<run_id>/` with `model.pt` and `run.json`: the snapshot
manifest (table versions), the model and training configs, and the metrics. A later run
(DPO, eval) reopens the corpus at exactly the versions its parent recorded.
"""

from __future__ import annotations

import copy
import datetime as dt_
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from geosid.schemas import corpus, index
from geosid.trainer.data import Batch, CellGeometry, Vocab, build_vocab, featurize
from geosid.trainer.model import (
    OneLoc,
    OneLocConfig,
    dpo_loss,
    ntp_loss,
    sequence_logprob,
)
from geosid.trainer.rewards import (
    GMVFeatures,
    geo_reward,
    haversine_km,
    train_gmv_model,
)
from geosid.trainer.search import (
    SIDTrie,
    beam_search,
    most_popular,
    nearest_popular,
    ranking_metrics,
)
from geosid.trainer.snapshot import CorpusSnapshot

TABLES = (corpus.TRAINING_SEQUENCES.name, corpus.CELL_CONTEXT.name, index.SID_MAP.name, index.CODEBOOK_VERSIONS.name)
KS = (5, 10, 20)


@dataclass
class TrainConfig:
    size: str = "tiny"
    epochs: int = 2
    batch_size: int = 256
    lr: float = 1e-3
    max_history: int = 50  # per behavior, the latest events
    seed: int = 0
    beam: int = 20
    device: str = "auto"  # auto: cuda with bf16 when available, else cpu
    eval_limit: int | None = None  # score at most this many test requests
    max_steps: int | None = None  # stop pretraining after this many optimizer steps (benchmarks)
    ablation: dict = field(default_factory=dict)  # OneLocConfig switches
    # DPO
    dpo_requests: int = 2000
    dpo_candidates: int = 10
    dpo_lambda: float = 0.05
    dpo_beta: float = 0.1
    dpo_epochs: int = 1
    geo_max_km: float = 5.0
    gmv_weight: float = 1.0

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


@dataclass
class CorpusData:
    snapshot: CorpusSnapshot
    vocab: Vocab
    behaviors: list[str]
    splits: dict[str, Batch]
    cell_system: str
    source: str
    unknown_targets: dict  # per split: rows whose target item is not in the version's SID map


def load_corpus(lake, codebook_version: str | None, versions: dict | None, max_history: int, splits=("train", "valid", "test")) -> CorpusData:
    """Pin the corpus, the SID map and the codebook's row; featurize each split."""
    from deltalake import DeltaTable

    from geosid.schemas import REGISTRY

    # corpus.cell_context is optional (no geo snapshots yet): its features are then zero.
    present = [t for t in TABLES if DeltaTable.is_deltatable(str(Path(lake) / REGISTRY.get(t).relative_path))]
    snapshot = CorpusSnapshot.open(lake, codebook_version=codebook_version, versions=versions, tables=present)
    version = snapshot.codebook_version
    # File order changes when partitions are rewritten; a fixed row order keeps runs reproducible.
    rows = snapshot.to_table(corpus.TRAINING_SEQUENCES.name).sort_by([("dt", "ascending"), ("event_id", "ascending")])
    if rows.num_rows == 0:
        raise ValueError(f"the corpus under {version} has no rows at {snapshot.versions}")
    sid_map = snapshot.dataset(index.SID_MAP.name).to_table(filter=pc.field("version") == version)
    codebook = snapshot.dataset(index.CODEBOOK_VERSIONS.name).to_table(filter=pc.field("version") == version).to_pylist()
    assert codebook, f"codebook version {version} is not in index.codebook_versions"
    level_sizes = tuple(int(s) for s in codebook[0]["level_sizes"])
    cell_system = rows["cell_system"][0].as_py()
    first = rows["histories"][0].as_py()
    behaviors = [h["behavior"] for h in first]
    context = snapshot.to_table(corpus.CELL_CONTEXT.name) if corpus.CELL_CONTEXT.name in snapshot.versions else None
    vocab = build_vocab(sid_map, level_sizes, context, rows, CellGeometry(cell_system))
    by_split, unknown = {}, {}
    for name in splits:
        part = rows.filter(pc.field("split") == name)
        by_split[name] = featurize(part, vocab, behaviors, max_history)
        unknown[name] = part.num_rows - len(by_split[name])
    return CorpusData(snapshot, vocab, behaviors, by_split, cell_system, rows["source"][0].as_py(), unknown)


def _autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)


def _minibatches(n: int, size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for start in range(0, n, size):
        yield order[start : start + size]


def new_model(data: CorpusData, cfg: TrainConfig) -> OneLoc:
    model_cfg = OneLocConfig.sized(
        cfg.size, token_sizes=data.vocab.token_sizes, n_cells=len(data.vocab.cells), n_behaviors=len(data.behaviors), **cfg.ablation
    )
    torch.manual_seed(cfg.seed)
    return OneLoc(model_cfg)


def ranked_items(model: OneLoc, batch: Batch, trie: SIDTrie, beam: int, device: str, chunk: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(batch), chunk):
        part = batch.take(np.arange(start, min(start + chunk, len(batch))))
        with _autocast(device):
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


def _save(run_dir: Path, model: OneLoc, meta: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), run_dir / "model.pt")
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str))


def _run_dir(lake, run_id: str | None, kind: str) -> tuple[str, Path]:
    run_id = run_id or f"{kind}-{dt_.datetime.now(dt_.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return run_id, Path(lake) / "_models" / run_id


def load_run(lake, run_id: str, cfg: TrainConfig | None = None) -> tuple[OneLoc, CorpusData, TrainConfig, dict]:
    """A saved run's model, its corpus at the recorded versions, its config and record."""
    meta = json.loads((Path(lake) / "_models" / run_id / "run.json").read_text())
    cfg = cfg or TrainConfig(**meta["train_config"])
    manifest = meta["manifest"]
    data = load_corpus(lake, manifest["codebook_version"], manifest["table_versions"], cfg.max_history)
    model = OneLoc(OneLocConfig(**{**meta["model_config"], "token_sizes": tuple(meta["model_config"]["token_sizes"])}))
    model.load_state_dict(torch.load(Path(lake) / "_models" / run_id / "model.pt", map_location="cpu"))
    return model, data, cfg, meta


def pretrain(lake, cfg: TrainConfig, codebook_version: str | None = None, versions: dict | None = None, run_id: str | None = None, log=print) -> dict:
    """Next-token pretraining over the SID tokens of the train split; evaluates on test."""
    device = cfg.resolved_device()
    started = time.perf_counter()
    data = load_corpus(lake, codebook_version, versions, cfg.max_history)
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
        for idx in _minibatches(len(train), cfg.batch_size, rng):
            x = train.take(idx).tensors(device)
            with _autocast(device):
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
    run_id, run_dir = _run_dir(lake, run_id, "pretrain")
    meta = {
        "run_id": run_id, "kind": "pretrain", "manifest": data.snapshot.manifest(), "model_config": model.cfg.to_dict(),
        "train_config": asdict(cfg), "device": device, "rows": {k: len(v) for k, v in data.splits.items()},
        "unknown_targets": data.unknown_targets,
        "parameters": sum(p.numel() for p in model.parameters()), "metrics": metrics,
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    _save(run_dir, model.cpu(), meta)
    return meta


# ---------------------------------------------------------------------------------------
# Preference pairs and DPO

PAIR_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()), ("codebook_version", pa.string()), ("source", pa.string()), ("event_id", pa.string()),
        ("dt", pa.date32()), ("n_candidates", pa.int32()), ("reward", pa.string()),
        ("chosen_item_id", pa.string()), ("chosen_tokens", pa.list_(pa.int32())), ("chosen_reward", pa.float64()),
        ("rejected_item_id", pa.string()), ("rejected_tokens", pa.list_(pa.int32())), ("rejected_reward", pa.float64()),
    ]
)  # fmt: skip


def gmv_scorer(data: CorpusData, cfg: TrainConfig):
    """(score(batch rows, items [n, k]) -> predicted GMV [n, k], metrics), from the train
    split's pays; (None, reason) when the source carries no GMV (check-ins)."""
    train = data.splits["train"]
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


def preference_pairs(model: OneLoc, data: CorpusData, cfg: TrainConfig, run_id: str) -> tuple[pa.Table, Batch, np.ndarray, dict]:
    """Sample N candidates per train request by beam search from the reference model,
    score them (R_geo + gmv_weight * GMV / mean GMV), keep best vs worst."""
    device = cfg.resolved_device()
    train = data.splits["train"]
    rng = np.random.default_rng(cfg.seed + 1)
    pick = rng.choice(len(train), min(cfg.dpo_requests, len(train)), replace=False)
    requests = train.take(np.sort(pick))
    trie = SIDTrie(data.vocab.tokens)
    items = ranked_items(model.to(device), requests, trie, cfg.dpo_candidates, device)
    centre = data.vocab.cell_centres[requests.user_cell]
    safe = np.maximum(items, 0)
    d = haversine_km(centre[:, None, 0], centre[:, None, 1], data.vocab.item_lat[safe], data.vocab.item_lon[safe])
    reward = geo_reward(d, cfg.geo_max_km)
    scorer, info = gmv_scorer(data, cfg)
    label = f"geo(1/d, D={cfg.geo_max_km}km)"
    if scorer is not None and cfg.gmv_weight:
        gmv = scorer(requests, safe)
        reward = reward + cfg.gmv_weight * gmv / max(float(gmv.mean()), 1e-9)
        label += f" + {cfg.gmv_weight} * gmv/mean"
    reward = np.where(items >= 0, reward, np.nan)
    best, worst = np.nanargmax(reward, 1), np.nanargmin(reward, 1)
    rows = np.arange(len(items))
    keep = reward[rows, best] > reward[rows, worst]  # ties teach nothing
    chosen, rejected = items[rows, best][keep], items[rows, worst][keep]
    kept = requests.take(np.flatnonzero(keep))
    tokens = data.vocab.tokens
    table = pa.table(
        {
            "run_id": [run_id] * len(kept), "codebook_version": [data.snapshot.codebook_version] * len(kept),
            "source": [data.source] * len(kept), "event_id": kept.event_id.tolist(),
            "dt": pa.array(kept.day.astype("int32"), pa.int32()).cast(pa.date32()),
            "n_candidates": pa.array(np.full(len(kept), cfg.dpo_candidates), pa.int32()), "reward": [label] * len(kept),
            "chosen_item_id": data.vocab.item_ids[chosen].tolist(), "chosen_tokens": tokens[chosen].tolist(),
            "chosen_reward": reward[rows, best][keep], "rejected_item_id": data.vocab.item_ids[rejected].tolist(),
            "rejected_tokens": tokens[rejected].tolist(), "rejected_reward": reward[rows, worst][keep],
        },
        schema=PAIR_SCHEMA,
    )  # fmt: skip
    info.update(requests=len(requests), pairs=int(keep.sum()), reward=label)
    return table, kept, np.stack([tokens[chosen], tokens[rejected]], 1), info


def write_pairs(lake, table: pa.Table, run_id: str) -> int:
    """corpus.preference_pairs: replace this run's pairs (one commit); returns the version."""
    from deltalake import DeltaTable, write_deltalake

    path = str(Path(lake) / corpus.PREFERENCE_PAIRS.relative_path)
    if DeltaTable.is_deltatable(path):
        write_deltalake(path, table, mode="overwrite", predicate=f"run_id = '{run_id}'")
    else:
        write_deltalake(path, table, mode="overwrite", partition_by=list(corpus.PREFERENCE_PAIRS.partition_by))
    return DeltaTable(path).version()


def dpo(lake, parent_run: str, cfg: TrainConfig | None = None, run_id: str | None = None, log=print) -> dict:
    """Align a pretrained run: pairs from it (the frozen reference), then
    L = L_ntp + lambda * L_dpo on the policy (a copy of it)."""
    started = time.perf_counter()
    reference, data, parent_cfg, parent = load_run(lake, parent_run)
    cfg = cfg or parent_cfg
    device = cfg.resolved_device()
    run_id, run_dir = _run_dir(lake, run_id, "dpo")
    reference = reference.to(device).eval()
    pairs, requests, tokens, info = preference_pairs(reference, data, cfg, run_id)
    pairs_version = write_pairs(lake, pairs, run_id)
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
        for idx in _minibatches(len(requests), cfg.batch_size, rng):
            x = requests.take(idx).tensors(device)
            w, l = chosen_t[idx].to(device), rejected_t[idx].to(device)
            ntp_x = train.take(rng.choice(len(train), len(idx), replace=False)).tensors(device)
            with _autocast(device):
                with torch.no_grad():
                    ref_w = sequence_logprob(reference({**x, "target": w}), w)
                    ref_l = sequence_logprob(reference({**x, "target": l}), l)
                l_dpo = dpo_loss(
                    sequence_logprob(policy({**x, "target": w}), w), sequence_logprob(policy({**x, "target": l}), l), ref_w, ref_l, cfg.dpo_beta
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
    metrics = {"dpo": history, "pairs": info, "preference_pairs_version": pairs_version, "eval": evaluate(policy, data, cfg)}
    meta = {
        "run_id": run_id, "kind": "dpo", "parent": parent_run, "manifest": data.snapshot.manifest(),
        "model_config": policy.cfg.to_dict(), "train_config": asdict(cfg), "device": device,
        "parent_eval": parent["metrics"].get("eval"), "metrics": metrics, "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    _save(run_dir, policy.cpu(), meta)
    return meta


def eval_run(lake, run_id: str, split: str = "test", eval_limit: int | None = None) -> dict:
    model, data, cfg, _ = load_run(lake, run_id)
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
