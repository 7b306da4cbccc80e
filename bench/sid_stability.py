"""Codebook versions over time on real data: how many SIDs a re-fit keeps, naive vs aligned.

On a NYC lake (the demo's, ingested to 2013-01-15; geo and embed are run for the two
days here if they are missing), with the published method (residual k-means, capacity-
aware last level, the data-sized budget):

1. version V fit and published as of --old (2012-12-15); its SIDs given to the items
   that arrive up to --new (2013-01-15) as the daily runs would (one assignment of --new:
   its drift row is recorded too);
2. same items, another seed: a naive re-fit (seeds --seeds) and an aligned re-fit
   (`--align-to V`) as of --old;
3. a month later: the naive and the aligned re-fit as of --new.

Every candidate is reported with its stability against V (over V's items of --old, the
ones a downstream model trained on, and over all common items), its quality (conflict,
exclusive, geo coherence) and whether it passes the default publish gates: equal gates
for all. Results: bench/results/sid_stability.json.

    python bench/sid_stability.py --lake /tmp/demo-copy [--old 2012-12-15] [--new 2013-01-15]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
from pyspark.sql import functions as F
from results_io import write_results

from geosid import pipeline
from geosid.jobs.index import CodebookSpec, Gates, gate_failures, quality_row, version_metrics, version_row
from geosid.jobs.index.versions import sid_map_of
from geosid.quantization.stability import stability
from geosid.schemas import index, silver

SPEC = CodebookSpec("residual_kmeans", capacity_aware=True)


def ensure_day(ctx, day: str) -> None:
    """silver.item_geo and the embeddings of a day (skipped when there)."""
    have = {r.dt.isoformat() for r in ctx.lake.read(silver.ITEM_GEO).select("dt").distinct().collect()}
    if day not in have:
        pipeline.geo(day, ctx=ctx)
    pipeline.embed(day, ctx=ctx)  # embeds only what is new or changed


def against(ctx, reference: str, version: str, old_day: str) -> dict:
    """Stability of `version` against `reference` over reference's items of `old_day`
    (what a model trained on it knows) and over all common items."""
    old = sid_map_of(ctx.lake, reference).select("source", "item_id", F.col("codes").alias("a"), F.col("sid").alias("sa"), "assigned_dt")
    new = sid_map_of(ctx.lake, version).select("source", "item_id", F.col("codes").alias("b"), F.col("sid").alias("sb"))
    both = old.join(new, ["source", "item_id"]).orderBy("source", "item_id").toPandas()
    out = {}
    for name, rows in (("fit_items", both[both.assigned_dt.astype(str) == old_day]), ("common_items", both)):
        a, b = np.array(rows.a.tolist(), np.int64), np.array(rows.b.tolist(), np.int64)
        out[name] = stability(a, b, rows.sa.to_numpy(), rows.sb.to_numpy()).to_dict()
    return out


def candidate(ctx, spec: CodebookSpec, day: str, reference: str, old_day: str) -> dict:
    started = time.perf_counter()
    report = pipeline.fit_codebook(spec, day, ctx=ctx)
    seconds = time.perf_counter() - started
    version = report.codebook_version
    q = quality_row(ctx.lake, version)
    failures = gate_failures(version_metrics(version_row(ctx.lake, version)), Gates())
    return {
        "version": version,
        "seed": spec.seed,
        "aligned": spec.align_to is not None,
        "as_of": day,
        "items": int(q["items"]),
        "seconds": round(seconds, 1),
        "quality": {k: q[k] for k in ("conflict_rate", "exclusive_rate", "geo_coherence_l1_km", "geo_coherence_l2_km", "reconstruction_mse")},
        "gates_passed": not failures,
        "gate_failures": failures,
        "stability": against(ctx, reference, version, old_day),
    }


def spread(values: list[float]) -> dict:
    """Mean and range over the runs (seeds)."""
    values = [float(v) for v in values]
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(rows: list[dict]) -> dict:
    """The figures over V's items of --old, and the quality, as mean and range over the seeds."""
    fit = [r["stability"]["fit_items"] for r in rows]
    out = {
        "first_level_retention": spread([s["level_retention"][0] for s in fit]),
        "first_level_retention_matched": spread([s["level_retention_matched"][0] for s in fit]),
        "sid_retention": spread([s["sid_retention"] for s in fit]),
        "first_level_ari": spread([s["first_level_ari"] for s in fit]),
        "neighbour_overlap": spread([s["neighbour_overlap"] for s in fit]),
    }
    for key in ("conflict_rate", "exclusive_rate", "geo_coherence_l1_km"):
        out[key] = spread([r["quality"][key] for r in rows])
    out["gates_passed"] = sum(r["gates_passed"] for r in rows)
    out["runs"] = len(rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--old", default="2012-12-15")
    parser.add_argument("--new", default="2013-01-15")
    parser.add_argument("--seeds", default="7,11,13", help="the re-fits' seeds (V: the default seed)")
    parser.add_argument("--stickiness", type=float, default=SPEC.stickiness)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = pipeline.Settings(lake_root=args.lake)
    with pipeline.open_context(settings) as ctx:
        for day in (args.old, args.new):
            ensure_day(ctx, day)
        first = pipeline.fit_codebook(SPEC, args.old, ctx=ctx)
        v = first.codebook_version
        if version_row(ctx.lake, v)["status"] == "candidate":
            pipeline.publish_codebook(v, args.old, ctx=ctx)
        pipeline.assign_day(args.new, v, ctx=ctx)
        drift = ctx.lake.read(index.SID_DRIFT).filter(F.col("version") == v).toPandas().to_dict("records")
        aligned = dataclasses.replace(SPEC, align_to=v, stickiness=args.stickiness)
        runs = {"same_items": {"naive": [], "aligned": []}, "month_later": {"naive": [], "aligned": []}}
        for seed in seeds:
            runs["same_items"]["naive"].append(candidate(ctx, dataclasses.replace(SPEC, seed=seed), args.old, v, args.old))
            runs["same_items"]["aligned"].append(candidate(ctx, dataclasses.replace(aligned, seed=seed), args.old, v, args.old))
        for seed in (SPEC.seed, seeds[0]):  # the month-later fits: V's own seed, and another
            runs["month_later"]["naive"].append(candidate(ctx, dataclasses.replace(SPEC, seed=seed), args.new, v, args.old))
            runs["month_later"]["aligned"].append(candidate(ctx, dataclasses.replace(aligned, seed=seed), args.new, v, args.old))
        base = quality_row(ctx.lake, v)
        fit_items = int(version_row(ctx.lake, v)["n_items"])
        summary = {scenario: {kind: summarize(rows) for kind, rows in kinds.items()} for scenario, kinds in runs.items()}
    write_results(
        "sid_stability",
        {
            "lake": str(args.lake),
            "old": args.old,
            "new": args.new,
            "method": SPEC.label,
            "stickiness": args.stickiness,
            "version": v,
            "version_items": int(base["items"]),
            "version_fit_items": fit_items,
            "version_quality": {k: base[k] for k in ("conflict_rate", "exclusive_rate", "geo_coherence_l1_km", "geo_coherence_l2_km")},
            "drift": drift,
            "summary": summary,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
