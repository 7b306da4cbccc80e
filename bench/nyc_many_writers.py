"""Issue 39's scenarios, on the NYC demo lake with later days: writers at once from the
command line, and a live Airflow's backfill in any order, each compared with the same
days run in order.

    python bench/nyc_many_writers.py --lake lake          # the demo's lake (copied, never written)

The shipped file ends on 2013-01-15. The later days are its last week again, a week on
(every check-in of 2013-01-09 .. 2013-01-13 moved 7 days: 2013-01-16 .. 2013-01-20),
delivered two ways: as `dt=YYYY-MM-DD/` drops with `_SUCCESS`, and as one whole-history
file (the shipped lines and the later ones).

1. command line: `geosid daily` for 2013-01-16 and for 2013-01-17 and `geosid maintain
   --retention-hours 0` started a few seconds apart (drops);
2. Airflow, whole-history file: `airflow backfill create --run-backwards
   --max-active-runs 1` over 2013-01-16 .. 2013-01-19;
3. Airflow, drops: `--run-backwards --max-active-runs 2` over 2013-01-16 .. 2013-01-20.

Each on its own copy of the lake; each compared table by table (content digests) with a
copy where the same days ran one after the other (`geosid.pipeline.daily`, the same
source kind). Result: bench/results/nyc_many_writers.json.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import year_of_operations as ops  # noqa: E402
from live_airflow import Airflow, Postgres  # noqa: E402

FIRST = dt_.date(2013, 1, 16)
DAYS = [FIRST + dt_.timedelta(days=k) for k in range(5)]
SHIFT = dt_.timedelta(days=7)
STAMP = "%a %b %d %H:%M:%S %z %Y"


def later_days(shipped: Path, work: Path) -> tuple[Path, Path]:
    """(folder of drops, whole-history file) holding DAYS: the shipped lines of the days a
    week before, moved 7 days on."""
    by_day: dict[dt_.date, list[str]] = {d: [] for d in DAYS}
    with gzip.open(shipped, "rt", encoding="latin-1") as handle:
        original = handle.read().splitlines(keepends=True)
    for line in original:
        fields = line.rstrip("\n").split("\t")
        try:
            moved = dt_.datetime.strptime(fields[7], STAMP) + SHIFT
        except (IndexError, ValueError):
            continue
        if moved.date() in by_day:
            by_day[moved.date()].append("\t".join([*fields[:7], moved.strftime(STAMP)]) + "\n")
    drops = work / "drops"
    for day, lines in by_day.items():
        folder = drops / f"dt={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        with gzip.open(folder / "checkins.txt.gz", "wt", encoding="latin-1") as out:
            out.writelines(lines)
        (folder / "_SUCCESS").write_bytes(b"")
    whole = work / "whole" / "dataset_TSMC2014_NYC.later.txt.gz"
    whole.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(whole, "wt", encoding="latin-1") as out:
        out.writelines(original)
        for day in DAYS:
            out.writelines(by_day[day])
    return drops, whole


def copy_lake(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("_reports", "_work"))
    return target


def digests(root: Path, spark) -> dict:
    from geosid.lake import Lake

    return ops.content_digests(Lake(root, spark))


def in_order(base: Path, work: Path, name: str, raw: Path, days: list[dt_.date], spark, checkpoints: set[int]) -> dict[int, dict]:
    """The days run one after the other on a copy: the digests after the first k days."""
    from geosid import pipeline
    from geosid.config import Settings
    from geosid.lake import Lake
    from geosid.pipeline.context import Context

    root = copy_lake(base, work / f"lake-{name}")
    ctx = Context(Settings(lake_root=root), spark, Lake(root, spark))
    out = {}
    for k, day in enumerate(days, start=1):
        pipeline.daily(day, "tsmc2014", raw, validate=False, ctx=ctx)
        if k in checkpoints:
            out[k] = digests(root, spark)
    return out


def command_line(base: Path, work: Path, drops: Path) -> dict:
    """Scenario 1: two daily runs and maintenance (retention 0) started seconds apart."""
    root = copy_lake(base, work / "lake-cli")
    geosid = [sys.executable, "-m", "geosid.cli", "--lake", str(root)]
    commands = [
        [*geosid, "daily", "--date", DAYS[0].isoformat(), "--source", "tsmc2014", "--path", str(drops), "--no-validate"],
        [*geosid, "daily", "--date", DAYS[1].isoformat(), "--source", "tsmc2014", "--path", str(drops), "--no-validate"],
        [*geosid, "maintain", "--retention-hours", "0"],
    ]
    started, processes = time.perf_counter(), []
    for command in commands:
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(3)
    outcomes = []
    for command, process in zip(commands, processes):
        out, err = process.communicate()
        outcomes.append(
            {
                "command": " ".join(command[3:]),
                "rc": process.returncode,
                "traceback": "Traceback" in err,
                "stderr": err.strip().splitlines()[-1:] if err.strip() else [],
                "waited": "waiting for the lake's writer lease" in out,
            }
        )
    return {"root": root, "outcomes": outcomes, "seconds": round(time.perf_counter() - started, 1)}


def airflow_backfill(base: Path, work: Path, name: str, raw: Path, days: list[dt_.date], max_active_runs: int) -> dict:
    """Scenarios 2 and 3: a live scheduler's backfill, run backwards."""
    root = copy_lake(base, work / f"lake-{name}")
    postgres = Postgres().start()
    airflow = Airflow(work / f"{name}-airflow", postgres, {"GEOSID_AIRFLOW_RETRY_DELAY_SECONDS": "10"})
    started = time.perf_counter()
    try:
        airflow.start()
        subprocess.run(
            [sys.executable, "-m", "geosid.cli", "--lake", str(root), "airflow", "setup"], env=airflow.env, check=True, capture_output=True, text=True
        )
        airflow.wait_for_dags(["geosid_daily"])
        conf = json.dumps({"source": "tsmc2014", "path": str(raw)})
        airflow.cli(
            "backfill",
            "create",
            "--dag-id",
            "geosid_daily",
            "--from-date",
            days[0].isoformat(),
            "--to-date",
            days[-1].isoformat(),
            "--run-backwards",
            "--max-active-runs",
            str(max_active_runs),
            "--dag-run-conf",
            conf,
        )
        airflow.cli("dags", "unpause", "geosid_daily")
        deadline = time.monotonic() + 3600
        while True:
            airflow.check_alive()
            runs = [r for r in airflow.runs("geosid_daily") if r["run_id"].startswith("backfill__")]
            if len(runs) == len(days) and all(r["state"] in ("success", "failed") for r in runs):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: backfill not done: {[(r['run_id'], r['state']) for r in runs]}")
            time.sleep(10)
        tries = {}
        for run in runs:
            states = airflow.task_states("geosid_daily", run["run_id"])
            tries[run["logical_date"][:10]] = states
    finally:
        airflow.stop()
        postgres.stop()
    return {
        "root": root,
        "states": {r["logical_date"][:10]: r["state"] for r in runs},
        "tasks": tries,
        "retries": _retries(work / f"{name}-airflow"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _retries(home: Path) -> int:
    """Task attempts past the first (a retried refusal), from the task logs."""
    return sum(1 for _ in (home / "logs").rglob("attempt=[2-9]*.log"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lake", help="the NYC demo lake (read, copied; never written)")
    parser.add_argument("--work", default="/tmp/geosid-bench-nyc-many-writers")
    parser.add_argument("--only", nargs="*", choices=["cli", "file", "drops"], help="the scenarios (default: all three)")
    args = parser.parse_args()
    from results_io import write_results

    from geosid.config import Settings
    from geosid.lake import spark_session
    from geosid.sources.registry import SHIPPED_TSMC_FILE

    base, work = Path(args.lake).resolve(), Path(args.work)
    chosen = args.only or ["cli", "file", "drops"]
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    drops, whole = later_days(SHIPPED_TSMC_FILE, work)
    results = {"command": " ".join(["python", "bench/nyc_many_writers.py", *sys.argv[1:]]), "days": [d.isoformat() for d in DAYS]}
    with spark_session(Settings(lake_root=work / "unused")) as spark:
        if "cli" in chosen or "drops" in chosen:
            ref_drops = in_order(base, work, "reference-drops", drops, DAYS, spark, {2, 5})
        if "file" in chosen:
            ref_file = in_order(base, work, "reference-file", whole, DAYS[:4], spark, {4})
        scenarios = {
            "cli": (
                "command line: daily 01-16, daily 01-17, maintain --retention-hours 0",
                lambda: command_line(base, work, drops),
                lambda: ref_drops[2],
            ),
            "file": (
                "airflow backfill, whole-history file, --run-backwards --max-active-runs 1",
                lambda: airflow_backfill(base, work, "file", whole, DAYS[:4], 1),
                lambda: ref_file[4],
            ),
            "drops": (
                "airflow backfill, dt= drops, --run-backwards --max-active-runs 2",
                lambda: airflow_backfill(base, work, "drops", drops, DAYS, 2),
                lambda: ref_drops[5],
            ),
        }
        for key in chosen:
            label, scenario, reference = scenarios[key]
            outcome = scenario()
            got, want = digests(outcome.pop("root"), spark), reference()
            outcome["tables_different"] = sorted(t for t in set(got) | set(want) if got.get(t) != want.get(t))
            outcome["tables"] = len(want)
            results[label] = outcome
            print(label, json.dumps(outcome)[:600], flush=True)
            write_results("nyc_many_writers", results)  # after each scenario: a later one may take an hour


if __name__ == "__main__":
    main()
