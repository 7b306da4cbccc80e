"""OneLoc pretraining throughput: tokens/s and peak memory at a model size, on the
corpus of a lake (built by `make demo` or `geosid corpus build`).

    python bench/train_throughput.py --lake lake --size tiny
    python bench/train_throughput.py --lake lake --size paper --batch-size 64 --steps 200   # on a GPU

Tokens are history events read plus SID tokens predicted. On CUDA the run uses bf16
autocast and reports torch's peak allocated memory; on CPU the process's peak RSS.
Results go to bench/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
from pathlib import Path

from geosid.trainer.config import TrainConfig
from geosid.trainer.training import pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lake")
    parser.add_argument("--size", default="tiny", choices=["tiny", "small", "paper"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    cfg = TrainConfig(
        size=args.size,
        epochs=1,
        batch_size=args.batch_size,
        max_history=args.max_history,
        max_steps=args.steps,
        device=args.device,
        eval_limit=200,
    )
    record = pretrain(Path(args.lake).resolve(), cfg, run_id=f"bench-{args.size}")
    result = {
        "size": args.size,
        "device": record.device,
        "parameters": record.parameters,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "tokens_per_s": record.metrics["tokens_per_s"],
        "train_s": record.metrics["train_s"],
        "peak_gpu_memory_gb": record.metrics.get("peak_gpu_memory_gb"),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"train_throughput_{args.size}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
