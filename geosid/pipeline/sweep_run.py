"""A DPO sweep: from one pretrained run, DPO at every (lambda, beta) point of a grid, each
beside the lambda-0 control that takes the same extra next-token steps on the same pairs
(one control per pair setting: lambda and beta do not change the steps), scored on the
same test requests. The trade-off (Recall@5 against the mean geographic reward of the top
10, or GMV@10 where the source has GMV) is a table and a plot under
`<lake>/_reports/dpo_sweep/<parent run>/`. Sweeps with other step settings (DPO learning
rate, epochs, pairs) get their own run ids (a tag of those settings) and their points join
the same table, each beside its own control.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from geosid.errors import NotFoundError
from geosid.pipeline.context import Context
from geosid.pipeline.train import parent_config
from geosid.trainer import dpo as dpo_job
from geosid.trainer.config import TRAIN_FIELDS, TrainConfig
from geosid.trainer.runs import RunRecord, find_run, latest_run

LAMBDAS = (0.05, 0.2, 1.0)
BETAS = (0.1, 0.5)


@dataclass
class SweepReport:
    parent: str
    rows: list[dict] = field(default_factory=list)  # {label, lambda, beta, run_id, metrics..., preference accuracy}
    markdown: str = ""
    paths: list[Path] = field(default_factory=list)
    minutes: float = 0.0


def _row(label: str, record: RunRecord, lam: float | None, beta: float | None, control: str | None = None) -> dict:
    evaluation = record.evaluation("oneloc")
    last = (record.metrics.get("dpo") or [{}])[-1]
    steps = ""
    if record.kind == "dpo":
        cfg = TrainConfig(**{k: v for k, v in record.train_config.items() if k in TRAIN_FIELDS})
        steps = f"lr {cfg.resolved_dpo_lr():g}, {cfg.dpo_epochs} ep, {cfg.dpo_requests:,} req, {cfg.dpo_pairs_per_request} pair/req" + (
            f", GMV weight {cfg.gmv_weight:g}" if "gmv@10" in evaluation else ""
        )
    return {
        "label": label,
        "lambda": lam,
        "beta": beta,
        "run_id": record.run_id,
        "control": control,
        "steps": steps,
        **{k: evaluation.get(k) for k in ("recall@5", "ndcg@5", "geo_reward@10", "gmv@10", "hit_gmv@10")},
        "heldout_accuracy": last.get("heldout_accuracy"),
        "heldout_margin": last.get("heldout_margin"),
        "minutes": round((record.seconds or 0) / 60, 1),
    }


def steps_tag(cfg) -> str:
    """A short, stable name of everything but lambda and beta: the DPO steps a control shares."""
    steps = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("dpo_lambda", "dpo_beta")}
    return hashlib.sha1(json.dumps(steps, sort_keys=True, default=str).encode()).hexdigest()[:6]


def _run(ctx: Context, parent: str, cfg, run_id: str) -> RunRecord:
    """A DPO run, reused when it finished before under this id with this config."""
    record = find_run(ctx.lake.root, run_id)
    if record is not None and record.evaluated and record.parent == parent:
        same = json.loads(json.dumps(dataclasses.asdict(cfg), default=str)) == json.loads(json.dumps(record.train_config, default=str))
        if same:
            ctx.log(f"    reusing the finished run {run_id}")
            return record
    return dpo_job.dpo(ctx.lake.root, parent, cfg=cfg, run_id=run_id, log=ctx.log)


def dpo_sweep(parent_run: str | None = None, cfg=None, lambdas=None, betas=None, changes: dict | None = None, *, ctx: Context) -> SweepReport:
    """DPO from `parent_run` (default: the latest pretrain run) at every lambda x beta
    (default: LAMBDAS x BETAS), and the lambda-0 control; `cfg` (default: the parent's
    with `changes`) sets everything else."""
    lambdas, betas = lambdas or LAMBDAS, betas or BETAS
    parent_run = parent_run or latest_run(ctx.lake.root, "pretrain")
    parent = find_run(ctx.lake.root, parent_run) if parent_run else None
    if parent is None:
        raise NotFoundError(f"no pretrain run {parent_run or ''} under {ctx.lake.root}: run `geosid train pretrain` first")
    cfg = cfg or parent_config(ctx.lake.root, parent.run_id, changes)
    report, name = SweepReport(parent.run_id), f"{parent.run_id}-sweep-{steps_tag(cfg)}"
    redone = {f"{name}-control", *(f"{name}-l{lam:g}-b{beta:g}" for lam, beta in itertools.product(lambdas, betas))}
    report.rows = [r for r in _earlier_rows(ctx, parent.run_id) if r["run_id"] not in redone] or [
        {**_row("pretrained", parent, None, None), "minutes": None}
    ]
    with ctx.stage("DPO sweep: the lambda-0 control (the same extra steps, next-token loss only)", timed="dpo sweep control"):
        control = _run(ctx, parent.run_id, dataclasses.replace(cfg, dpo_lambda=0.0), f"{name}-control")
    report.rows.insert(_after(report.rows, name), _row("control (lambda 0)", control, 0.0, cfg.dpo_beta, control.run_id))
    for lam, beta in itertools.product(lambdas, betas):
        with ctx.stage(f"DPO sweep: lambda {lam:g}, beta {beta:g}", timed=f"dpo sweep {lam:g} {beta:g}"):
            record = _run(ctx, parent.run_id, dataclasses.replace(cfg, dpo_lambda=lam, dpo_beta=beta), f"{name}-l{lam:g}-b{beta:g}")
        report.rows.append(_row(f"DPO lambda {lam:g}, beta {beta:g}", record, lam, beta, control.run_id))
        _publish(ctx, report)
    report.minutes = round(sum(r["minutes"] or 0 for r in report.rows), 1)
    _publish(ctx, report)
    ctx.log(report.markdown)
    return report


def _after(rows: list[dict], name: str) -> int:
    """Where a sweep's control goes: before its setting's earlier points (else at the end)."""
    return next((i for i, r in enumerate(rows) if r["run_id"].startswith(name)), len(rows))


def _earlier_rows(ctx: Context, parent_run: str) -> list[dict]:
    """The points of earlier sweeps from this run (other step settings), kept in the table."""
    path = ctx.lake.reports_dir("dpo_sweep", parent_run, "results.json")
    rows = json.loads(path.read_text()) if path.exists() else []
    return rows if all("control" in r for r in rows) else []  # a table from before the tags: rebuilt


def render(report: SweepReport) -> str:
    pretrained = report.rows[0]
    by_id = {r["run_id"]: r for r in report.rows}
    has_gmv = any(r.get("gmv@10") is not None for r in report.rows)
    cols = ["recall@5", "ndcg@5", "geo_reward@10"] + (["gmv@10", "hit_gmv@10"] if has_gmv else [])
    head = (
        "| run | DPO steps | "
        + " | ".join(c.replace("recall", "R").replace("ndcg", "N") for c in cols)
        + " | R@5 vs pretrained | geo reward vs control"
        + (" | GMV vs control" if has_gmv else "")
        + " | held-out preference accuracy | margin | min |"
    )
    lines = [head, "|" + "---|" * (len(cols) + 7 + has_gmv)]
    for r in report.rows:
        control = by_id.get(r.get("control"), {})
        cells = ["–" if r.get(c) is None else f"{r[c]:.4f}" for c in cols]
        vs_pre = f"{(r['recall@5'] / pretrained['recall@5'] - 1):+.1%}" if pretrained["recall@5"] else "–"
        vs_control = _relative(r, control, "geo_reward@10") + (f" | {_relative(r, control, 'gmv@10')}" if has_gmv else "")
        acc = "–" if r.get("heldout_accuracy") is None else f"{r['heldout_accuracy']:.3f}"
        margin = "–" if r.get("heldout_margin") is None else f"{r['heldout_margin']:.3f}"
        lines.append(
            f"| {r['label']} | {r.get('steps') or ''} | "
            + " | ".join(cells)
            + f" | {vs_pre} | {vs_control} | {acc} | {margin} | {r.get('minutes') or ''} |"
        )
    return f"DPO sweep from {report.parent} ({report.minutes:g} CPU minutes of DPO and control runs):\n\n" + "\n".join(lines)


def _relative(row: dict, base: dict, key: str) -> str:
    return f"{row[key] / base[key] - 1:+.1%}" if row.get(key) is not None and base.get(key) else "–"


def plot(report: SweepReport, path: Path) -> Path:
    import matplotlib  # lazy: only reports plot: loaded there

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: only reports plot: loaded there

    rewards = [("geo_reward@10", "mean geographic reward of the top 10")]
    if any(r.get("gmv@10") is not None for r in report.rows):
        rewards.append(("gmv@10", "expected GMV of the top 10 (GMV model)"))
    fig, axes = plt.subplots(1, len(rewards), figsize=(7 * len(rewards), 5), squeeze=False)
    settings = sorted({r.get("steps") or "" for r in report.rows} - {""})
    color = {s: f"C{i % 10}" for i, s in enumerate(settings)}  # one colour per DPO-step setting
    for ax, (key, label) in zip(axes[0], rewards):
        for r in (r for r in report.rows if r.get(key) is not None):
            marker = "s" if r["label"] == "pretrained" else "^" if r["label"].startswith("control") else "o"
            ax.scatter(r[key], r["recall@5"], marker=marker, s=60, color=color.get(r.get("steps") or "", "black"))
            ax.annotate(r["label"].replace("DPO ", ""), (r[key], r["recall@5"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        for s, c in color.items():
            ax.scatter([], [], color=c, label=f"DPO steps: {s}")
        ax.legend(fontsize=7, loc="best")
        ax.set_xlabel(label)
        ax.set_ylabel("Recall@5")
        ax.set_title(f"DPO trade-off from {report.parent}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _publish(ctx: Context, report: SweepReport) -> None:
    out = ctx.lake.reports_dir("dpo_sweep", report.parent)
    out.mkdir(parents=True, exist_ok=True)
    report.markdown = render(report)
    (out / "results.md").write_text(report.markdown + "\n")
    (out / "results.json").write_text(json.dumps(report.rows, indent=2, default=str))
    report.paths = [out / "results.md", out / "results.json", plot(report, out / "results.png")]
