"""The recommendation benchmark: every method on the same test requests of one split
protocol, like Table 1 of the OneLoc paper and the next-POI papers' tables (Acc@1/5/10/20,
MRR, Recall and NDCG @5/10/20).

For a protocol (trajectory, user_chrono or libcity; see `geosid.jobs.corpus.SplitConfig`):

1. the corpus of the whole source under the published geo-aware codebook version, and
   under a text-only version (a capacity-aware residual k-means on `content-v1`, the
   items' content without any place), both with the protocol's targets and splits;
2. the non-learned baselines (most popular, nearest popular, repeat, recent, Markov on
   train transitions, Markov on the user's own), scored by each run of the benchmark;
   the learned models SASRec, a GRU with time and place features (the classic
   recurrent next-POI model), TIGER (the SID decoder with every geo part off, on
   text-only SIDs) and OneLoc, each trained on the same
   grid (`GRID`: learning rate, dropout, width, one at a time around its defaults), each
   point until its valid metric stops improving (patience), the point with the best
   valid N@10 chosen by the same rule for every model; OneLoc and the best learned
   baseline (by valid) again with more seeds at their chosen points (mean and standard
   deviation); with ablations, OneLoc + DPO (and its lambda-0 control) and OneLoc
   without geo-aware attention, without the neighbour prompt and without geo-aware SIDs,
   at OneLoc's chosen point (and, with `paper_decoder`, OneLoc as the paper has it);
   every model is scored once on test, with the weights of its best valid epoch;
3. Markdown tables (results, seeds, grid, the papers' reported numbers) and a plot under
   `<lake>/_reports/benchmark/<protocol>/`. Finished runs are reused, so a resumed
   benchmark trains only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from pyspark.sql import functions as F

from geosid.errors import NotFoundError
from geosid.jobs.index import CodebookSpec, published_version
from geosid.lake import as_date
from geosid.pipeline.benchmark_report import BenchmarkReport, plot, render
from geosid.pipeline.context import Context
from geosid.pipeline.corpus import corpus_build, source_days, split_config
from geosid.pipeline.index import fit_codebook
from geosid.pipeline.silver import embed
from geosid.schemas import corpus as corpus_tables
from geosid.trainer.config import TrainConfig
from geosid.trainer.dpo import dpo as run_dpo
from geosid.trainer.evaluation import baseline_scores, is_repeat
from geosid.trainer.loading import load_corpus
from geosid.trainer.model import OneLocConfig
from geosid.trainer.rewards import gmv_scorer
from geosid.trainer.runs import RunRecord, find_run
from geosid.trainer.training import pretrain as run_pretrain

__all__ = ["GRID", "METHODS", "BenchmarkReport", "benchmark"]


@dataclass(frozen=True)
class Method:
    label: str
    model: str  # a TrainConfig model kind
    sids: str  # "geo" (the published version) or "text" (the text-only one)
    ablation: tuple = ()  # (OneLocConfig switch, value) pairs
    tuned: bool = True  # trained on the grid (the ablations take OneLoc's chosen point)

    def config(self, base: TrainConfig, setting: dict, seed: int = 0) -> TrainConfig:
        return dataclasses.replace(base, model=self.model, ablation=dict(self.ablation), seed=seed, **setting)

    def run_id(self, protocol: str, setting: dict, seed: int = 0) -> str:
        slug = self.label.lower().replace(" ", "-").replace("(", "").replace(")", "").replace(",", "").replace("+", "")
        suffix = "".join(f"-{k}{v:g}" if isinstance(v, float) else f"-{k}-{v}" for k, v in sorted(setting.items()))
        return f"bench-{protocol}-{slug}{suffix}" + (f"-seed{seed}" if seed else "")


METHODS = (
    Method("SASRec", "sasrec", "geo"),
    Method("GRU (time and cell features)", "gru", "geo"),
    Method("TIGER (text-only SIDs, no geo parts)", "tiger", "text"),
    Method("OneLoc", "oneloc", "geo"),
)
ABLATIONS = (
    Method("OneLoc w/o geo-aware attention", "oneloc", "geo", (("location_scores", False), ("location_gate", False)), False),
    Method("OneLoc w/o neighbour prompt", "oneloc", "geo", (("prompt", "pointwise"),), False),
    Method("OneLoc w/o geo-aware SIDs", "oneloc", "text", (), False),
)
# Our additions to the paper's model, switched off (`--paper-decoder`: one more run).
PAPER_DECODER = Method(
    "OneLoc as in the paper (no copy head, time, repeat or routine features, candidates)",
    "oneloc",
    "geo",
    (("copy_head", False), ("time_features", False), ("repeat_features", False), ("routine_features", False), ("candidates", False)),
    False,
)
# The grid every learned model gets: its defaults, then one change at a time.
GRID: tuple[dict, ...] = ({}, {"lr": 3e-3}, {"dropout": 0.3}, {"size": "small"})
BASELINE_ROWS = (
    ("most popular", "most_popular"),
    ("nearest popular", "nearest_popular"),
    ("repeat", "repeat"),
    ("recent", "recent"),
    ("Markov (train transitions)", "markov"),
    ("Markov (user's own)", "markov_user"),
)


def setting_name(setting: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(setting.items())) or "defaults"


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


def _prepare(ctx: Context, protocol: str, source: str, report: BenchmarkReport, base: TrainConfig) -> dict:
    """The protocol's corpora under the geo and text-only versions; the report's stats and
    the rules' rows, scored now (a reused run's record holds the rules of its day's code)."""
    first, last = source_days(ctx, source)
    geo = published_version(ctx.lake)
    if geo is None:
        raise NotFoundError("no published codebook version: run the demo (or build the index) first")
    versions = {"geo": geo, "text": _text_version(ctx, as_date(last), ctx.log)}
    split = split_config(protocol, last)
    for kind, version in versions.items():
        with ctx.stage(f"{protocol} corpus under the {kind} SIDs ({version})", timed=f"corpus {protocol} {kind}"):
            corpus_build(source, first, last, version, split, validate=kind == "geo", ctx=ctx)
    sequences = ctx.lake.read(corpus_tables.TRAINING_SEQUENCES).filter(F.col("codebook_version") == geo)
    users = sequences.filter(F.col("protocol") == protocol).select("user_id").distinct().count()
    data = load_corpus(ctx.lake.root, geo, None, 50, protocol=protocol)
    report.stats = {**_stats(data, protocol), "users": users, "codebook_versions": versions}
    report.rules = baseline_scores(data, data.splits["test"], base, gmv_of=gmv_scorer(data, base)[0])
    return versions


def _result(record: RunRecord, minutes: float, method: Method, setting: dict) -> dict:
    return {
        "eval": record.metrics["eval"],
        "minutes": minutes,
        "run_id": record.run_id,
        "model": method.model,
        "epochs": len(record.metrics.get("epochs", [])),
        "best_epoch": record.metrics.get("best_epoch"),
        "valid": record.metrics.get("best_valid"),
        "setting": setting_name(setting),
    }


def _metrics(result: dict) -> dict:
    """The test metrics of a result's model (the ranker's key, else oneloc)."""
    return result["eval"][result["model"] if result["model"] in ("sasrec", "gru") else "oneloc"]


def benchmark(
    protocol: str = "user_chrono",
    source: str = "tsmc2014",
    size: str = "tiny",
    epochs: int = 30,
    max_minutes: float = 20.0,
    *,
    ablations: bool = True,
    paper_decoder: bool = False,
    grid: tuple[dict, ...] = GRID,
    seeds: int = 3,
    ctx: Context,
) -> BenchmarkReport:
    """Build the protocol's corpora, tune, train and score every method (see the module
    doc). `max_minutes` is each run's training budget (epochs stop early on valid anyway);
    `grid` the settings every learned model is tried at (`({},)`: defaults only); `seeds`
    how many seeds OneLoc and the best learned baseline run at their chosen points;
    without `ablations` no DPO and no ablations."""

    report = BenchmarkReport(protocol)
    base = TrainConfig.from_options(
        size=size, epochs=epochs, max_minutes=max_minutes, protocol=protocol, max_history=50, patience=3, eval_limit=None, batch_size=256
    )
    for setting in grid:  # a bad grid point fails now, not after an hour of training
        METHODS[0].config(base, setting)
    versions = _prepare(ctx, protocol, source, report, base)
    bench = _Bench(ctx, protocol, report, versions, base)
    chosen = {method.label: bench.tune(method, grid) for method in METHODS}
    baselines = [m for m in METHODS if m.label != "OneLoc"]
    best_baseline = max(baselines, key=lambda m: bench.results[m.label]["valid"] or 0.0)
    for method in (METHODS[-1], best_baseline):
        bench.seeds(method, chosen[method.label], seeds)
    if ablations:  # DPO first: it answers the first question after the main rows
        bench.align(chosen["OneLoc"])
    for method in (ABLATIONS if ablations else ()) + ((PAPER_DECODER,) if paper_decoder else ()):
        bench.add(method, chosen["OneLoc"])
    ctx.log(report.markdown)
    return report


class _Bench:
    """One protocol's runs: trained or reused, kept as results, published after each."""

    def __init__(self, ctx: Context, protocol: str, report: BenchmarkReport, versions: dict, base: TrainConfig):
        self.ctx, self.protocol, self.report, self.versions, self.base = ctx, protocol, report, versions, base
        self.results: dict[str, dict] = {}
        self.out = ctx.lake.reports_dir("benchmark", protocol)
        self.out.mkdir(parents=True, exist_ok=True)

    def train(self, method: Method, setting: dict, seed: int = 0) -> dict:
        """One run (reused when it finished with this exact config and version): its result."""
        cfg, run_id = method.config(self.base, setting, seed), method.run_id(self.protocol, setting, seed)
        version = self.versions[method.sids]
        with self.ctx.stage(f"{self.protocol}: {method.label} [{setting_name(setting)}, seed {seed}]", timed=f"{self.protocol} {run_id}"):
            started = time.perf_counter()
            record = _finished(self.ctx.lake.root, run_id, cfg, version)
            if record is None:
                record = run_pretrain(self.ctx.lake.root, cfg, codebook_version=version, run_id=run_id, log=self.ctx.log)
            else:
                self.ctx.log(f"    reusing the finished run {run_id} (same training config and codebook version)")
        return _result(record, round((record.seconds or time.perf_counter() - started) / 60, 1), method, setting)

    def add(self, method: Method, setting: dict) -> None:
        """A row trained at a given point (the ablations: OneLoc's chosen one)."""
        self.results[method.label] = self.train(method, setting)
        self.publish()

    def tune(self, method: Method, grid: tuple[dict, ...]) -> dict:
        """Every grid point; the one with the best valid metric is the method's row."""
        points = [(setting, self.train(method, setting)) for setting in grid]
        setting, best = max(points, key=lambda p: p[1]["valid"] if p[1]["valid"] is not None else float("-inf"))
        for point_setting, result in points:
            self.report.grid.append(
                {
                    "method": method.label,
                    **{k: result[k] for k in ("setting", "valid", "epochs", "best_epoch", "minutes", "run_id")},
                    "chosen": point_setting == setting,
                }
            )
        self.results[method.label] = best
        self.publish()
        return setting

    def seeds(self, method: Method, setting: dict, seeds: int) -> None:
        if seeds < 2:
            return
        runs = [_metrics(self.results[method.label])] + [_metrics(self.train(method, setting, seed)) for seed in range(1, seeds)]
        self.report.seeds.append({"method": method.label, "setting": setting_name(setting), "runs": runs})
        self.publish()

    def align(self, setting: dict) -> None:
        """DPO from the chosen OneLoc run, and its lambda-0 control with the same extra steps."""
        main = find_run(self.ctx.lake.root, self.results["OneLoc"]["run_id"])
        aligned_cfg = dataclasses.replace(METHODS[-1].config(self.base, setting), dpo_requests=6000, dpo_epochs=3)
        for label, lam in (("OneLoc + DPO", aligned_cfg.dpo_lambda), ("OneLoc + same steps, lambda 0", 0.0)):
            with self.ctx.stage(f"{self.protocol}: {label}", timed=f"{self.protocol} {label}"):
                started = time.perf_counter()
                dpo_cfg, dpo_run = dataclasses.replace(aligned_cfg, dpo_lambda=lam), f"{main.run_id}-dpo-{lam:g}"
                record = _finished(self.ctx.lake.root, dpo_run, dpo_cfg, self.versions["geo"], parent=main.run_id)
                if record is None:
                    record = run_dpo(self.ctx.lake.root, main.run_id, cfg=dpo_cfg, log=self.ctx.log, run_id=dpo_run)
            self.results[label] = {
                "eval": record.metrics["eval"],
                "minutes": round((record.seconds or time.perf_counter() - started) / 60, 1),
                "run_id": record.run_id,
                "model": "oneloc",
                "setting": setting_name(setting),
            }
            self.publish()

    def publish(self) -> None:
        """The tables of the runs so far (rewritten after each: a long benchmark shows progress)."""
        report, results = self.report, self.results
        report.rows = [{"method": label, **report.rules[key]} for label, key in BASELINE_ROWS]
        for label, result in results.items():
            report.rows.append(
                {"method": label, **_metrics(result), **{k: result.get(k) for k in ("minutes", "run_id", "epochs", "best_epoch", "setting")}}
            )
        report.markdown = render(report)
        (self.out / "results.md").write_text(report.markdown + "\n")
        payload = {"stats": report.stats, "rows": report.rows, "grid": report.grid, "seeds": report.seeds}
        (self.out / "results.json").write_text(json.dumps(payload, indent=2, default=str))
        report.paths = [self.out / "results.md", self.out / "results.json", plot(report, self.out / "results.png")]


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
    same = (
        same_config
        and switches <= set(record.model_config)
        and record.codebook_version == codebook_version
        and (parent is None or record.parent == parent)
    )
    return record if same and record.evaluated else None
