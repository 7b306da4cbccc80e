"""Pipeline steps of training: pretrain, align with DPO, evaluate, on a pinned corpus
snapshot (no engine: the trainer reads the lake with delta-rs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from geosid.config import Settings
from geosid.errors import InvalidRequestError, NotFoundError
from geosid.pipeline.context import Context
from geosid.trainer import dpo as dpo_job
from geosid.trainer import training
from geosid.trainer.config import TRAIN_FIELDS, TrainConfig
from geosid.trainer.evaluation import eval_run, metrics_table
from geosid.trainer.runs import RunRecord, find_run, latest_run, models_root

# The demo's training: a tiny OneLoc, one epoch, a longer DPO (minutes on a laptop).
DEMO_TRAINING = {"size": "tiny", "epochs": 1, "batch_size": 256, "max_history": 20, "dpo_requests": 3000, "dpo_candidates": 10, "dpo_epochs": 2}


def _lake_root(ctx: Context | None, lake_root: str | None) -> Path:
    return (ctx.lake.root if ctx is not None else Settings.from_env(lake_root=lake_root).lake_root).resolve()


def _log(ctx: Context | None):
    return ctx.log if ctx is not None else print


def _eval_lines(evaluation: dict, label: str) -> str:
    head = f"{evaluation['split']} split, {evaluation['requests']:,} requests (beam search {evaluation['beam_search_s']}s):"
    return head + "\n" + metrics_table(evaluation, label)


def pretrain(
    cfg=None,
    codebook_version: str | None = None,
    run_id: str | None = None,
    *,
    resume: bool = False,
    ctx: Context | None = None,
    lake_root: str | None = None,
    label: str | None = None,
) -> RunRecord:
    """Pretrain a model (OneLoc, TIGER or SASRec: `cfg.model`) on the corpus of one split
    protocol, pinned at the latest table versions, selecting on valid; `resume`
    continues run `run_id` from its last checkpoint. Returns the run record."""

    cfg = cfg or TrainConfig()
    root, log = _lake_root(ctx, lake_root), _log(ctx)
    if resume and not run_id:
        raise InvalidRequestError("--resume continues a run: pass --run-id of the run to continue")
    record = training.pretrain(root, cfg, codebook_version=codebook_version, run_id=run_id, log=log, resume=resume)
    m = record.metrics
    log(
        f"run {record.run_id}: {record.parameters:,} parameters, {record.rows['train']:,} train rows, "
        f"{m['tokens_per_s']:,} tokens/s, {len(m['epochs'])} epoch(s) ({m['stopped']}), best epoch {m['best_epoch']}; "
        f"pinned {record.table_versions}"
    )
    if any(record.unknown_targets.values()):
        log(f"    left out, target not in the version's SID map: {record.unknown_targets}")
    if record.evaluated:
        log(_eval_lines(m["eval"], label or {"sasrec": "SASRec", "gru": "GRU", "tiger": "TIGER"}.get(cfg.model, "OneLoc")))
    return record


def dpo(
    parent_run: str | None = None,
    cfg=None,
    run_id: str | None = None,
    changes: dict | None = None,
    *,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> RunRecord:
    """Align a pretrained run (default: the latest) with DPO under `cfg` (default: the
    parent's config with `changes`); returns the run record."""

    root, log = _lake_root(ctx, lake_root), _log(ctx)
    parent_run = parent_run or latest_run(root, "pretrain")
    if parent_run is None:
        raise NotFoundError(f"no pretrain run under {root}: run `geosid train pretrain` first")
    if cfg is None and changes:
        cfg = parent_config(root, parent_run, changes)
    record = dpo_job.dpo(root, parent_run, cfg=cfg, run_id=run_id, log=log)
    log(f"run {record.run_id} (parent {parent_run})")
    log(_eval_lines(record.metrics["eval"], "OneLoc + DPO"))
    before = (record.parent_eval or {}).get("oneloc", {}).get("geo_reward@10")
    if before is not None:
        log(f"mean geographic reward of the top 10: {before:.4f} pretrained -> {record.evaluation()['geo_reward@10']:.4f} after DPO")
    return record


def parent_config(root, parent_run: str, changes: dict | None = None) -> TrainConfig:
    """A run's training config with `changes` (unknown options refused, like the CLI's)."""
    parent = find_run(root, parent_run)
    if parent is None:
        raise NotFoundError(f"no run {parent_run} under {root}")
    base = {k: v for k, v in parent.train_config.items() if k in TRAIN_FIELDS}
    return TrainConfig.from_options(**{**base, **(changes or {})})


def evaluate(
    run: str | None = None, split: str = "test", eval_limit: int | None = None, *, ctx: Context | None = None, lake_root: str | None = None
) -> dict:
    """Evaluate a saved run (default: the latest DPO run, else pretrain) on a split."""

    root, log = _lake_root(ctx, lake_root), _log(ctx)
    run = run or latest_run(root, "dpo", "pretrain")
    if run is None:
        raise NotFoundError(f"no run to evaluate under {root}: run `geosid train pretrain` first")
    evaluation = eval_run(root, run, split=split, eval_limit=eval_limit)
    log(_eval_lines(evaluation, run))
    return evaluation


@dataclass
class TrainOutcome:
    pretrained: RunRecord
    aligned: RunRecord
    control: RunRecord

    @property
    def geo_rewards(self) -> tuple[float, float, float]:
        """Mean geographic reward@10: pretrained, control (lambda 0), DPO."""
        return tuple(r.evaluation("oneloc")["geo_reward@10"] for r in (self.pretrained, self.control, self.aligned))

    @property
    def preference_accuracy(self) -> tuple[float | None, float | None]:
        """Held-out preference accuracy after the last epoch: control, DPO (the reference: 0.5)."""
        return tuple((r.metrics.get("dpo") or [{}])[-1].get("heldout_accuracy") for r in (self.control, self.aligned))

    def comparison(self) -> str:
        """One line: DPO beside its control on what alignment should move and keep."""
        keys = [k for k in ("recall@5", "ndcg@5", "geo_reward@10", "gmv@10", "hit_gmv@10") if k in self.aligned.evaluation()]
        parts = [f"{k} {self.aligned.evaluation()[k]:.4f} vs {self.control.evaluation()[k]:.4f}" for k in keys]
        control_acc, dpo_acc = self.preference_accuracy
        return f"DPO vs control (lambda 0): {', '.join(parts)}; held-out preference accuracy {dpo_acc} vs {control_acc} (the reference's: 0.5)"

    def to_dict(self) -> dict:
        return {
            "pretrain_run": self.pretrained.run_id,
            "dpo_run": self.aligned.run_id,
            "control_run": self.control.run_id,
            "geo_reward@10": list(self.geo_rewards),
            "heldout_preference_accuracy": list(self.preference_accuracy),
        }


def train_with_control(codebook_version: str, cfg=None, *, ctx: Context) -> TrainOutcome:
    """Pretrain a tiny OneLoc, align it with DPO, and compare with a control that takes the
    same extra next-token steps without the DPO term (lambda = 0)."""
    cfg = cfg or TrainConfig.from_options(**DEMO_TRAINING)
    with ctx.stage(f"pretrain a tiny OneLoc on the corpus ({cfg.epochs} epoch(s), device {cfg.resolved_device()})", timed="pretrain"):
        pre = pretrain(cfg, codebook_version, ctx=ctx)
    with ctx.stage(f"DPO, lambda {cfg.dpo_lambda}, geographic reward (+ GMV where the source has it)", timed="dpo"):
        aligned = dpo(pre.run_id, cfg, ctx=ctx)
    with ctx.stage("control: the same extra steps with lambda = 0 (next-token loss only)", timed="dpo control"):
        control = dpo_job.dpo(ctx.lake.root, pre.run_id, cfg=dataclasses.replace(cfg, dpo_lambda=0.0), log=ctx.log)
    outcome = TrainOutcome(pre, aligned, control)
    ctx.log("mean geographic reward of the top 10: pretrained {:.4f}, control (lambda 0) {:.4f}, DPO {:.4f}".format(*outcome.geo_rewards))
    ctx.log(outcome.comparison())
    ctx.log(f"    runs under {models_root(ctx.lake.root)} (each run.json records the pinned table versions)")
    return outcome
