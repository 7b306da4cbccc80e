"""The GPU paths, checked against the CPU on one machine (run where CUDA is; CI has none).

What runs on a GPU in geosid: k-means through torch on CUDA (the `auto` backend's choice
when faiss has no GPU build), and the trainer's models under bf16 autocast (OneLoc's
forward, loss and backward, constrained beam search; SASRec and the GRU). For each this
prints what the CPU gives on the same seeded inputs next to what the GPU gives, and the
speed ratio measured in the same run:

- k-means: the objective after the same iterations from the same seeds (float32 sums in
  another order: equal to ~1e-3 relative), the backend `auto` resolves to, time ratio.
- OneLoc: teacher-forced loss on one batch (bf16 vs fp32: equal to ~2%), the loss after
  the same steps on both (falls on both), beam search returning only catalog items,
  training throughput (rows/s) of each size.

    python bench/gpu_check.py     (results in bench/results/gpu_check.json)

Exit status 1 when a check fails or no CUDA device is present.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from geosid.quantization.kmeans import KMeans
from geosid.trainer.data import AGE_BUCKETS, COUNT_BUCKETS, HOURS, N_FEATURES, N_NEIGHBOURS, Batch
from geosid.trainer.model import SIZES, OneLoc, OneLocConfig, ntp_loss
from geosid.trainer.search import SIDTrie, beam_search

sys.path.insert(0, str(Path(__file__).parent))
from results_io import write_results  # noqa: E402

TOKEN_SIZES = (64, 64, 64, 8)  # three levels of 64 codes and a disambiguation digit


def clustered(n: int, d: int, centres: int, seed: int) -> np.ndarray:
    """Points around `centres` random centres [n, d] float32 (embedding-like, unit scale)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, d)).astype(np.float32)
    return means[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, d)).astype(np.float32)


def kmeans_check(n: int, d: int, k: int, niter: int) -> dict:
    x = clustered(n, d, 4 * k, seed=0)
    out = {"points": n, "dim": d, "k": k, "niter": niter, "auto_backend": "/".join(KMeans._resolve("auto", None))}
    for device in ("cpu", "cuda"):
        km = KMeans(d, k, niter=niter, seed=7, backend="torch", device=device)
        start = time.perf_counter()
        objective = km.train(x)
        if device == "cuda":
            torch.cuda.synchronize()
        out[device] = {"objective": objective, "seconds": round(time.perf_counter() - start, 3), "objective_fell": bool(km.obj[-1] < km.obj[0])}
        _, idx = km.assign(x[:10_000])
        out[device]["assign_range_ok"] = bool(idx.min() >= 0 and idx.max() < k)
    out["objective_rel_diff"] = abs(out["cuda"]["objective"] - out["cpu"]["objective"]) / out["cpu"]["objective"]
    out["speedup"] = round(out["cpu"]["seconds"] / out["cuda"]["seconds"], 1)
    out["ok"] = out["objective_rel_diff"] < 1e-2 and all(out[d]["objective_fell"] and out[d]["assign_range_ok"] for d in ("cpu", "cuda"))
    return out


def fake_rows(b: int, h: int, items: np.ndarray, seed: int) -> Batch:
    """A seeded batch of OneLoc inputs (the shapes `Batch.tensors` gives) whose targets
    repeat a history item half the time, so a model can learn something in few steps."""
    g = torch.Generator().manual_seed(seed)
    hist_items = torch.randint(0, len(items), (b, h), generator=g)
    pick = torch.randint(0, h, (b,), generator=g)
    repeat = torch.rand(b, generator=g) < 0.5
    target_items = torch.where(repeat, hist_items[torch.arange(b), pick], torch.randint(0, len(items), (b,), generator=g))
    tokens = torch.as_tensor(items)
    kind = torch.ones(b, h, dtype=torch.long)
    return (
        Batch.zeros(n=b, H=h, T=len(TOKEN_SIZES))
        .tensors()
        .replace(
            hist_codes=tokens[hist_items],
            hist_item_emb=hist_items % 50 + 2,
            hist_kind=kind,
            hist_hour=torch.randint(1, HOURS + 1, (b, h), generator=g),
            hist_age=torch.randint(1, AGE_BUCKETS + 1, (b, h), generator=g),
            hist_visits=torch.randint(1, COUNT_BUCKETS, (b, h), generator=g),
            hist_trans=torch.randint(0, COUNT_BUCKETS, (b, h), generator=g),
            hist_routine=torch.randint(0, COUNT_BUCKETS, (b, h), generator=g),
            hist_routine_week=torch.randint(0, COUNT_BUCKETS, (b, h), generator=g),
            request_hour=torch.randint(1, HOURS + 1, (b,), generator=g),
            hist_cell=torch.randint(1, 100, (b, h), generator=g),
            hist_ctx=torch.rand(b, h, N_FEATURES, generator=g),
            user_cell=torch.randint(1, 100, (b,), generator=g),
            user_ctx=torch.rand(b, N_FEATURES, generator=g),
            nbr_cell=torch.randint(0, 100, (b, N_NEIGHBOURS), generator=g),
            nbr_ctx=torch.rand(b, N_NEIGHBOURS, N_FEATURES, generator=g),
            target=tokens[target_items],
        )
    )


def catalog(n_items: int, seed: int) -> np.ndarray:
    """n_items distinct SIDs [n_items, T] (codes drawn at random, the digit disambiguates)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, TOKEN_SIZES[0], (n_items, len(TOKEN_SIZES) - 1))
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    digit = np.zeros(n_items, np.int64)
    seen: dict[int, int] = {}
    for i, group in enumerate(inverse.ravel()):
        digit[i] = seen.get(int(group), 0)
        seen[int(group)] = digit[i] + 1
    keep = digit < TOKEN_SIZES[-1]
    return np.concatenate([codes, digit[:, None]], 1)[keep]


def autocast(device: str):
    # the trainer's rule (geosid.trainer.loading.autocast): bf16 on CUDA, fp32 on the CPU
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)


def new_oneloc(size: str) -> OneLoc:
    torch.manual_seed(0)
    return OneLoc(OneLocConfig.sized(size, token_sizes=TOKEN_SIZES, n_cells=100, n_behaviors=1, n_items=52))


def model_rows(rows: Batch, index=None, device: str | None = None) -> Batch:
    """The model's fields of `rows` (at `index`, on `device`): all the model reads."""
    part = {name: getattr(rows, name) for name, a in Batch.arrays().items() if a.model}
    return rows.replace(**{name: (v if index is None else v[index]).to(device or v.device) for name, v in part.items()})


def train_steps(model, rows: Batch, device: str, steps: int, batch: int, lr: float = 3e-3) -> tuple[list[float], float]:
    """(losses per step, rows per second) of `steps` AdamW steps on `rows` cycled in batches."""
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    n = len(rows.target)
    on = model_rows(rows, device=device)
    losses = []
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.arange(step * batch, (step + 1) * batch, device=device) % n
        x = model_rows(on, idx)
        with autocast(device):
            loss = ntp_loss(model(x), x.target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    if device == "cuda":
        torch.cuda.synchronize()
    return losses, steps * batch / (time.perf_counter() - start)


def oneloc_check(steps: int, history: int) -> dict:
    items = catalog(20_000, seed=1)
    rows = fake_rows(4096, history, items, seed=2)
    out: dict = {"history": history, "items": len(items)}
    first = {}
    for device in ("cpu", "cuda"):
        model = new_oneloc("tiny").to(device).eval()
        with torch.no_grad(), autocast(device):
            x = model_rows(rows, slice(0, 512), device)
            first[device] = float(ntp_loss(model(x), x.target))
        losses, speed = train_steps(new_oneloc("tiny"), rows, device, steps, batch=256)
        out[device] = {
            "loss_before": round(first[device], 4),
            "loss_first_step": round(losses[0], 4),
            "loss_last_step": round(losses[-1], 4),
            "rows_per_s": round(speed),
        }
    out["loss_rel_diff_bf16_vs_fp32"] = abs(first["cuda"] - first["cpu"]) / first["cpu"]
    model = new_oneloc("tiny").to("cuda").eval()
    trie = SIDTrie(items)
    with autocast("cuda"):
        found, logp = beam_search(model, model_rows(rows, slice(0, 256), "cuda"), trie, beam=20)
    out["beam_only_catalog_items"] = bool((found >= 0).all() and (found < len(items)).all())
    out["beam_sorted"] = bool((np.diff(logp, axis=1) <= 1e-4).all())
    out["ok"] = (
        out["loss_rel_diff_bf16_vs_fp32"] < 0.02
        and out["beam_only_catalog_items"]
        and out["beam_sorted"]
        and all(out[d]["loss_last_step"] < out[d]["loss_first_step"] for d in ("cpu", "cuda"))
    )
    speeds = {}
    for size in SIZES:
        _, speed = train_steps(new_oneloc(size), rows, "cuda", steps=20, batch=256)
        speeds[size] = round(speed)
    out["cuda_rows_per_s_by_size"] = speeds
    out["cpu_threads"] = torch.get_num_threads()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check here", file=sys.stderr)
        return 1
    results = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "kmeans": kmeans_check(args.points, 384, 256, niter=20),
        "oneloc": oneloc_check(args.steps, history=50),
    }
    write_results("gpu_check", results)
    failed = [name for name in ("kmeans", "oneloc") if not results[name]["ok"]]
    print("FAIL: " + ", ".join(failed) if failed else "PASS: every GPU path agrees with the CPU")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
