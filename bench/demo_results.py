"""The demo's numbers as a result file: the test scores of its pretrained OneLoc, its DPO
run and the lambda-0 control beside the non-learned baselines, read from the run records
`make demo` left in its lake (so the numbers are the demo's own, not re-computed).

    make demo && python bench/demo_results.py --lake lake

Result: bench/results/demo-<source>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

METRICS = [
    ("recall@5", "R@5"),
    ("recall@10", "R@10"),
    ("recall@20", "R@20"),
    ("ndcg@5", "N@5"),
    ("ndcg@10", "N@10"),
    ("ndcg@20", "N@20"),
    ("acc@1", "Acc@1"),
    ("mrr@20", "MRR@20"),
    ("geo_reward@10", "geo reward@10"),
]
BASELINES = [
    ("most_popular", "most popular"),
    ("nearest_popular", "nearest popular"),
    ("repeat", "repeat"),
    ("recent", "recent"),
    ("markov", "Markov (train transitions)"),
    ("markov_user", "Markov (user's own)"),
]


def demo_results(lake_root: Path) -> dict:
    from geosid.trainer.runs import list_runs

    runs = list_runs(lake_root)
    pretrain = [r for r in runs if r.kind == "pretrain"][-1]
    dpo = [r for r in runs if r.kind == "dpo"]
    aligned = [r for r in dpo if (r.train_config or {}).get("dpo_lambda")]
    control = [r for r in dpo if not (r.train_config or {}).get("dpo_lambda")]
    evaluation = pretrain.metrics["eval"]

    def row(label: str, scores: dict) -> list:
        return [label, *[round(float(scores[m]), 4) for m, _ in METRICS]]

    rows = [row("OneLoc tiny, pretrained (1 epoch, CPU)", evaluation["oneloc"])]
    for label, chosen in (("+ DPO", aligned), ("+ the same extra steps, lambda 0 (control)", control)):
        if chosen:
            rows.append(row(f"{label} (lambda {chosen[-1].train_config.get('dpo_lambda', 0)})", chosen[-1].metrics["eval"]["oneloc"]))
    rows += [row(label, evaluation[key]) for key, label in BASELINES if key in evaluation]
    best = max((r for r in rows if not r[0].startswith(("OneLoc", "+"))), key=lambda r: r[1])
    accuracy = [
        ["DPO", aligned[-1].metrics["dpo"][-1]["heldout_accuracy"]] if aligned else None,
        ["control (lambda 0)", control[-1].metrics["dpo"][-1]["heldout_accuracy"]] if control else None,
    ]
    source = pretrain.manifest.get("source") or "tsmc2014"
    return {
        "headline": f"OneLoc tiny R@5 {rows[0][1]:.4f} vs the best rule ({best[0]}) {best[1]:.4f}: {rows[0][1] / best[1] - 1:+.1%}",
        "source": source,
        "requests": evaluation["requests"],
        "repeat_share": round(evaluation["repeat_share"], 4),
        "tables": [
            {
                "caption": f"{evaluation['split']} split, {evaluation['requests']:,} requests ({evaluation['repeat_share']:.1%} repeat targets)",
                "columns": ["method", *[name for _, name in METRICS]],
                "rows": rows,
            },
            {
                "caption": "DPO: held-out preference accuracy (the reference scores 0.5 by construction)",
                "columns": ["run", "held-out preference accuracy"],
                "rows": [a for a in accuracy if a],
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lake", help="the lake `make demo` wrote")
    args = parser.parse_args()
    from results_io import write_results

    results = demo_results(Path(args.lake).resolve())
    write_results(
        "demo-nyc" if results["source"] == "tsmc2014" else "demo-synthetic",
        results,
        command=f"make demo && python bench/demo_results.py --lake {args.lake}",
    )


if __name__ == "__main__":
    main()
