"""Training that selects on validation: the loop every model of the trainer uses, and
OneLoc / TIGER pretraining on it.

`fit` runs epochs over the train split (row order a function of seed and epoch), with a
linear warm-up then cosine decay of the learning rate; after every epoch it scores the
valid split and keeps the best weights; it stops after `patience` epochs without a
better valid metric. Every epoch leaves a checkpoint (model, optimizer, schedule, epoch,
step, history, best metric, config) from which `resume=True` continues exactly where an
uninterrupted run would be. The test split is scored once, at the end, with the best
weights. Progress: a bar with loss, learning rate and tokens/s on a terminal, one line
per epoch otherwise.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from geosid.errors import InvalidRequestError
from geosid.trainer.baselines import BASELINES
from geosid.trainer.config import TrainConfig
from geosid.trainer.data import Batch
from geosid.trainer.evaluation import evaluate, validator
from geosid.trainer.gru import SIZES as GRU_SIZES
from geosid.trainer.gru import GRURec, GRURecConfig, gru_step
from geosid.trainer.loading import autocast, candidate_slots, epoch_order, load_corpus, load_run, new_model, vocab_fingerprint
from geosid.trainer.model import ntp_loss
from geosid.trainer.runs import RunRecord, atomic_torch_save, checkpoint_path, new_run_id, run_dir, save_run
from geosid.trainer.sasrec import SIZES, SASRec, SASRecConfig, sasrec_step
from geosid.trainer.warm_start import level_maps, warm_start


def lr_factor(step: int, total: int, warmup: float, floor: float) -> float:
    """Linear warm-up over `warmup` of the steps, then cosine decay to `floor` (shares of lr)."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class FitResult:
    epochs: list[dict] = field(default_factory=list)  # per epoch: loss, valid metric, lr, seconds, tokens/s
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped: str = "epochs"  # epochs | early | budget | asked
    tokens_per_s: float = 0.0
    train_s: float = 0.0  # in training steps
    wall_s: float = 0.0  # training and validation: what a time budget counts


def fit(
    model: torch.nn.Module,
    train: Batch,
    step_loss: Callable,
    validate: Callable | None,
    cfg: TrainConfig,
    folder,
    *,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    log=print,
    vocab: str | None = None,
) -> FitResult:
    """Train `model` on `train` (see the module doc). `step_loss(model, rows: Batch) ->
    (loss, tokens)`; `validate(model) -> metric` (higher is better). Returns the history;
    the model holds the best weights after it. `stop_after_epochs` stops as a kill would
    (a checkpoint is left to resume from). `vocab` (the item vocabulary's fingerprint) is
    kept in the checkpoint: a resume on another vocabulary is refused."""
    device = cfg.resolved_device()
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
    if cfg.max_steps:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps)
    total = steps_per_epoch * cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, cfg.warmup, cfg.min_lr))
    result, start_epoch, bad_epochs, best_state = FitResult(), 0, 0, None
    state_file = checkpoint_path(folder)
    if resume and state_file.exists():
        state = torch.load(state_file, map_location=device, weights_only=False)
        _check_vocab(state, vocab, folder)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        result = FitResult(**state["result"])
        start_epoch, bad_epochs, best_state = state["epoch"] + 1, state["bad_epochs"], state["best_model"]
        log(f"    resumed after epoch {state['epoch'] + 1}/{cfg.epochs} (best valid {cfg.select} {result.best_metric})")
    bar = sys.stderr.isatty()
    tokens_total, train_s = result.tokens_per_s * result.train_s, result.train_s
    for epoch in range(start_epoch, cfg.epochs):
        epoch_started = time.perf_counter()
        progress = _progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", bar=bar)
        batches = itertools.islice(epoch_batches(train, cfg, epoch), steps_per_epoch)
        total_loss, steps, tokens = _train_epoch(model, batches, step_loss, opt, schedule, device, progress)
        seconds = time.perf_counter() - epoch_started
        train_s, tokens_total = train_s + seconds, tokens_total + tokens
        record = {
            "epoch": epoch + 1,
            "loss": round(total_loss / max(steps, 1), 4),
            "lr": schedule.get_last_lr()[0],
            "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens / max(seconds, 1e-9)),
        }
        if validate is not None:
            metric = float(validate(model))
            record[f"valid_{cfg.select}"] = round(metric, 5)
            if result.best_metric is None or metric > result.best_metric:
                result.best_metric, result.best_epoch, bad_epochs = metric, epoch + 1, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
        result.epochs.append(record)
        result.train_s, result.tokens_per_s = round(train_s, 1), round(tokens_total / max(train_s, 1e-9))
        result.wall_s = round(result.wall_s + time.perf_counter() - epoch_started, 1)
        early = validate is not None and bad_epochs >= cfg.patience
        result.stopped = "early" if early else result.stopped
        run_dir_ready(folder)
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "schedule": schedule.state_dict(),
                "result": asdict(result),
                "epoch": epoch,
                "bad_epochs": bad_epochs,
                "best_model": best_state,
                "config": asdict(cfg),
                "item_vocab": vocab,
            },
            state_file,
        )
        # after the checkpoint: a printed epoch is one a killed run resumes after
        log(
            f"    epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f}"
            + (f", valid {cfg.select} {record[f'valid_{cfg.select}']:.4f}" if validate is not None else "")
            + f", {record['tokens_per_s']:,} tokens/s, {seconds:.0f}s"
        )
        if early:
            log(f"    early stop: no better valid {cfg.select} for {cfg.patience} epoch(s); best epoch {result.best_epoch}")
            break
        if stop_after_epochs is not None and epoch + 1 >= stop_after_epochs and epoch + 1 < cfg.epochs:
            result.stopped = "asked"
            break
        if cfg.max_minutes is not None and result.wall_s / 60 >= cfg.max_minutes and epoch + 1 < cfg.epochs:
            result.stopped = "budget"
            log(f"    time budget of {cfg.max_minutes:g} min spent after epoch {epoch + 1}; best epoch {result.best_epoch}")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def _train_epoch(
    model: torch.nn.Module, batches: Iterator[Batch], step_loss: Callable, opt, schedule, device: str, progress
) -> tuple[float, int, int]:
    """One epoch of optimizer steps; (summed loss, steps, tokens)."""
    model.train()
    started, total_loss, steps, tokens = time.perf_counter(), 0.0, 0, 0
    for rows in batches:
        with autocast(device):
            loss, n_tokens = step_loss(model, rows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        total_loss, steps, tokens = total_loss + loss.item(), steps + 1, tokens + n_tokens
        if progress is not None:
            elapsed = time.perf_counter() - started
            progress.set_postfix(
                loss=f"{total_loss / steps:.4f}", lr=f"{schedule.get_last_lr()[0]:.2e}", tok_s=f"{tokens / max(elapsed, 1e-9):,.0f}", refresh=False
            )
            progress.update(1)
    if progress is not None:
        progress.close()
    return total_loss, steps, tokens


def epoch_batches(train, cfg: TrainConfig, epoch: int) -> Iterator[Batch]:
    """Minibatches of one epoch: a permutation of an in-memory split, or a streamed split's
    shuffled stream; either a function of (seed, epoch)."""
    if hasattr(train, "epoch"):  # a StreamedSplit
        return train.epoch(cfg.seed, epoch, cfg.batch_size)
    order = epoch_order(len(train), cfg.seed, epoch)
    return (train.take(order[begin : begin + cfg.batch_size]) for begin in range(0, len(order), cfg.batch_size))


def _progress(total: int, label: str, *, bar: bool):
    if not bar:
        return None

    return tqdm(total=total, desc=f"    {label}", unit="step", leave=False, file=sys.stderr)


def run_dir_ready(folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)


def oneloc_step(model, rows: Batch):
    """Next-token loss over the SID tokens; tokens = history events + target tokens."""
    x = rows.tensors(next(model.parameters()).device)
    return ntp_loss(model(x), x.target), int((x.hist_kind > 0).sum()) + x.target.numel()


def _check_vocab(state: dict, vocab: str | None, folder) -> None:
    """A checkpoint's weights index the item vocabulary it was written with (checkpoints
    from before the vocabulary was recorded used the SID map's file order)."""
    if vocab is not None and state.get("item_vocab") != vocab:
        written = state.get("item_vocab") or "an unrecorded one (written before vocabularies were recorded)"
        raise InvalidRequestError(
            f"the checkpoint under {folder} indexes item vocabulary {written}, the corpus gives {vocab} now: train the run afresh (without --resume)"
        )


def pretrain(
    lake_root,
    cfg: TrainConfig,
    codebook_version: str | None = None,
    table_versions: dict | None = None,
    run_id: str | None = None,
    log=print,
    *,
    resume: bool = False,
    stop_after_epochs: int | None = None,
) -> RunRecord:
    """Pretrain OneLoc (or TIGER) with next-token prediction on a pinned corpus: select on
    the valid split, evaluate the best weights on test once. Returns the run record
    (written under the lake's _models/). `resume` continues the run `run_id` from its
    last checkpoint; `stop_after_epochs` stops early, as a kill would."""

    if not cfg.decodes_sids:  # SASRec and the GRU rank item ids
        return train_ranker(lake_root, cfg, codebook_version, table_versions, run_id, log, resume=resume, stop_after_epochs=stop_after_epochs)
    started = time.perf_counter()
    device = cfg.resolved_device()
    if resume and not run_id:
        raise ValueError("resume needs the run id of the run to continue")
    data = load_corpus(
        lake_root,
        codebook_version,
        table_versions,
        cfg.max_history,
        protocol=cfg.protocol,
        item_min_count=cfg.item_min_count,
        candidates=candidate_slots(cfg),
        stream=cfg,
    )
    model = new_model(data, cfg)
    warm = warm_start_from(lake_root, cfg.warm_start, model, data, log) if cfg.warm_start and not resume else None
    if data.streamed:
        log(f"    train split streamed from the snapshot ({len(data.splits['train']):,} rows > {cfg.stream_above:,})")
    run_id = run_id or new_run_id("pretrain")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = fit(
        model,
        data.splits["train"],
        oneloc_step,
        validator(data, cfg),
        cfg,
        run_dir(lake_root, run_id),
        resume=resume,
        stop_after_epochs=stop_after_epochs,
        log=log,
        vocab=vocab_fingerprint(data.vocab),
    )
    metrics = {
        "train_loss": [e["loss"] for e in result.epochs],
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "best_valid": result.best_metric,
        "stopped": result.stopped,
        "train_s": result.train_s,
        "wall_s": result.wall_s,
        "tokens_per_s": result.tokens_per_s,
    }
    if device == "cuda":
        metrics["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if warm is not None:
        metrics["warm_start"] = warm
    if result.stopped != "asked":
        # a streamed split keeps no train histories: the Markov rule over them is left out
        baselines = tuple(b for b in BASELINES if not (data.streamed and b == "markov"))
        metrics["eval"] = evaluate(model, data, cfg, baselines=baselines)
    record = RunRecord(
        run_id=run_id,
        kind="pretrain",
        manifest=data.manifest(),
        model_config=model.cfg.to_dict(),
        train_config=asdict(cfg),
        device=device,
        rows={k: len(v) for k, v in data.splits.items()},
        unknown_targets=data.unknown_targets,
        item_embeddings=data.vocab.n_item_embeddings,
        streamed=data.streamed,
        parameters=sum(p.numel() for p in model.parameters()),
        metrics=metrics,
        seconds=round(time.perf_counter() - started, 1),
    )
    save_run(lake_root, record, model.cpu().state_dict())
    return record


def warm_start_from(lake_root, run_id: str, model, data, log=print) -> dict:
    """Start `model` (for the corpus `data`) from pretrain run `run_id`'s weights, remapped
    from its codebook version to the corpus's (see geosid.trainer.warm_start)."""
    previous, previous_data, _, record = load_run(lake_root, run_id)
    if record.train_config.get("model") not in ("oneloc", "tiger") or record.model_config.get("d_model") != model.cfg.d_model:
        raise InvalidRequestError(
            f"--warm-start {run_id}: a {record.train_config.get('model')} run of another shape; warm-start from a run of the same model and size"
        )
    target = data.snapshot.codebook_version
    maps = level_maps(lake_root, record.codebook_version, target, data.vocab.token_sizes[:-1])
    report = warm_start(model, data.vocab, previous, previous_data.vocab, maps)
    log(f"    from run {run_id} ({record.codebook_version} -> {target}): {report.summary()}")
    return {"run": run_id, "from_version": record.codebook_version, **report.to_dict()}


def new_ranker(data, cfg: TrainConfig) -> torch.nn.Module:
    """A fresh item-id ranker (SASRec or the GRU) for the corpus, seeded."""
    slots = data.splits["train"].hist_item.shape[1]
    dropout = {} if cfg.dropout is None else {"dropout": cfg.dropout}
    torch.manual_seed(cfg.seed)
    if cfg.model == "gru":
        return GRURec(GRURecConfig(n_items=len(data.vocab.item_ids), n_cells=len(data.vocab.cells), max_len=slots, **GRU_SIZES[cfg.size], **dropout))
    return SASRec(SASRecConfig(n_items=len(data.vocab.item_ids), max_len=slots, **SIZES[cfg.size], **dropout))


def train_ranker(
    lake_root,
    cfg: TrainConfig,
    codebook_version: str | None = None,
    table_versions: dict | None = None,
    run_id: str | None = None,
    log=print,
    *,
    resume: bool = False,
    stop_after_epochs: int | None = None,
) -> RunRecord:
    """SASRec or the GRU on a pinned corpus, selected on valid, evaluated on test; the run record."""

    started = time.perf_counter()
    data = load_corpus(lake_root, codebook_version, table_versions, cfg.max_history, protocol=cfg.protocol)
    model = new_ranker(data, cfg)
    run_id = run_id or new_run_id(cfg.model)
    step = gru_step if cfg.model == "gru" else sasrec_step
    result = fit(
        model,
        data.splits["train"],
        step,
        validator(data, cfg),
        cfg,
        run_dir(lake_root, run_id),
        resume=resume,
        stop_after_epochs=stop_after_epochs,
        log=log,
        vocab=vocab_fingerprint(data.vocab),
    )
    metrics = {
        "train_loss": [e["loss"] for e in result.epochs],
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "best_valid": result.best_metric,
        "stopped": result.stopped,
        "train_s": result.train_s,
        "tokens_per_s": result.tokens_per_s,
    }
    if result.stopped != "asked":
        metrics["eval"] = evaluate(model, data, cfg, name=cfg.model)
    record = RunRecord(
        run_id=run_id,
        kind="pretrain",
        manifest=data.manifest(),
        model_config=model.cfg.to_dict(),
        train_config=asdict(cfg),
        device=cfg.resolved_device(),
        rows={k: len(v) for k, v in data.splits.items()},
        unknown_targets=data.unknown_targets,
        parameters=sum(p.numel() for p in model.parameters()),
        metrics=metrics,
        seconds=round(time.perf_counter() - started, 1),
    )
    save_run(lake_root, record, model.cpu().state_dict())
    return record
