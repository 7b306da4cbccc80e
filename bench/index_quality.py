"""SID index quality and cost, side by side, on the same vectors.

NYC (from a lake the demo built): text-only vectors (geo-doc-v1) against geo-aware ones
(geo-doc-v2, as stored by the embed job), for residual k-means and ResKmeansFSQ with
nearest codes and with the capacity-aware last level, at the data-sized budget and at
OneMall's shape (two k-means levels, an FSQ level of 4096 codes; residual k-means gets
the same budget). Then the same tokenizers on synthetic vectors with locations (a city of
topics: 2,000 clusters in 384-d, each item at its own place), default 1M items.

Reported per run: conflict / exclusive rate (before disambiguation), largest bucket,
first-level geo coherence, fit and encode seconds; the cost of the location encoding
(items/s) beside the text encoder's; and the capacity-aware encode against the nearest
one. Results: bench/results/index_quality.json.

    python bench/index_quality.py --lake lake [--synthetic-items 1000000] [--skip-nyc]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from results_io import write_results  # noqa: E402

from geosid.embedding.location import LocationEncoder
from geosid.geo import offset_km
from geosid.quantization.levels import fsq_levels_for
from geosid.quantization.metrics import conflict_floor, sid_quality
from geosid.quantization.residual import FSQTraining, KMeansTraining, ResidualKMeans, ResidualKMeansFSQ


def nyc_vectors(lake: Path) -> dict:
    """{template: (x [n, d], lat, lon)} for the items of item_geo's latest day, one order."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    geo = DeltaTable(str(lake / "silver" / "item_geo")).to_pyarrow_table(columns=["item_id", "lat", "lon", "dt"])
    geo = geo.filter(pc.equal(geo["dt"], pc.max(geo["dt"]))).to_pandas().set_index("item_id")
    emb = DeltaTable(str(lake / "silver" / "item_embeddings")).to_pyarrow_table(columns=["item_id", "template_id", "vector"]).to_pandas()
    out = {}
    for template, rows in emb.groupby("template_id"):
        rows = rows[rows.item_id.isin(geo.index)].sort_values("item_id")
        x = np.stack(rows.vector.to_numpy()).astype(np.float32)
        out[template] = (x, geo.loc[rows.item_id, "lat"].to_numpy(), geo.loc[rows.item_id, "lon"].to_numpy())
    return out


def synthetic_vectors(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n unit vectors with structure at three scales, like text embeddings of a catalog:
    one of 2,000 topics, one of 4,096 facets (a direction shared across topics) at 0.7 of
    the topic's scale, a little noise (0.25); each item somewhere in a 40 km city."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(0, 1, (2000, 384)).astype(np.float32)
    facets = rng.normal(0, 0.7, (4096, 384)).astype(np.float32)
    x = np.empty((n, 384), np.float32)
    for start in range(0, n, 200_000):
        m = min(200_000, n - start)
        x[start : start + m] = topics[rng.integers(0, 2000, m)] + facets[rng.integers(0, 4096, m)]
        x[start : start + m] += rng.normal(0, 0.25, (m, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    lat, lon = offset_km(np.full(n, 31.23), np.full(n, 121.47), rng.normal(0, 8, n), rng.normal(0, 8, n))
    return x, lat, lon


def run(name: str, tokenizer, x, lat, lon) -> dict:
    started = time.perf_counter()
    tokenizer.train(x, lat=lat, lon=lon)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    codes = tokenizer.encode(x, lat=lat, lon=lon)
    encode_s = time.perf_counter() - started
    q = sid_quality(codes, tokenizer.level_sizes, lat, lon)
    row = {
        "name": name,
        "codes": list(tokenizer.level_sizes),
        "conflict": round(q["conflict_rate"], 4),
        "exclusive": round(q["exclusive_rate"], 4),
        "largest_bucket": q["largest_bucket"],
        "geo_l1_km": round(q["geo_coherence_l1_km"] or 0, 2),
        "fit_s": round(fit_s, 1),
        "encode_s": round(encode_s, 2),
    }
    if tokenizer.capacity_aware:
        started = time.perf_counter()
        tokenizer.nearest_codes(x, lat=lat, lon=lon)
        row["nearest_encode_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(row), flush=True)
    return row


def tokenizers(d: int, budget: tuple[int, ...], niter: int, fsq_epochs: int):
    return [
        ("residual_kmeans", ResidualKMeans(d, budget, KMeansTraining(niter))),
        ("residual_kmeans_fsq", ResidualKMeansFSQ(d, budget[:-1], fsq_levels_for(budget[-1]), KMeansTraining(niter), FSQTraining(epochs=fsq_epochs))),
        ("residual_kmeans+capacity", ResidualKMeans(d, budget, KMeansTraining(niter), capacity_aware=True)),
        (
            "residual_kmeans_fsq+capacity",
            ResidualKMeansFSQ(d, budget[:-1], fsq_levels_for(budget[-1]), KMeansTraining(niter), FSQTraining(epochs=fsq_epochs), capacity_aware=True),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lake", help="a lake the NYC demo built (geo-doc-v1 and -v2 vectors)")
    parser.add_argument("--skip-nyc", action="store_true")
    parser.add_argument("--synthetic-items", type=int, default=1_000_000)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--fsq-epochs", type=int, default=100)
    args = parser.parse_args()
    results = {"cpus": os.cpu_count(), "nyc": {}, "synthetic": {}}

    if not args.skip_nyc:
        vectors = nyc_vectors(Path(args.lake))
        x1, lat, lon = vectors["geo-doc-v1"]
        encoder = LocationEncoder(weight=0.4)
        started = time.perf_counter()
        for _ in range(5):
            encoder.fuse(x1, lat, lon)
        fuse_per_s = 5 * len(x1) / (time.perf_counter() - started)
        results["nyc"]["location_fusion_items_per_s"] = round(fuse_per_s)
        print(f"location encoding + fusion: {fuse_per_s:,.0f} items/s", flush=True)
        for template in ("geo-doc-v1", "geo-doc-v2"):
            x, lat, lon = vectors[template]
            runs = {"floor": round(conflict_floor(x), 4), "runs": []}
            print(f"--- NYC {template}: {len(x):,} items, d={x.shape[1]}, floor {runs['floor']:.2%}", flush=True)
            for budget in ((128, 128, 128), (128, 128, 4096)):
                for name, tok in tokenizers(x.shape[1], budget, args.niter, args.fsq_epochs):
                    runs["runs"].append(run(name, tok, x, lat, lon))
            results["nyc"][template] = runs

    if args.synthetic_items:
        x, lat, lon = synthetic_vectors(args.synthetic_items)
        fused = LocationEncoder(weight=0.4).fuse(x, lat, lon)
        print(f"--- synthetic: {len(x):,} items", flush=True)
        for label, data in (("text", x), ("geo", fused)):
            runs = {"floor": round(conflict_floor(data[:200_000]), 4), "runs": []}
            for name, tok in tokenizers(data.shape[1], (256, 256, 256), 10, 20):
                runs["runs"].append(run(f"{label} {name}", tok, data, lat, lon))
            results["synthetic"][label] = runs

    write_results("index_quality", results)


if __name__ == "__main__":
    main()
