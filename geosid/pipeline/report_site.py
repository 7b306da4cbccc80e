"""`geosid report`: a static HTML site of the lake for analysts, under
`<lake>/_reports/site/`: an index (tables with versions, rows and days; codebook
versions; corpus targets per protocol and split; training runs; benchmark results; recent
quality results), one page per codebook version and one per training run. Every page is
one self-contained file (CSS and plots inlined) that opens offline; every number on it is
read from the tables, the run records and the benchmark results, not computed again.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyspark.sql import Window
from pyspark.sql import functions as F

from geosid.jobs.index import codebook_versions, quality_row, version_metrics
from geosid.jobs.index.drift import drift_rows
from geosid.jobs.index.versions import stored_stability
from geosid.lake import Lake
from geosid.lake.data_docs import write_index
from geosid.lake.html import esc, figure, page, table
from geosid.pipeline.context import Context, use
from geosid.pipeline.lake_ops import tables
from geosid.schemas import bronze, corpus, index
from geosid.trainer.runs import RunRecord, list_runs

METRICS = ("acc@1", "recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "mrr@20", "geo_reward@10")
HEADERS = ("Acc@1", "R@5", "R@10", "R@20", "N@5", "N@10", "MRR@20", "geo reward@10")
NAV = (("lake", "index.html"),)


@dataclass
class SiteReport:
    folder: Path
    pages: list[Path] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.folder / "index.html"


def _plt():
    import matplotlib  # lazy: only reports plot: loaded there

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: only reports plot: loaded there

    return plt


def codebook_page(lake: Lake, version: str, versions) -> str:
    row = versions[versions["version"] == version].iloc[0].to_dict()
    quality = quality_row(lake, version)
    sizes = [int(s) for s in row["level_sizes"]]
    about = [
        {"field": k, "value": str(row.get(k))}
        for k in ("method", "status", "model_id", "template_id", "created_dt", "n_items", "embeddings_version", "item_geo_version", "params")
    ]
    about.append({"field": "codes per level", "value": " x ".join(map(str, sizes))})
    numbers = {k: quality[k] for k in ("items", "sids", "conflict_rate", "exclusive_rate", "items_alone_rate", "largest_bucket")}
    numbers["conflict_floor"] = version_metrics(row).get("conflict_floor", 0.0)
    levels = [
        {"level": i + 1, "codes": sizes[i], "usage": float(u), "perplexity": float(p)}
        for i, (u, p) in enumerate(zip(quality["code_usage"], quality["perplexity"]))
    ]
    buckets = lake.read(index.SID_COLLISIONS).filter(F.col("version") == version)
    histogram = buckets.groupBy("n_items").agg(F.count(F.lit(1)).alias("sids")).orderBy("n_items").toPandas()
    largest = buckets.filter(F.col("n_items") > 1).orderBy(F.col("n_items").desc(), F.col("sid")).limit(10).toPandas()
    described = _items(lake, [i for items in largest["items"] for i in items])
    largest_rows = [
        {"sid": r.sid, "items": int(r.n_items), "members": "; ".join(described.get(i, i) for i in r["items"][:8])} for _, r in largest.iterrows()
    ]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(histogram["n_items"].astype(str), histogram["sids"])
    ax.set_xlabel("items sharing a SID")
    ax.set_ylabel("SIDs")
    ax.set_yscale("log")
    bucket_plot = figure(fig, "bucket sizes")
    sid_map = lake.read(index.SID_MAP).filter(F.col("version") == version).select("codes", "lat", "lon").toPandas()
    first = np.array([c[0] for c in sid_map["codes"]])
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(sid_map["lon"], sid_map["lat"], c=first, cmap="tab20", s=2)
    ax.set_title("items coloured by their first-level code")
    map_plot = figure(fig, "first-level codes on the item map")
    compare = [quality_row(lake, v) for v in versions["version"] if _has_quality(lake, v)]
    body = (
        f"<h2>Method and inputs</h2>{table(about, ['field', 'value'], test_id='about')}"
        f"<h2>Collisions</h2>{table([numbers], list(numbers), test_id='quality')}"
        f"<h2>Levels</h2>{table(levels, ['level', 'codes', 'usage', 'perplexity'], test_id='levels')}"
        f"<h2>Bucket sizes</h2>{table(histogram.to_dict('records'), ['n_items', 'sids'], ['items per SID', 'SIDs'], test_id='buckets')}{bucket_plot}"
        f"<h2>Largest collision buckets</h2>{table(largest_rows, ['sid', 'items', 'members'], test_id='largest')}"
        f"<h2>First-level codes on the map</h2>{map_plot}"
        f"<h2>Compared with the other versions</h2>"
        + table(
            compare,
            ["version", "method", "codes", "conflict_rate", "conflict_floor", "exclusive_rate", "items_alone_rate", "largest_bucket"],
            links={"version": lambda r: f"codebook-{r['version']}.html"},
            test_id="compare",
        )
        + stability_section(lake, version)
    )
    return page(f"Codebook {version}", body, NAV)


STABILITY_COLUMNS = [
    "reference",
    "items",
    "sid_retention",
    "code_retention",
    "level_retention",
    "level_retention_matched",
    "first_level_ari",
    "neighbour_overlap",
]


def stability_section(lake: Lake, version: str) -> str:
    """The version's stability rows (against the version it was aligned to or compared
    with at fit, and the one it retired at publish), its migration and its drift."""
    rows = stored_stability(lake, version)
    out = "<h2>Stability against earlier versions</h2>"
    if rows.empty:
        out += "<p>No earlier version to compare with (the first version, or fitted before stability was measured).</p>"
    else:
        records = rows.to_dict("records")
        for r in records:
            for key in ("level_retention", "level_retention_matched"):
                r[key] = " / ".join(f"{v:.1%}" for v in r[key])
        headers = [
            "against",
            "common items",
            "SID kept",
            "code tuple kept",
            "kept per level",
            "matched per level",
            "first-level ARI",
            "neighbour overlap",
        ]
        out += table(records, STABILITY_COLUMNS, headers, links={"reference": lambda r: f"codebook-{r['reference']}.html"}, test_id="stability")
    if lake.exists(index.SID_MIGRATION):
        kinds = lake.read(index.SID_MIGRATION).filter(F.col("to_version") == version).groupBy("from_version", "kind").count().toPandas()
        if len(kinds):
            counts = {k: int(kinds[kinds.kind == k]["count"].sum()) for k in index.MIGRATION_KINDS}
            out += "<h2>SID migration</h2>" + table(
                [{"from": kinds.from_version.iloc[0], **counts}], ["from", *index.MIGRATION_KINDS], test_id="migration"
            )
    drift = drift_rows(lake, version)
    if len(drift):
        records = drift.assign(error_ratio=drift.quantization_mse / drift.fit_mse.where(drift.fit_mse > 0)).tail(30).to_dict("records")
        columns = ["dt", "new_items", "quantization_mse", "fit_mse", "error_ratio", "collision_rate", "fit_collision_rate"]
        out += "<h2>Drift (new items against the fit)</h2>" + table(records, columns, test_id="drift")
    return out


def _has_quality(lake: Lake, version: str) -> bool:
    return lake.exists(index.SID_QUALITY) and lake.read(index.SID_QUALITY).filter(F.col("version") == version).limit(1).count() > 0


def _items(lake: Lake, item_ids: list[str]) -> dict[str, str]:
    """item id -> 'title (category) at lat, lon' from the latest bronze.items row."""
    if not item_ids or not lake.exists(bronze.ITEMS):
        return {}
    latest = Window.partitionBy("source", "item_id").orderBy(F.col("dt").desc())
    rows = (
        lake.read(bronze.ITEMS)
        .filter(F.col("item_id").isin(item_ids))
        .withColumn("_r", F.row_number().over(latest))
        .filter("_r = 1")
        .select("item_id", "title", "category", "lat", "lon")
        .collect()
    )
    return {r.item_id: f"{r.title or r.item_id} ({r.category or '?'}) at {r.lat:.4f}, {r.lon:.4f}" for r in rows}


def run_page(record: RunRecord, sweep: str | None = None) -> str:
    cfg = record.train_config
    about = [
        {"field": k, "value": str(v)}
        for k, v in (
            ("kind", record.kind),
            ("parent", record.parent),
            ("model", cfg.get("model")),
            ("protocol", cfg.get("protocol")),
            ("size", cfg.get("size")),
            ("codebook version", record.codebook_version),
            ("device", record.device),
            ("parameters", f"{record.parameters:,}"),
            ("rows", record.rows),
            ("seconds", record.seconds),
        )
    ]
    pinned = [{"table": k, "version": v} for k, v in sorted(record.table_versions.items())]
    body = f"<h2>Run</h2>{table(about, ['field', 'value'], test_id='about')}<h2>Pinned table versions</h2>{table(pinned, ['table', 'version'], test_id='pinned')}"
    evaluation = record.metrics.get("eval")
    if evaluation:
        rows = [{"method": name, **{m: evaluation[name].get(m) for m in METRICS}} for name in evaluation if isinstance(evaluation[name], dict)]
        body += f"<h2>Results ({esc(evaluation.get('split'))} split, {evaluation.get('requests', 0):,} requests)</h2>" + table(
            rows, ["method", *METRICS], ["method", *HEADERS], test_id="results"
        )
    epochs = record.metrics.get("epochs") or []
    if epochs:
        plt = _plt()
        valid = [k for k in epochs[0] if k.startswith("valid_")]
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot([e["epoch"] for e in epochs], [e["loss"] for e in epochs], marker="o", label="train loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        if valid:
            twin = ax.twinx()
            twin.plot([e["epoch"] for e in epochs], [e[valid[0]] for e in epochs], marker="s", color="C1", label=valid[0])
            twin.set_ylabel(valid[0])
        body += f"<h2>Training</h2>{table(epochs, list(epochs[0]), test_id='epochs')}{figure(fig, 'training curves')}"
    dpo = record.metrics.get("dpo") or []
    if dpo:
        body += f"<h2>DPO per epoch</h2>{table(dpo, list(dpo[0]), test_id='dpo')}"
    if record.kind == "dpo" and record.parent_eval and evaluation:
        mine, before = evaluation.get("oneloc", {}), record.parent_eval.get("oneloc", {})
        rows = [
            {"model": f"pretrained ({record.parent})", **{m: before.get(m) for m in TRADE_OFF}},
            {"model": "this run", **{m: mine.get(m) for m in TRADE_OFF}},
        ]
        body += f"<h2>Against the pretrained model</h2>{table(rows, ['model', *TRADE_OFF], test_id='vs-parent')}"
    return page(f"Run {record.run_id}", body + (sweep or ""), NAV)


TRADE_OFF = ("recall@5", "ndcg@5", "geo_reward@10", "gmv@10")


def sweep_section(reports: Path, run_id: str) -> str | None:
    """A DPO sweep from this pretrained run (geosid train dpo --sweep): its table and plot."""
    folder = reports / "dpo_sweep" / run_id
    if not (folder / "results.json").exists():
        return None
    rows = json.loads((folder / "results.json").read_text())
    plot = folder / "results.png"
    image = f'<img alt="DPO trade-off" src="data:image/png;base64,{base64.b64encode(plot.read_bytes()).decode()}">' if plot.exists() else ""
    columns = ["label", "steps", *TRADE_OFF, "heldout_accuracy", "heldout_margin", "minutes"]  # steps: which control is whose
    return f"<h2>DPO trade-off (sweep from this run)</h2>{table(rows, columns, test_id='dpo-sweep')}{image}"


def corpus_section(lake: Lake) -> str:
    """Targets, users, days, history lengths and repeat targets per codebook version,
    protocol and split (one pass over corpus.training_sequences), targets per day and the
    history-length distribution as plots, and the builds' own counts of events left out."""
    if not lake.exists(corpus.TRAINING_SEQUENCES):
        return "<p>No corpus yet (geosid corpus build).</p>"
    history = F.flatten(F.transform("histories", lambda h: F.transform(h["events"], lambda e: e["item_id"])))
    rows = lake.read(corpus.TRAINING_SEQUENCES).select(
        "codebook_version",
        F.coalesce("protocol", F.lit("time")).alias("protocol"),
        "split",
        "dt",
        "user_id",
        F.size(history).alias("history"),
        F.array_contains(history, F.col("target_item_id")).cast("int").alias("repeat"),
    )
    keys = ["codebook_version", "protocol", "split"]
    summary = (
        rows.groupBy(*keys)
        .agg(
            F.count(F.lit(1)).alias("targets"),
            F.countDistinct("user_id").alias("users"),
            F.countDistinct("dt").alias("days"),
            F.min("dt").alias("first"),
            F.max("dt").alias("last"),
            F.avg("history").alias("mean history"),
            F.avg("repeat").alias("repeat share"),
        )
        .orderBy(*keys)
        .toPandas()
    )
    per_day = rows.groupBy(*keys, "dt").agg(F.count(F.lit(1)).alias("targets")).orderBy("dt").toPandas()
    lengths = rows.groupBy("protocol", "history").agg(F.count(F.lit(1)).alias("targets")).orderBy("history").toPandas()
    records = [{**r, "first": str(r["first"]), "last": str(r["last"])} for r in summary.to_dict("records")]
    plt = _plt()
    scopes = summary[["codebook_version", "protocol"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(len(scopes), 1, figsize=(7, 2.2 * len(scopes)), squeeze=False)
    for ax, (version, protocol) in zip(axes[:, 0], scopes):
        mine = per_day[(per_day["codebook_version"] == version) & (per_day["protocol"] == protocol)]
        for split, part in mine.groupby("split"):
            ax.plot(part["dt"], part["targets"], label=split, lw=1)
        ax.set_title(f"{protocol} under {version}", fontsize=9)
        ax.set_ylabel("targets / day")
        ax.legend(fontsize=7)
    fig.autofmt_xdate()
    days_plot = figure(fig, "targets per day and split")
    fig, ax = plt.subplots(figsize=(7, 3))
    for protocol, part in lengths.groupby("protocol"):
        ax.plot(part["history"], part["targets"] / part["targets"].sum(), label=protocol, lw=1)
    ax.set_xlabel("history events (all behaviors) at the target")
    ax.set_ylabel("share of targets")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    lengths_plot = figure(fig, "history lengths")
    columns = ["codebook_version", "protocol", "split", "targets", "users", "days", "first", "last", "mean history", "repeat share"]
    builds = _builds(lake.reports_dir("corpus", "builds"))
    return (
        table(records, columns, test_id="corpus")
        + '<p class="note">repeat share: targets whose item is in the history the row carries.</p>'
        + f"<h3>Targets per day</h3>{days_plot}<h3>History lengths</h3>{lengths_plot}"
        + "<h3>Events left out, and why (the builds' own counts)</h3>"
        + (table(builds, BUILD_COLUMNS, test_id="left-out") if builds else "<p>No build report yet (the corpus step writes one per build).</p>")
    )


BUILD_COLUMNS = [
    "codebook_version",
    "protocol",
    "mode",
    "days",
    "input_events",
    "events_filtered",
    "events_without_sid",
    "targets_without_location",
    "targets",
]


def _builds(folder: Path, newest: int = 20) -> list[dict]:
    """The newest corpus builds' reports (written by the corpus step into `folder`)."""
    found = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    out = []
    for path in found[:newest]:
        build = json.loads(path.read_text())
        out.append({**build, "days": build["first"] if build["first"] == build["last"] else f"{build['first']} .. {build['last']}"})
    return out


def _quality_rows(root: Path, limit: int = 30) -> list[dict]:
    found = sorted((root / "_quality").glob("**/result.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]
    out = []
    for path in found:
        result = json.loads(path.read_text())
        passed = sum(1 for c in result["checks"] if c["success"])
        out.append(
            {
                "table": result["table"],
                "days": f"{result['first']} .. {result['last']}" if result["first"] else "whole table",
                "outcome": "PASS" if result["success"] else "FAIL",
                "checks": f"{passed}/{len(result['checks'])}",
                "rows": result["rows"],
                "_href": f"../../_quality/docs/{result['docs']}" if result.get("docs") else "../../" + path.relative_to(root).as_posix(),
            }
        )
    return out


def _benchmarks(root: Path, reports: Path) -> str:
    parts = []
    for path in sorted(reports.glob("benchmark/*/results.json")):
        result = json.loads(path.read_text())
        protocol = path.parent.name
        stats = result.get("stats", {})
        head = f'<h3>{esc(protocol)}</h3><p class="note">targets {esc(stats.get("targets"))}; from {esc(path.relative_to(root))}</p>'
        parts.append(
            head
            + table(
                result["rows"], ["method", *METRICS, "setting", "epochs"], ["method", *HEADERS, "setting", "epochs"], test_id=f"benchmark-{protocol}"
            )
        )
    return "".join(parts) or "<p>No benchmark yet (geosid train benchmark).</p>"


def build_report(infos: list | None = None, *, ctx: Context | None = None, lake_root: str | None = None) -> SiteReport:
    """Write the site (see the module doc); returns where its pages are. `infos`: the
    lake's `tables()` when the caller already has them (counting every table is a scan)."""
    with use(ctx, lake_root, reads="build_report") as ctx:
        lake = ctx.lake
        out = SiteReport(lake.reports_dir("site"))
        out.folder.mkdir(parents=True, exist_ok=True)
        versions = codebook_versions(lake)
        runs = list_runs(lake.root)
        for version in versions["version"]:
            if _has_quality(lake, version):
                out.pages.append(_write(out.folder / f"codebook-{version}.html", codebook_page(lake, version, versions)))
        for record in runs:
            out.pages.append(_write(out.folder / f"run-{record.run_id}.html", run_page(record, sweep_section(lake.reports_dir(), record.run_id))))
        infos = [
            {
                "table": t.name,
                "version": t.table_version,
                "rows": t.rows if t.table_version is not None else None,
                "days": t.days,
                "first": str(t.first or ""),
                "last": str(t.last or ""),
            }
            for t in (infos if infos is not None else tables(ctx=ctx))
        ]
        with_pages = {p.name for p in out.pages}
        version_rows = [{k: str(r[k]) for k in ("version", "method", "status", "created_dt", "template_id")} for _, r in versions.iterrows()]
        run_rows = [
            {"run": r.run_id, "kind": r.kind, "model": r.train_config.get("model"), "protocol": r.train_config.get("protocol"), **_headline(r)}
            for r in runs
        ]
        quality = _quality_rows(lake.root)
        docs = write_index(lake.root) if quality else None  # Data Docs' index, also for results from before it existed
        body = (
            f"<h2>Tables</h2>{table(infos, ['table', 'version', 'rows', 'days', 'first', 'last'], test_id='tables')}"
            "<h2>Codebook versions</h2>"
            + table(
                version_rows,
                ["version", "method", "status", "created_dt", "template_id"],
                links={"version": lambda r: f"codebook-{r['version']}.html" if f"codebook-{r['version']}.html" in with_pages else None},
                test_id="versions",
            )
            + f"<h2>Corpus</h2>{corpus_section(lake)}"
            + "<h2>Training runs</h2>"
            + table(
                run_rows, ["run", "kind", "model", "protocol", "recall@5", "ndcg@5"], links={"run": lambda r: f"run-{r['run']}.html"}, test_id="runs"
            )
            + f"<h2>Benchmarks</h2>{_benchmarks(lake.root, lake.reports_dir())}"
            + "<h2>Recent quality results</h2>"
            + (
                f'<p><a href="../../{docs.relative_to(lake.root).as_posix()}">Data Docs</a>: every validation rendered by great-expectations; '
                "the outcome links to its page.</p>"
                if docs
                else ""
            )
            + table(quality, ["table", "days", "outcome", "checks", "rows"], links={"outcome": lambda r: r["_href"]}, test_id="quality")
        )
        out.pages.insert(0, _write(out.index, page(f"geosid lake {lake.root}", body)))
        ctx.log(f"report: {len(out.pages)} page(s) under {out.folder}; open {out.index}")
        return out


def _headline(record: RunRecord) -> dict:
    """R@5 and N@5 of a run's own model on test (none before it is evaluated)."""
    if not record.evaluated:
        return {}
    model = record.train_config.get("model")
    metrics = record.metrics["eval"].get(model if model in ("sasrec", "gru") else "oneloc", {})
    return {"recall@5": metrics.get("recall@5"), "ndcg@5": metrics.get("ndcg@5")}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
