"""The downstream check of a codebook re-fit: OneLoc under the new version, warm-started
from the previous version's run through index.sid_code_map, against trained from scratch,
at equal training steps.

On the lake `bench/sid_stability.py` left (version V as of --old, the aligned and the
naive re-fit as of --new, each with its SIDs):

1. the previous run: OneLoc pretrained under V on the corpus up to --old (time split: the
   last 3 days test, the 3 before valid), one epoch;
2. the corpora under the aligned and the naive re-fit up to --new (the same split);
   the migration (index.sid_migration, index.sid_code_map) from V into each;
3. per re-fit and seed, OneLoc trained --steps steps from scratch, and the same steps
   warm-started from the previous run; test recall and NDCG side by side, with the
   strongest simple baseline of the same corpus (the user's Markov rule).

Results: bench/results/sid_warm_start.json.

    python bench/sid_warm_start.py --lake /tmp/stab [--steps 150] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import statistics
from pathlib import Path

from results_io import RESULTS, write_results

from geosid import pipeline
from geosid.jobs.index import version_row

METRICS = ("recall@5", "recall@10", "ndcg@10")


def corpus(ctx, version: str, first: str, last: str) -> None:
    split = pipeline.split_config("time", dt_.date.fromisoformat(last), test_days=3, valid_days=3)
    pipeline.corpus_build("tsmc2014", first, last, version, split, ctx=ctx)


def run(ctx, version: str, run_id: str, **options) -> dict:
    cfg = pipeline.TrainConfig(**{"epochs": 1, **options})
    record = pipeline.pretrain(cfg, version, run_id, ctx=ctx)
    ev = record.evaluation()
    return {
        "run": run_id,
        "version": version,
        "steps": options.get("max_steps"),
        "seed": cfg.seed,
        "warm_start": options.get("warm_start"),
        **{m: ev[m] for m in METRICS},
        "markov_user": {m: record.evaluation("markov_user")[m] for m in METRICS},
        "train_s": record.metrics["train_s"],
        "final_loss": record.metrics["train_loss"][-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--first", default="2012-04-03")
    args = parser.parse_args()
    stability = json.loads((RESULTS / "sid_stability.json").read_text())["results"]
    old, new, v = stability["old"], stability["new"], stability["version"]
    refits = {kind: stability["runs"]["month_later"][kind][0]["version"] for kind in ("aligned", "naive")}
    seeds = [int(s) for s in args.seeds.split(",")]
    with pipeline.open_context(pipeline.Settings(lake_root=args.lake)) as ctx:
        corpus(ctx, v, args.first, old)
        previous = run(ctx, v, "warm-previous", seed=0)
        out = {"previous": previous, "refits": {}}
        for kind, version in refits.items():
            assert version_row(ctx.lake, version)["status"] in ("candidate", "published", "retired")
            corpus(ctx, version, args.first, new)
            migration = pipeline.migrate(version, v, ctx=ctx)
            rows = {"scratch": [], "warm": []}
            for seed in seeds:
                rows["scratch"].append(run(ctx, version, f"{kind}-scratch-{seed}", seed=seed, max_steps=args.steps))
                rows["warm"].append(run(ctx, version, f"{kind}-warm-{seed}", seed=seed, max_steps=args.steps, warm_start="warm-previous"))
            summary = {
                start: {m: {"mean": statistics.mean(r[m] for r in rs), "min": min(r[m] for r in rs), "max": max(r[m] for r in rs)} for m in METRICS}
                for start, rs in rows.items()
            }
            out["refits"][kind] = {"version": version, "migration": migration.counts, "runs": rows, "summary": summary}
    write_results(
        "sid_warm_start",
        {"lake": str(args.lake), "old": old, "new": new, "previous_version": v, "steps": args.steps, "seeds": seeds, **out},
    )


if __name__ == "__main__":
    main()
