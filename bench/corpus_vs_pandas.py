"""The corpus job (`geosid.jobs.corpus.build_range` on the embedded engine) against a
single-process pandas implementation of the same job, on the same ~1M synthetic events.

    python bench/corpus_vs_pandas.py                 # prepare, time both, compare
    python bench/corpus_vs_pandas.py --repeat 3      # best of 3 for each

The parent prepares a world (generate, ingest, a hashed SID per item: the bench measures
the corpus job, not a codebook fit), then runs each implementation in its own process
(`--impl geosid|pandas`) so that each one's peak RSS is its own, and compares their
tables row for row. Both do the whole job: read bronze.events and index.sid_map from the
lake, cell ids, the histories of every target (three behaviors, strictly earlier events,
last max_len each), the neighbour ring, the user states as of the last two days, and write
corpus.training_sequences and corpus.user_history_state as Delta tables (pandas through
`deltalake.write_deltalake`). The pandas version is written the way a competent analyst
would: pandas for the join, sort and group numbering, numpy index ranges for the
histories, pyarrow for the nested columns. Results: bench/results/corpus_vs_pandas.json.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("RUST_LOG", "error")

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import pandas as pd
import pyarrow as pa

VERSION = "bench-hashed"
SOURCE = "synthetic"


def peak_rss_mb() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(max(own, children))


# ---- the pandas implementation --------------------------------------------------------


def _ranges(begins: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return np.arange(offsets[-1]) - np.repeat(offsets[:-1] - begins, lengths), offsets


def _nested(per_behavior: list[tuple[str, int, pa.Array, np.ndarray]], n: int) -> pa.Array:
    """[(behavior, max_len, events struct array, offsets [n + 1])] -> list<struct<behavior, max_len, events>> [n]."""
    lists = [pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values) for _, _, values, offsets in per_behavior]
    k = len(lists)
    order = (np.arange(n)[:, None] + np.arange(k)[None, :] * n).ravel()
    stacked = pa.concat_arrays(lists).take(pa.array(order))
    struct = pa.StructArray.from_arrays(
        [pa.array([b for b, *_ in per_behavior] * n), pa.array([m for _, m, *_ in per_behavior] * n, pa.int32()), stacked],
        names=["behavior", "max_len", "events"],
    )
    return pa.ListArray.from_arrays(pa.array((np.arange(n + 1) * k).astype(np.int32)), struct)


def pandas_corpus(lake_root: Path, first: dt_.date, last: dt_.date, out: Path) -> dict:
    from deltalake import DeltaTable, write_deltalake

    from geosid.jobs.corpus import CorpusConfig
    from geosid.schemas import corpus

    config = CorpusConfig.for_source(SOURCE)
    cells = config.cells()
    started = time.perf_counter()
    events = DeltaTable(str(lake_root / "bronze" / "events")).to_pandas(
        columns=["source", "user_id", "event_id", "request_id", "event_ts", "dt", "action", "item_id", "user_lat", "user_lon", "gmv"],
        filters=[("source", "=", SOURCE), ("dt", "<=", last)],
    )
    sid_table = DeltaTable(str(lake_root / "index" / "sid_map")).to_pyarrow_table(
        columns=["source", "item_id", "codes", "disambiguation", "sid", "lat", "lon"], filters=[("version", "=", VERSION)]
    )
    # the SID codes stay Arrow lists: rows carry an index into them
    codes = sid_table["codes"].combine_chunks().cast(pa.list_(pa.int32()))
    sid = sid_table.select(["source", "item_id", "disambiguation", "sid", "lat", "lon"]).to_pandas()
    sid["sid_row"] = np.arange(len(sid))
    sid["item_cell"] = cells.cell_of(sid["lat"].to_numpy(), sid["lon"].to_numpy())
    df = events.merge(sid.drop(columns=["lat", "lon"]), on=["source", "item_id"], how="inner")
    # one cell per distinct location (users repeat their places)
    located = df["user_lat"].notna() & df["user_lon"].notna()
    points = df.loc[located, ["user_lat", "user_lon"]].drop_duplicates()
    points["user_cell"] = cells.cell_of(points["user_lat"].to_numpy(), points["user_lon"].to_numpy())
    df = df.merge(points, on=["user_lat", "user_lon"], how="left")
    df = df.sort_values(["source", "user_id", "event_ts", "event_id"], kind="stable", ignore_index=True)
    df = df[~df.duplicated(["source", "user_id", "event_id"])].reset_index(drop=True)
    n = len(df)
    user = df.groupby(["source", "user_id"], sort=False).ngroup().to_numpy()
    ts = df["event_ts"].dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    user_start = df.groupby(user).cumcount().to_numpy()
    user_start = np.arange(n) - user_start
    same_instant = np.r_[False, (user[1:] == user[:-1]) & (ts[1:] == ts[:-1])]
    tie_start = np.maximum.accumulate(np.where(~same_instant, np.arange(n), 0))

    day = df["dt"].to_numpy().astype("datetime64[D]")
    is_target = (day >= np.datetime64(first)) & df["action"].isin(config.target_actions).to_numpy()
    has_cell = df["user_cell"].notna().to_numpy()
    targets = np.flatnonzero(is_target & has_cell)

    to_ts = lambda s: pa.Array.from_pandas(s).cast(pa.timestamp("us", "UTC"))
    columns = {  # every event once as Arrow; histories take from these
        "event_id": pa.array(df["event_id"].to_numpy(), pa.string()),
        "item_id": pa.array(df["item_id"].to_numpy(), pa.string()),
        "codes": codes.take(pa.array(df["sid_row"].to_numpy())),
        "cell_id": pa.array(df["item_cell"].to_numpy(), pa.string()),
        "user_cell_id": pa.array(df["user_cell"].to_numpy(), pa.string(), from_pandas=True),
        "event_ts": to_ts(df["event_ts"]),
        "action": pa.array(df["action"].to_numpy(), pa.string()),
    }
    history_fields = ["item_id", "codes", "cell_id", "event_ts", "action"]
    state_fields = ["event_id", "item_id", "codes", "cell_id", "user_cell_id", "event_ts", "action"]
    all_history = pa.StructArray.from_arrays([columns[f] for f in history_fields], names=history_fields)
    all_state = pa.StructArray.from_arrays([columns[f] for f in state_fields], names=state_fields)

    def events_struct(rows: np.ndarray, state: bool) -> pa.Array:
        return (all_state if state else all_history).take(pa.array(rows))

    behaviors = []
    for b in config.behaviors:
        mask = df["action"].isin(b.actions).to_numpy()
        before = np.concatenate([[0], np.cumsum(mask)])  # masked rows before row i
        behaviors.append((b, mask, before, np.flatnonzero(mask)))

    def histories(cuts: np.ndarray, floors: np.ndarray, state: bool) -> pa.Array:
        parts = []
        for b, _, before, positions in behaviors:
            ends = before[cuts]
            begins = np.maximum(before[floors], ends - b.max_len)
            index, offsets = _ranges(begins, ends - begins)
            parts.append((b.name, b.max_len, events_struct(positions[index], state), offsets))
        return _nested(parts, len(cuts))

    rows = df.iloc[targets]
    ring = {c: cells.neighbours(c) for c in rows["user_cell"].unique()}
    sequences = pa.table(
        {
            "source": rows["source"].to_numpy(),
            "user_id": rows["user_id"].to_numpy(),
            "event_id": rows["event_id"].to_numpy(),
            "request_id": pa.array(rows["request_id"].to_numpy(), pa.string(), from_pandas=True),
            "target_ts": to_ts(rows["event_ts"]),
            "target_action": rows["action"].to_numpy(),
            "target_item_id": rows["item_id"].to_numpy(),
            "target_codes": columns["codes"].take(pa.array(targets)),
            "target_disambiguation": pa.array(rows["disambiguation"].to_numpy(), pa.int32()),
            "target_sid": rows["sid"].to_numpy(),
            "target_cell_id": rows["item_cell"].to_numpy(),
            "target_gmv": pa.array(rows["gmv"].to_numpy(), pa.float64(), from_pandas=True),
            "cell_system": [cells.name] * len(rows),
            "user_cell_id": rows["user_cell"].to_numpy(),
            "neighbour_cell_ids": pa.array([ring[c] for c in rows["user_cell"]], pa.list_(pa.string())),
            "histories": histories(tie_start[targets], user_start[targets], state=False),
            "split": ["train"] * len(rows),
            "codebook_version": [VERSION] * len(rows),
            "dt": pa.array(rows["dt"].to_numpy(), pa.date32()),
            "protocol": ["time"] * len(rows),
        }
    )
    any_behavior = np.logical_or.reduce([m for _, m, _, _ in behaviors])
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], n]
    states, previous = [], None
    from geosid.jobs.corpus import checkpoint_days

    for state_day in checkpoint_days(config, last, first):
        upto = day <= np.datetime64(state_day)
        cuts = starts + np.add.reduceat(upto.astype(np.int64), starts)
        # the latest behavior event of each user by then
        latest = pd.Series(np.where(any_behavior & upto, np.arange(n), -1)).groupby(user).max().to_numpy()
        keep = latest >= 0
        if previous is not None:  # a later state day: the users whose state changed on it
            keep &= latest > previous
        previous = latest
        first_rows, latest = starts[keep], latest[keep]
        states.append(
            pa.table(
                {
                    "source": df["source"].to_numpy()[first_rows],
                    "user_id": df["user_id"].to_numpy()[first_rows],
                    "last_event_ts": to_ts(df["event_ts"].iloc[latest]),
                    "last_cell_id": df["user_cell"].to_numpy()[latest],
                    "histories": histories(cuts[keep], first_rows, state=True),
                    "codebook_version": [VERSION] * int(keep.sum()),
                    "dt": pa.array([state_day] * int(keep.sum()), pa.date32()),
                    "user_bucket": pa.array(
                        [zlib.crc32(u.encode()) % config.state_buckets for u in df["user_id"].to_numpy()[first_rows]], pa.int32()
                    ),
                }
            )
        )
        assert (ends[keep] >= cuts[keep]).all()
    state = pa.concat_tables(states)
    computed = time.perf_counter() - started
    for table, spec in ((sequences, corpus.TRAINING_SEQUENCES), (state, corpus.USER_HISTORY_STATE)):
        from geosid.lake.arrow import spec_arrow_schema

        shutil.rmtree(out / spec.relative_path, ignore_errors=True)  # a fresh table (layouts change)
        write_deltalake(
            str(out / spec.relative_path),
            table.select(spec.columns).cast(spec_arrow_schema(spec)),
            mode="overwrite",
            partition_by=list(spec.partition_by),
        )
    return {"seconds": time.perf_counter() - started, "compute_s": round(computed, 2), "targets": sequences.num_rows, "states": state.num_rows}


# ---- geosid ---------------------------------------------------------------------------


def geosid_corpus(lake_root: Path, first: dt_.date, last: dt_.date, direct_commit: bool) -> dict:
    from geosid.config import Settings
    from geosid.jobs.corpus import CorpusConfig, build_range
    from geosid.lake import Lake
    from geosid.lake.engine import spark_session

    settings = Settings.from_env()
    with spark_session(settings) as spark:
        lake = Lake(lake_root, spark, committer=settings.committer(), direct_commit=direct_commit)
        started = time.perf_counter()
        report = build_range(lake, VERSION, first, last, CorpusConfig.for_source(SOURCE))
        return {"seconds": time.perf_counter() - started, "targets": report.targets, "states": report.states, "input_events": report.input_events}


# ---- driver ---------------------------------------------------------------------------


def prepare(work: Path, world_name: str) -> dict:
    from sequences_throughput import CASES, hashed_sid_map

    from geosid.config import Settings
    from geosid.jobs.ingest import run_ingest
    from geosid.lake import Lake
    from geosid.lake.engine import spark_session
    from geosid.sources.synthetic_world import write_world

    world = CASES[world_name]
    lake_root = work / "lake"
    if (work / "prepared.json").exists():
        return json.loads((work / "prepared.json").read_text())
    settings = Settings.from_env()
    with spark_session(settings) as spark:
        lake = Lake(lake_root, spark, committer=settings.committer())
        write_world(work / "raw", world, progress=False)
        ingest = run_ingest(lake, SOURCE, work / "raw", world.start, world.days()[-1], progress=False)
        info = {"events": ingest.events, "items": hashed_sid_map(lake), "first": world.start.isoformat(), "last": world.days()[-1].isoformat()}
    (work / "prepared.json").write_text(json.dumps(info))
    return info


def child(impl: str, work: Path, first: dt_.date, last: dt_.date, out: Path) -> dict:
    """Run one implementation in a fresh process; its own peak RSS comes back with it."""
    cmd = [sys.executable, __file__, "--impl", impl, "--work", str(work), "--out", str(out), "--first", first.isoformat(), "--last", last.isoformat()]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{impl} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(geosid_root: Path, pandas_root: Path) -> dict:
    """Row-for-row equality of both tables (sorted on their keys, every column)."""
    from deltalake import DeltaTable

    from geosid.schemas import corpus

    out = {}
    for spec in (corpus.TRAINING_SEQUENCES, corpus.USER_HISTORY_STATE):
        keys = [(k, "ascending") for k in spec.keys if k != "protocol"]
        a = DeltaTable(str(geosid_root / spec.relative_path)).to_pyarrow_table().select(spec.columns).sort_by(keys)
        b = DeltaTable(str(pandas_root / spec.relative_path)).to_pyarrow_table().select(spec.columns).sort_by(keys)
        b = b.cast(a.schema)
        out[spec.name] = {"rows": [a.num_rows, b.num_rows], "identical": a.num_rows == b.num_rows and a.equals(b)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", choices=["geosid", "geosid-rewrite", "pandas"])
    parser.add_argument("--work", default="/tmp/geosid-bench-corpus")
    parser.add_argument("--world", default="1m")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out")
    parser.add_argument("--first")
    parser.add_argument("--last")
    args = parser.parse_args()
    work = Path(args.work)
    if args.impl:  # a child: one run, one JSON line
        first, last = dt_.date.fromisoformat(args.first), dt_.date.fromisoformat(args.last)
        if args.impl == "pandas":
            result = pandas_corpus(work / "lake", first, last, Path(args.out))
        else:
            result = geosid_corpus(work / "lake", first, last, direct_commit=args.impl == "geosid")
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return
    info = prepare(work, args.world)
    first, last = dt_.date.fromisoformat(info["first"]), dt_.date.fromisoformat(info["last"])
    runs = {"pandas": [], "geosid": [], "geosid-rewrite": []}
    for _ in range(args.repeat):
        for impl in runs:
            result = child(impl, work, first, last, work / "pandas-out")
            print(impl, json.dumps(result), flush=True)
            runs[impl].append(result)
    best = {impl: min(rs, key=lambda r: r["seconds"]) for impl, rs in runs.items()}
    equal = compare(work / "lake", work / "pandas-out")
    payload = {
        "world": args.world,
        **info,
        "repeat": args.repeat,
        "runs": runs,
        "speed_vs_pandas": {impl: round(best["pandas"]["seconds"] / best[impl]["seconds"], 2) for impl in ("geosid", "geosid-rewrite")},
        "rss_vs_pandas": {impl: round(best[impl]["peak_rss_mb"] / best["pandas"]["peak_rss_mb"], 2) for impl in ("geosid", "geosid-rewrite")},
        "direct_commit_speedup": round(best["geosid-rewrite"]["seconds"] / best["geosid"]["seconds"], 2),
        "outputs": equal,
    }
    print(json.dumps({k: payload[k] for k in ("speed_vs_pandas", "rss_vs_pandas", "direct_commit_speedup", "outputs")}, indent=1))
    from results_io import write_results

    write_results("corpus_vs_pandas", payload)


if __name__ == "__main__":
    main()
