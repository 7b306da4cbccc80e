"""The recommendation benchmark: every method on the same test requests of one split
protocol, like Table 1 of the OneLoc paper (Recall and NDCG @5/10/20).

For a protocol (user_chrono or libcity; see `geosid.jobs.corpus.SplitConfig`):

1. the corpus of the whole source under the published geo-aware codebook version, and
   under a text-only version (a capacity-aware residual k-means on `content-v1`, the
   items' content without any place), both with the protocol's targets and splits;
2. the non-learned baselines (most popular, nearest popular, repeat, recent, Markov on
   train transitions, Markov on the user's own), SASRec, TIGER (the SID decoder with
   every geo part off, on text-only SIDs), OneLoc, OneLoc + DPO (with its lambda-0
   control), and OneLoc without geo-aware attention, without the neighbour prompt, and
   without geo-aware SIDs (and, with `paper_decoder`, OneLoc as the paper has it: our
   four additions, copy head, time and repeat features, candidates, switched off); every model selects its epoch on valid and is scored once
   on test;
3. a Markdown table and a plot under `<lake>/_reports/benchmark/<protocol>/`, with the
   protocol's users, items, targets and the share of targets the user visited before.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import functions as F

from geosid.errors import NotFoundError
from geosid.jobs.index import CodebookSpec, published_version
from geosid.lake import as_date
from geosid.pipeline.context import Context
from geosid.pipeline.corpus import corpus_build, source_days, split_config
from geosid.pipeline.index import fit_codebook
from geosid.pipeline.silver import embed
from geosid.schemas import corpus as corpus_tables
from geosid.trainer.config import TrainConfig
from geosid.trainer.dpo import dpo as run_dpo
from geosid.trainer.evaluation import is_repeat
from geosid.trainer.loading import load_corpus
from geosid.trainer.model import OneLocConfig
from geosid.trainer.runs import RunRecord, find_run
from geosid.trainer.training import pretrain as run_pretrain

KS = (5, 10, 20)
# (row label, model, SID representation, OneLoc switches)
RUNS = (
    ("SASRec", "sasrec", "geo", {}),
    ("TIGER (text-only SIDs, no geo parts)", "tiger", "text", {}),
    ("OneLoc", "oneloc", "geo", {}),
    ("OneLoc w/o geo-aware attention", "oneloc", "geo", {"location_scores": False, "location_gate": False}),
    ("OneLoc w/o neighbour prompt", "oneloc", "geo", {"prompt": "pointwise"}),
    ("OneLoc w/o geo-aware SIDs", "oneloc", "text", {}),
)
# Our additions to the paper's model, switched off (`--paper-decoder`: one more run).
PAPER_DECODER = ("OneLoc as in the paper (no copy head, time, repeat features or candidates)", "oneloc", "geo",
                 {"copy_head": False, "time_features": False, "repeat_features": False, "candidates": False})  # fmt: skip
BASELINE_ROWS = (
    ("most popular", "most_popular"), ("nearest popular", "nearest_popular"), ("repeat", "repeat"),
    ("recent", "recent"), ("Markov (train transitions)", "markov"), ("Markov (user's own)", "markov_user"),
)  # fmt: skip


@dataclass
class BenchmarkReport:
    protocol: str
    stats: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # {method, metrics..., minutes, run_id}
    markdown: str = ""
    paths: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return self.markdown


def _text_version(ctx: Context, day, log) -> str:
    """A text-only codebook version (content-v1 vectors, capacity-aware residual k-means):
    the one fitted before on the same inputs, else a new candidate (never published)."""

    embed(day, template="content-v1", ctx=ctx)
    fit = fit_codebook(CodebookSpec("residual_kmeans", capacity_aware=True), day, template="content-v1", ctx=ctx)
    log(f"text-only SIDs: {fit.summary()}")
    return fit.codebook_version


def _stats(data, protocol: str) -> dict:
    test = data.splits["test"]
    return {
        "protocol": protocol,
        "items": int(len(data.vocab.item_ids)),
        "targets": {k: len(v) for k, v in data.splits.items()},
        "repeat_share_test": round(float(is_repeat(test).mean()) if len(test) else 0.0, 4),
    }


def benchmark(protocol: str = "user_chrono", source: str = "tsmc2014", size: str = "tiny", epochs: int = 30,
              max_minutes: float = 20.0, ablations: bool = True, paper_decoder: bool = False, *, ctx: Context) -> BenchmarkReport:  # fmt: skip
    """Build the protocol's corpora, train and score every method (see the module doc).
    `max_minutes` is each model's training budget (epochs stop early on valid anyway);
    without `ablations` only the baselines, SASRec, TIGER and OneLoc run (no DPO)."""

    log, root = ctx.log, ctx.lake.root
    report = BenchmarkReport(protocol)
    first, last = source_days(ctx, source)
    geo = published_version(ctx.lake)
    if geo is None:
        raise NotFoundError("no published codebook version: run the demo (or build the index) first")
    versions = {"geo": geo, "text": _text_version(ctx, as_date(last), log)}
    split = split_config(protocol, last)
    for kind, version in versions.items():
        with ctx.stage(f"{protocol} corpus under the {kind} SIDs ({version})", timed=f"corpus {protocol} {kind}"):
            corpus_build(source, first, last, version, split, validate=kind == "geo", ctx=ctx)
    sequences = ctx.lake.read(corpus_tables.TRAINING_SEQUENCES).filter(F.col("codebook_version") == geo)
    users = sequences.filter(F.col("protocol") == protocol).select("user_id").distinct().count()

    results: dict[str, dict] = {}
    base = TrainConfig.from_options(size=size, epochs=epochs, max_minutes=max_minutes, protocol=protocol, max_history=50, patience=3,
                        eval_limit=None, batch_size=256)  # fmt: skip
    data = load_corpus(root, geo, None, 50, protocol=protocol)
    report.stats = {**_stats(data, protocol), "users": users, "codebook_versions": versions}
    del data
    out = ctx.lake.reports_dir("benchmark", protocol)
    out.mkdir(parents=True, exist_ok=True)

    def publish() -> None:
        """The table of the runs so far (rewritten after each: a long benchmark shows progress)."""
        reference = results["OneLoc"]["eval"] if "OneLoc" in results else next(iter(results.values()))["eval"]
        report.rows = [{"method": label, **reference[key]} for label, key in BASELINE_ROWS]
        for label, result in results.items():
            model_key = "sasrec" if result["model"] == "sasrec" else "oneloc"
            report.rows.append({"method": label, **result["eval"][model_key], "minutes": result["minutes"], "run_id": result["run_id"],
                                "epochs": result.get("epochs"), "best_epoch": result.get("best_epoch")})  # fmt: skip
        report.markdown = render(report)
        (out / "results.md").write_text(report.markdown + "\n")
        (out / "results.json").write_text(json.dumps({"stats": report.stats, "rows": report.rows}, indent=2, default=str))
        report.paths = [out / "results.md", out / "results.json", plot(report, out / "results.png")]

    def align(main_run: RunRecord) -> None:
        """DPO from the OneLoc run, and its lambda-0 control with the same extra steps."""
        aligned_cfg = dataclasses.replace(base, dpo_requests=6000, dpo_epochs=3)
        for label, lam in (("OneLoc + DPO", aligned_cfg.dpo_lambda), ("OneLoc + same steps, lambda 0", 0.0)):
            with ctx.stage(f"{protocol}: {label}", timed=f"{protocol} {label}"):
                started = time.perf_counter()
                dpo_cfg, dpo_run = dataclasses.replace(aligned_cfg, dpo_lambda=lam), f"bench-{protocol}-dpo-{lam:g}"
                record = _finished(root, dpo_run, dpo_cfg, geo, parent=main_run.run_id)
                if record is None:
                    record = run_dpo(root, main_run.run_id, cfg=dpo_cfg, log=log, run_id=dpo_run)
                results[label] = {"eval": record.metrics["eval"], "minutes": round((record.seconds or time.perf_counter() - started) / 60, 1),
                                  "run_id": record.run_id, "model": "oneloc"}  # fmt: skip
            publish()

    runs = list(RUNS if ablations else [run for run in RUNS if run[0] in ("SASRec", "OneLoc") or run[1] == "tiger"])
    runs += [PAPER_DECODER] if paper_decoder else []
    for label, model, kind, ablation in runs:
        cfg = dataclasses.replace(base, model=model, ablation=dict(ablation))
        run_id = f"bench-{protocol}-{label.lower().replace(' ', '-').replace('(', '').replace(')', '').replace(',', '')}"
        with ctx.stage(f"{protocol}: {label}", timed=f"{protocol} {label}"):
            started = time.perf_counter()
            record = _finished(root, run_id, cfg, versions[kind])
            if record is None:
                record = run_pretrain(root, cfg, codebook_version=versions[kind], run_id=run_id, log=log)
            else:
                log(f"    reusing the finished run {run_id} (same training config and codebook version)")
            results[label] = {"eval": record.metrics["eval"], "minutes": round((record.seconds or time.perf_counter() - started) / 60, 1),
                              "run_id": record.run_id, "epochs": len(record.metrics["epochs"]),
                              "best_epoch": record.metrics["best_epoch"], "model": model}  # fmt: skip
        publish()
        if label == "OneLoc" and ablations:  # DPO before the ablations: it answers the first question
            align(record)
    log(report.markdown)
    return report


def _finished(root, run_id: str, cfg, codebook_version: str, parent: str | None = None) -> RunRecord | None:
    """The record of `run_id` if it finished (test scored) with this exact training config
    on this codebook version (and parent): an interrupted benchmark resumes, and a run
    whose code or settings changed is trained again once its folder is removed."""
    record = find_run(root, run_id)
    if record is None:
        return None
    # A SID model recorded before a model switch existed was trained without it: the same
    # only where the switch is off now (TIGER has every addition off).
    switches = {f.name for f in dataclasses.fields(OneLocConfig)} if cfg.model == "oneloc" else set()
    switches -= {k for k, v in cfg.ablation.items() if v is False}
    # a training option added since the run was recorded must be at its default
    wanted, recorded = json.loads(json.dumps(dataclasses.asdict(cfg), default=str)), record.train_config
    defaults = json.loads(json.dumps(dataclasses.asdict(type(cfg)()), default=str))
    same_config = all(recorded.get(k, defaults[k]) == v for k, v in wanted.items()) and set(recorded) <= set(wanted)
    same = (same_config and switches <= set(record.model_config)
            and record.codebook_version == codebook_version
            and (parent is None or record.parent == parent))  # fmt: skip
    return record if same and record.evaluated else None


def render(report: BenchmarkReport) -> str:
    s = report.stats
    head = (
        f"**{report.protocol}** on {s.get('users', '?'):,} users, {s['items']:,} items; targets train {s['targets'].get('train', 0):,} / "
        f"valid {s['targets'].get('valid', 0):,} / test {s['targets'].get('test', 0):,}; "
        f"{s['repeat_share_test']:.1%} of test targets are venues the user visited before.\n\n"
    )
    # Acc@K is R@K with one target; Acc@1 and MRR@20 are the next-POI papers' other two
    cols = [f"{m}@{k}" for m in ("recall", "ndcg") for k in KS] + ["acc@1", "mrr@20"]
    names = {"acc@1": "Acc@1", "mrr@20": "MRR@20"}
    lines = ["| method | " + " | ".join(names.get(c, c.replace("recall", "R").replace("ndcg", "N")) for c in cols)
             + " | R@5 repeat / new | geo reward@10 | train min |",
             "|" + "---|" * (len(cols) + 4)]  # fmt: skip
    best = {c: max((r[c] for r in report.rows if r.get(c) is not None), default=None) for c in cols}
    for r in report.rows:
        cells = ["–" if r.get(c) is None else f"**{r[c]:.4f}**" if r[c] == best[c] else f"{r[c]:.4f}" for c in cols]
        split = f"{r.get('repeat_recall@5', 0):.3f} / {r.get('new_recall@5', 0):.3f}"
        minutes = "" if r.get("minutes") is None else f"{r['minutes']:g}"
        lines.append(f"| {r['method']} | " + " | ".join(cells) + f" | {split} | {r['geo_reward@10']:.3f} | {minutes} |")
    return head + "\n".join(lines)


def plot(report: BenchmarkReport, path: Path) -> Path:
    import matplotlib  # lazy: only reports plot: loaded there

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: only reports plot: loaded there

    names = [r["method"] for r in report.rows]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i - 0.2 for i in y], [r["recall@5"] for r in report.rows], height=0.4, label="Recall@5")
    ax.barh([i + 0.2 for i in y], [r["ndcg@5"] for r in report.rows], height=0.4, label="NDCG@5")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_title(f"NYC, {report.protocol}: every method on the same test requests")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
