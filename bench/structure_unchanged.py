"""Behaviour unchanged by a refactoring: the same seeded pipeline, run through the CLI of
two source trees (e.g. the commit before a structural step and this tree), must write
tables with the same content.

Per dataset (a small synthetic world, and a slice of the shipped NYC check-ins) and tree:
ingest a range, geo, embed, fit a residual k-means codebook (seeded, capacity-aware),
publish it, build the corpus of the range (the time split and a per-user split), run the
next day as the daily DAG does, then repair every day from the range's middle on (a
forced rebuild: geo context, embeddings, SIDs taken back and given again, the history
state from its checkpoint, cell context, the per-user corpus as one range), and train a
tiny OneLoc on the per-user split (pretrain, DPO, evaluation). Every table of both lakes
is then digested by the same code (`Lake.digest(content=True)`: order-free, volatile
columns out) and the digests compared; the two training runs' losses and metrics too.

    git worktree add /tmp/before <commit>
    python bench/structure_unchanged.py --before /tmp/before

Results: bench/results/structure_unchanged.json (`bench/results_io.py`) and a printed table.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NYC = ROOT.parent / "shared" / "data" / "foursquare_nyc" / "dataset_TSMC2014_NYC.subset.txt.gz"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402

OPEN_GATES = ["--max-excess-conflict", "1", "--min-exclusive", "0", "--min-usage", "0"]


def datasets(work: Path) -> dict[str, dict]:
    out = {
        "synthetic": {"source": "synthetic", "path": str(work / "synthetic-raw"), "first": "2024-01-01", "last": "2024-01-05", "next": "2024-01-06"}
    }
    if NYC.exists():
        out["nyc"] = {"source": "tsmc2014", "path": str(NYC), "first": "2012-04-03", "last": "2012-04-12", "next": "2012-04-13"}
    return out


def geosid(tree: Path, lake: Path, *args: str) -> str:
    """One CLI command of `tree` on `lake`; its output (fails loudly)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "GEOSID_DROP_MARKER": "none", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "geosid.cli", "--lake", str(lake), *args], env=env, capture_output=True, text=True, cwd=tree)
    if run.returncode != 0:
        raise SystemExit(f"{tree.name}: geosid {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run.stdout


def pipeline_run(tree: Path, lake: Path, data: dict) -> dict:
    started = time.perf_counter()
    shutil.rmtree(lake, ignore_errors=True)
    source, first, last = data["source"], data["first"], data["last"]
    geosid(tree, lake, "ingest", "--source", source, "--path", data["path"], "--from", first, "--to", last)
    geosid(tree, lake, "geo", "--date", last)
    geosid(tree, lake, "embed", "--date", last)
    fitted = geosid(
        tree,
        lake,
        "codebook",
        "fit",
        "--method",
        "residual_kmeans",
        "--codes",
        "16,16,16",
        "--niter",
        "8",
        "--seed",
        "11",
        "--capacity-aware",
        "--date",
        last,
    )
    version = re.search(r"version (cb-[0-9a-f]+) is a candidate", fitted).group(1)
    geosid(tree, lake, "codebook", "publish", "--version", version, "--date", last, *OPEN_GATES)
    geosid(tree, lake, "corpus", "build", "--source", source, "--from", first, "--to", last, "--version", version)
    geosid(tree, lake, "corpus", "build", "--source", source, "--from", first, "--to", last, "--version", version, "--split", "user_chrono")
    geosid(tree, lake, "daily", "--date", data["next"], "--source", source, "--path", data["path"], "--no-validate")
    middle = (dt_.date.fromisoformat(first) + (dt_.date.fromisoformat(last) - dt_.date.fromisoformat(first)) / 2).isoformat()
    repaired = geosid(tree, lake, "repair", "--from", middle, "--no-validate")
    train = ["--size", "tiny", "--epochs", "2", "--batch-size", "64", "--eval-limit", "300", "--protocol", "user_chrono", "--version", version]
    geosid(tree, lake, "train", "pretrain", *train, "--run-id", "pre")
    geosid(tree, lake, "train", "dpo", *train, "--from-run", "pre", "--run-id", "aligned", "--dpo-epochs", "1", "--dpo-requests", "100")
    runs = {run: json.loads((lake / "_models" / run / "run.json").read_text()) for run in ("pre", "aligned")}
    return {
        "codebook_version": version,
        "repair": repaired.strip().splitlines()[-1],
        "training": {run: _timeless({k: r["metrics"].get(k) for k in ("train_loss", "eval", "dpo")}) for run, r in runs.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def digests(lake: Path) -> dict[str, list]:
    from geosid.lake import Lake, spark_session
    from geosid.schemas import REGISTRY

    with spark_session() as spark:
        handle = Lake(lake, spark)
        return {spec.name: list(handle.digest(spec, content=True)) for spec in REGISTRY if handle.exists(spec)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, type=Path, help="the source tree before the change (a git worktree)")
    parser.add_argument("--after", type=Path, default=ROOT, help="the source tree after it (default: this one)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/geosid-structure"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    data = datasets(args.work)
    synthetic = data["synthetic"]
    if not Path(synthetic["path"]).exists():
        geosid(
            trees["after"],
            args.work / "unused",
            "synth",
            "--out",
            synthetic["path"],
            "--days",
            "6",
            "--users",
            "400",
            "--stores",
            "80",
            "--seed",
            "7",
            "--start",
            synthetic["first"],
        )
    results: dict = {"trees": {k: str(v) for k, v in trees.items()}, "commits": {k: _commit(v) for k, v in trees.items()}, "datasets": {}}
    for name, spec in data.items():
        runs = {label: pipeline_run(tree, args.work / f"{name}-{label}", spec) for label, tree in trees.items()}
        tables = {label: digests(args.work / f"{name}-{label}") for label in trees}
        names = sorted(set(tables["before"]) | set(tables["after"]))
        differ = [t for t in names if tables["before"].get(t) != tables["after"].get(t)]
        training = {label: run.pop("training") for label, run in runs.items()}
        same_training = training["before"] == training["after"]
        results["datasets"][name] = {
            "runs": runs,
            "tables": len(names),
            "equal": len(names) - len(differ),
            "differ": differ,
            "digests": {t: {label: _short(tables[label].get(t)) for label in trees} for t in names},
            "training_equal": same_training,
            "training": training["after"],
        }
        print(
            f"{name}: {len(names) - len(differ)}/{len(names)} tables equal"
            + (f"; differ: {', '.join(differ)}" if differ else "")
            + f"; codebook {runs['before']['codebook_version']} vs {runs['after']['codebook_version']}"
            + f"; training {'equal' if same_training else 'DIFFERENT'}"
            + f"; {runs['before']['seconds']}s vs {runs['after']['seconds']}s"
        )
    write_results("structure_unchanged", results, command="python bench/structure_unchanged.py --before <worktree of the commit before>")
    if any(r["differ"] or not r["training_equal"] for r in results["datasets"].values()):
        sys.exit(1)


def _timeless(value):
    """A run's metrics without its wall-clock figures (seconds, rates): what the code decides."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if not (k == "seconds" or k.endswith("_s"))}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _short(digest) -> str | None:
    """A table's content digest, shortened for the result file."""
    return None if digest is None else hashlib.sha256(json.dumps(digest, default=str).encode()).hexdigest()[:16]


def _commit(tree: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True)
    return done.stdout.strip()


if __name__ == "__main__":
    main()
