"""The training benchmark's result as a committed result file: `geosid train benchmark`
writes its tables under the lake (`_reports/benchmark/<protocol>/results.json`); this
records one protocol's (every method's test scores, the seeds' mean and spread, the grid)
with the run's command, commit and machine.

    geosid --lake lake train benchmark --protocols trajectory --no-ablations --grid lr=0.003 --max-minutes 5
    python bench/train_benchmark.py --lake lake --protocol trajectory \\
        --command "geosid --lake lake train benchmark --protocols trajectory --no-ablations --grid lr=0.003 --max-minutes 5"

Result: bench/results/train_benchmark-<protocol>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

METRICS = [
    ("acc@1", "Acc@1"),
    ("recall@5", "R@5 = Acc@5"),
    ("recall@10", "R@10"),
    ("recall@20", "R@20"),
    ("ndcg@5", "N@5"),
    ("ndcg@10", "N@10"),
    ("ndcg@20", "N@20"),
    ("mrr@20", "MRR@20"),
    ("geo_reward@10", "geo reward@10"),
]
SPREAD = [("recall@5", "R@5"), ("ndcg@5", "N@5"), ("acc@1", "Acc@1"), ("mrr@20", "MRR@20")]


def tables(payload: dict, protocol: str) -> tuple[list[dict], str]:
    """The result file's tables, and a headline: OneLoc's seeds against the best rule."""
    stats, rows = payload["stats"], payload["rows"]
    main = {
        "caption": f"{protocol} on {stats.get('users', 0):,} users, {stats['items']:,} items; targets train "
        f"{stats['targets'].get('train', 0):,} / valid {stats['targets'].get('valid', 0):,} / test {stats['targets'].get('test', 0):,}",
        "columns": ["method", *[h for _, h in METRICS], "setting", "epochs (best)"],
        "rows": [
            [r["method"], *[r.get(k) for k, _ in METRICS], r.get("setting", ""), f"{r['epochs']} ({r['best_epoch']})" if r.get("epochs") else ""]
            for r in rows
        ],
    }
    seeds = {
        "caption": "Seeds: the chosen setting, mean ± standard deviation",
        "columns": ["method", "setting", "seeds", *[h for _, h in SPREAD]],
        "rows": [],
    }
    spread = {}
    for s in payload.get("seeds", []):
        cells = []
        for key, _ in SPREAD:
            values = [run[key] for run in s["runs"]]
            mean, sd = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{mean:.4f} ± {sd:.4f}")
            spread.setdefault(s["method"], {})[key] = (mean, sd)
        seeds["rows"].append([s["method"], s["setting"], len(s["runs"]), *cells])
    grid = {
        "caption": "Grid: each learned model selected on valid N@10",
        "columns": ["model", "setting", "valid N@10", "epochs (best)", "chosen"],
        "rows": [
            [g["method"], g["setting"], g["valid"], f"{g['epochs']} ({g['best_epoch']})", "yes" if g.get("chosen") else ""]
            for g in payload.get("grid", [])
        ],
    }
    rules = [r for r in rows if not r.get("run_id")]
    oneloc = spread.get("OneLoc") or {k: (next(r[k] for r in rows if r["method"] == "OneLoc"), 0.0) for k, _ in SPREAD}
    margins = []
    for key, name in SPREAD:
        best = max(rules, key=lambda r: r[key])
        margins.append(f"{name} {oneloc[key][0] / best[key] - 1:+.1%}")
    headline = f"OneLoc R@5 {oneloc['recall@5'][0]:.4f} ± {oneloc['recall@5'][1]:.4f}; over the best rule of each metric: " + ", ".join(margins)
    return [t for t in (main, seeds, grid) if t["rows"]], headline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lake")
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--command", required=True, help="the `geosid train benchmark` command that produced the lake's results")
    args = parser.parse_args()
    from results_io import write_results

    payload = json.loads((Path(args.lake) / "_reports" / "benchmark" / args.protocol / "results.json").read_text())
    found, headline = tables(payload, args.protocol)
    write_results(f"train_benchmark-{args.protocol}", {"headline": headline, "stats": payload["stats"], "tables": found}, command=args.command)


if __name__ == "__main__":
    main()
