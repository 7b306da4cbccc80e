"""Index quality: the per-version quality rows (conflict / exclusive rates, code usage,
bucket sizes), the comparison table, and the SID report with its plots.
"""

from __future__ import annotations

import datetime as dt_
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.errors import NotFoundError
from geosid.jobs.index.registry import version_metrics, version_row
from geosid.lake import Lake
from geosid.quantization.metrics import sid_quality
from geosid.quantization.plots import bucket_size_plot, code_usage_plot, first_level_map
from geosid.schemas import index


def sid_key(codes: str = "codes") -> F.Column:
    """The code tuple as text, '12-503-77' (a SID without its disambiguation digit)."""
    return F.concat_ws("-", F.col(codes).cast("array<string>"))


def collisions(sid_map: DataFrame) -> DataFrame:
    """index.sid_collisions rows from index.sid_map rows."""
    return sid_map.groupBy("version", sid_key().alias("sid")).agg(
        F.count(F.lit(1)).alias("n_items"),
        F.sort_array(F.collect_list("item_id")).alias("items"),
    )


def version_fit_seconds(row: dict) -> float:
    """A version row's fit time (versions written before it had a column: in the metrics)."""
    seconds = row.get("fit_seconds")
    if seconds is None or seconds != seconds:  # missing or NaN
        seconds = version_metrics(row).get("fit_seconds", 0.0)
    return float(seconds)


def write_quality(lake: Lake, codebook_version: str, as_of: dt_.date) -> dict:
    """Recompute index.sid_collisions and index.sid_quality of a version from its SID map
    (computed_dt: the latest day the map holds SIDs of, a function of the map alone, so a
    re-run of an earlier day leaves the row as it was; `as_of` for an empty map)."""
    row = version_row(lake, codebook_version)
    where = f"version = '{codebook_version}'"
    sid_map = lake.read(index.SID_MAP).filter(F.col("version") == codebook_version)
    lake.write(collisions(sid_map), index.SID_COLLISIONS, where=where)
    # A fixed row order: the geo-coherence pairs are sampled by position.
    local = sid_map.orderBy("source", "item_id").select("codes", "lat", "lon", "assigned_dt").toPandas()
    if len(local):
        as_of = max(local["assigned_dt"])
    sizes = tuple(int(s) for s in row["level_sizes"])
    codes = np.array(local["codes"].tolist(), np.int64).reshape(len(local), len(sizes))
    metrics = sid_quality(codes, sizes, local["lat"].to_numpy(), local["lon"].to_numpy())
    fit_metrics = version_metrics(row)
    quality = (
        codebook_version,
        row["method"],
        metrics["items"],
        metrics["sids"],
        metrics["conflict_rate"],
        metrics["exclusive_rate"],
        metrics["items_alone_rate"],
        metrics["largest_bucket"],
        [float(v) for v in metrics["code_usage"]],
        [float(v) for v in metrics["perplexity"]],
        metrics.get("geo_coherence_l1_km"),
        metrics.get("geo_coherence_l2_km"),
        metrics.get("geo_baseline_km"),
        fit_metrics.get("reconstruction_mse"),
        as_of,
    )
    lake.write(lake.spark.createDataFrame([quality], index.SID_QUALITY.schema), index.SID_QUALITY, where=where)
    return metrics


def quality_row(lake: Lake, codebook_version: str) -> dict:
    """A version's index.sid_quality row, with its code budget and identical-vector floor."""
    version_info = version_row(lake, codebook_version)
    rows = lake.read(index.SID_QUALITY).filter(F.col("version") == codebook_version).collect() if lake.exists(index.SID_QUALITY) else []
    if not rows:
        raise NotFoundError(f"codebook version {codebook_version} has no quality row yet: assign its SIDs first")
    out = rows[0].asDict()
    out["codes"] = " x ".join(str(s) for s in version_info["level_sizes"])
    out["conflict_floor"] = version_metrics(version_info).get("conflict_floor", 0.0)
    out["template_id"] = version_info["template_id"]
    return out


def quality_table(rows: list[dict]) -> str:
    """A markdown table comparing versions (one dict of `quality_row` per row)."""
    head = (
        "| version | method | vectors | codes | conflict | floor | exclusive | items alone | largest bucket | code usage per level "
        "| geo L1 km | geo L2 km | random km | recon. MSE |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        usage = " / ".join(f"{u:.0%}" for u in r["code_usage"])
        mse = "-" if r.get("reconstruction_mse") is None else f"{r['reconstruction_mse']:.4f}"
        lines.append(
            f"| {r['version']} | {r['method']} | {r['template_id']} | {r['codes']} | {r['conflict_rate']:.2%} | {r['conflict_floor']:.2%} | "
            f"{r['exclusive_rate']:.2%} | {r['items_alone_rate']:.2%} | {r['largest_bucket']} | {usage} | "
            f"{fmt(r['geo_coherence_l1_km'])} | {fmt(r['geo_coherence_l2_km'])} | {fmt(r['geo_baseline_km'])} | {mse} |"
        )
    return "\n".join(lines)


def sid_report(lake: Lake, codebook_version: str, out_dir: str | Path) -> tuple[str, list[Path]]:
    """Text report of a version plus three PNG plots under out_dir; returns (text, plot paths)."""
    row = version_row(lake, codebook_version)
    quality = quality_row(lake, codebook_version)
    sizes = [int(s) for s in row["level_sizes"]]
    sid_map = lake.read(index.SID_MAP).filter(F.col("version") == codebook_version).select("codes", "lat", "lon").toPandas()
    codes = np.array(sid_map["codes"].tolist(), np.int64).reshape(len(sid_map), len(sizes))
    buckets = lake.read(index.SID_COLLISIONS).filter(F.col("version") == codebook_version).select("n_items").toPandas().n_items
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        code_usage_plot(codes, sizes, out_dir / "code_usage.png"),
        bucket_size_plot(buckets.to_numpy(), out_dir / "bucket_sizes.png"),
        first_level_map(codes[:, 0], sid_map.lat.to_numpy(), sid_map.lon.to_numpy(), out_dir / "first_level_map.png"),
    ]
    metrics = version_metrics(row)
    item_geo = row.get("item_geo_version")
    pinned = f"embeddings table version {row['embeddings_version']}" + (
        f", item_geo table version {int(item_geo)}" if item_geo is not None and not pd.isna(item_geo) else ""
    )
    text = "\n".join(
        [
            f"codebook version {codebook_version}: {row['method']}, status {row['status']}, codes {' x '.join(map(str, sizes))}",
            f"  trained on {row['n_items']:,} items of {row['model_id']} / {row['template_id']} as of {row['created_dt']} ({pinned})",
            f"  items with SIDs  {quality['items']:,}   distinct code tuples {quality['sids']:,}",
            f"  conflict rate    {quality['conflict_rate']:.2%} (floor from identical embeddings: {metrics.get('conflict_floor', 0):.2%})",
            f"  exclusive rate   {quality['exclusive_rate']:.2%}",
            f"  items alone      {quality['items_alone_rate']:.2%}",
            f"  largest bucket   {quality['largest_bucket']}",
            f"  code usage       {', '.join(f'{u:.1%}' for u in quality['code_usage'])}",
            f"  perplexity       {', '.join(f'{p:.1f}' for p in quality['perplexity'])}",
            f"  geo coherence    L1 {quality['geo_coherence_l1_km'] or 0:.2f} km, L2 {quality['geo_coherence_l2_km'] or 0:.2f} km "
            f"(random pairs {quality['geo_baseline_km'] or 0:.2f} km)",
            f"  reconstruction   MSE {metrics.get('reconstruction_mse') or 0:.4f}, fit {version_fit_seconds(row):.1f}s",
            f"  plots            {', '.join(str(p) for p in paths)}",
        ]
    )
    return text, paths
