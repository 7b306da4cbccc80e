"""SID reports for people: the quality numbers of a version, and plots of per-level code
usage, the bucket-size distribution and a map of first-level codes over item locations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pyspark.sql import functions as F

from geosid.jobs.index import version_row
from geosid.jobs.lake import Lake
from geosid.schemas import index


def quality_table(rows: list[dict]) -> str:
    """A markdown table comparing versions (one dict of index.sid_quality per row)."""
    head = "| method | codes | conflict | floor | exclusive | items alone | largest bucket | geo L1 km | geo L2 km | random km |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(
            f"| {r['method']} | {r['codes']} | {r['conflict_rate']:.2%} | {r['conflict_floor']:.2%} | {r['exclusive_rate']:.2%} | "
            f"{r['items_alone_rate']:.2%} | {r['largest_bucket']} | {fmt(r['geo_coherence_l1_km'])} | "
            f"{fmt(r['geo_coherence_l2_km'])} | {fmt(r['geo_baseline_km'])} |"
        )
    return "\n".join(lines)


def quality_row(lake: Lake, version: str) -> dict:
    row = lake.read(index.SID_QUALITY).filter(F.col("version") == version).collect()
    if not row:
        raise KeyError(f"no quality row for version {version}")
    out = row[0].asDict()
    row = version_row(lake, version)
    out["codes"] = " x ".join(str(s) for s in row["level_sizes"])
    out["conflict_floor"] = json.loads(row["metrics"]).get("conflict_floor", 0.0)
    return out


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sid_report(lake: Lake, version: str, out_dir: str | Path) -> tuple[str, list[Path]]:
    """Text report plus three PNG plots under out_dir; returns (text, plot paths)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    row = version_row(lake, version)
    quality = quality_row(lake, version)
    sizes = [int(s) for s in row["level_sizes"]]
    sid_map = lake.read(index.SID_MAP).filter(F.col("version") == version).select("codes", "lat", "lon").toPandas()
    codes = np.array(sid_map["codes"].tolist(), np.int64).reshape(len(sid_map), len(sizes))
    buckets = lake.read(index.SID_COLLISIONS).filter(F.col("version") == version).select("n_items").toPandas().n_items

    paths = []
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3))
    for level, ax in enumerate(np.atleast_1d(axes)):
        counts = np.sort(np.bincount(codes[:, level], minlength=sizes[level]))[::-1]
        ax.plot(counts)
        ax.set_title(f"level {level + 1}: {np.count_nonzero(counts)}/{sizes[level]} codes used")
        ax.set_xlabel("code (by frequency)")
        ax.set_ylabel("items")
    paths.append(_save(fig, out_dir / "code_usage.png"))

    fig, ax = plt.subplots(figsize=(5, 3))
    values, counts = np.unique(buckets, return_counts=True)
    ax.bar(values, counts)
    ax.set_yscale("log")
    ax.set_xlabel("items on one code tuple")
    ax.set_ylabel("code tuples")
    ax.set_title("bucket sizes")
    paths.append(_save(fig, out_dir / "bucket_sizes.png"))

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(sid_map.lon, sid_map.lat, c=codes[:, 0] % 20, cmap="tab20", s=2, linewidths=0)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title("first-level code of each item")
    paths.append(_save(fig, out_dir / "first_level_map.png"))

    metrics = json.loads(row["metrics"])
    text = "\n".join(
        [
            f"codebook version {version}: {row['method']}, status {row['status']}, codes {' x '.join(map(str, sizes))}",
            f"  trained on {row['n_items']:,} items of {row['model_id']} / {row['template_id']} (embeddings table version {row['embeddings_version']})",
            f"  items with SIDs  {quality['items']:,}   distinct code tuples {quality['sids']:,}",
            f"  conflict rate    {quality['conflict_rate']:.2%} (floor from identical embeddings: {metrics.get('conflict_floor', 0):.2%})",
            f"  exclusive rate   {quality['exclusive_rate']:.2%}",
            f"  items alone      {quality['items_alone_rate']:.2%}",
            f"  largest bucket   {quality['largest_bucket']}",
            f"  code usage       {', '.join(f'{u:.1%}' for u in quality['code_usage'])}",
            f"  perplexity       {', '.join(f'{p:.1f}' for p in quality['perplexity'])}",
            f"  geo coherence    L1 {quality['geo_coherence_l1_km'] or 0:.2f} km, L2 {quality['geo_coherence_l2_km'] or 0:.2f} km "
            f"(random pairs {quality['geo_baseline_km'] or 0:.2f} km)",
            f"  reconstruction   MSE {metrics.get('reconstruction_mse') or 0:.4f}, fit {metrics.get('fit_seconds', 0):.1f}s",
            f"  plots            {', '.join(str(p) for p in paths)}",
        ]
    )
    return text, paths
