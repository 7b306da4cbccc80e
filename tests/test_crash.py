"""Crash safety: a stage killed with SIGKILL mid-run leaves every table readable by an
outside Delta client at a committed version, with no partial rows; the re-run finishes
the work and gives the same tables as a run that was never interrupted.

The killed stage runs as a real `geosid` process (its own engine), so nothing of the
test's session can tidy up after it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from geosid import pipeline
from geosid.lake import faults
from geosid.schemas import bronze, corpus, index, silver
from geosid.sources.synthetic_world import WorldConfig, write_world

DAYS = [dt.date(2024, 6, 1) + dt.timedelta(days=k) for k in range(3)]
DAY = DAYS[-1]
CHUNK = 20  # documents per embedding commit: several commits on the small world
TEMPLATE = "geo-doc-v1"  # one representation per run (geo-doc-v2 would embed geo-doc-v1 first)


def _context(spark, root: Path, log=None):
    from geosid.config import Settings
    from geosid.lake import Lake
    from geosid.pipeline.context import Context

    settings = Settings(lake_root=root, embed_chunk_size=CHUNK)
    return Context(settings, spark, Lake(root, spark), log or (lambda *_: None))


@dataclass
class Killed:
    """A stage run as its own process and killed: what it printed, and its Delta table
    versions before and after (table -> version; -1: absent)."""

    lines: list[str]
    before: dict[str, int]
    after: dict[str, int]

    @property
    def committed(self) -> dict[str, int]:
        """The tables the killed stage had committed to, and how many commits each."""
        return {t: v - self.before.get(t, -1) for t, v in self.after.items() if v != self.before.get(t, -1)}


def _versions(root: Path) -> dict[str, int]:
    from deltalake import DeltaTable

    return {f"{log.parent.parent.name}.{log.parent.name}": DeltaTable(str(log.parent)).version() for log in sorted(root.glob("*/*/_delta_log"))}


def _kill(
    args: list[str], root: Path, *, marker: str | None = None, after_commits: int | None = None, delay_s: float = 0.0, timeout_s: float = 240.0
) -> Killed:
    """Run `geosid --lake root *args` as its own process and SIGKILL it: `delay_s` after a
    stdout line contains `marker`, or right after its `after_commits`-th commit to the
    lake (`geosid.lake.faults`). Asserts that it died of the signal, so a stage that
    finishes first fails the test; each test asserts the part of its work it had
    committed (`Killed.committed`, or the files it leaves)."""
    assert (marker is None) != (after_commits is None), "kill at a marker or after a number of commits"
    env = {**os.environ, "GEOSID_EMBED_CHUNK_SIZE": str(CHUNK), "PYTHONUNBUFFERED": "1", "RUST_LOG": "error"}
    if after_commits is not None:
        env[faults.ENV] = str(after_commits)
    before = _versions(root) if root.exists() else {}
    process = subprocess.Popen(
        [sys.executable, "-m", "geosid.cli", "--lake", str(root), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines, deadline = [], time.monotonic() + timeout_s
    try:
        for line in process.stdout:
            lines.append(line.rstrip())
            if marker is not None and marker in line:
                time.sleep(delay_s)
                process.send_signal(signal.SIGKILL)  # nothing is sent to a process that has already exited
                break
            assert time.monotonic() < deadline, "the stage ran past the test's timeout"
        process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
    shown = "\n".join(lines[-20:])
    assert process.returncode == -signal.SIGKILL, f"the stage finished before it could be killed (exit {process.returncode}):\n{shown}"
    return Killed(lines, before, _versions(root))


def _outside_reads(root: Path) -> dict[str, int]:
    """Every Delta table under the lake, read by delta-rs (not the engine): rows per table."""
    from deltalake import DeltaTable

    rows = {}
    for log in sorted(root.glob("*/*/_delta_log")):
        table = DeltaTable(str(log.parent))
        rows[f"{log.parent.parent.name}.{log.parent.name}"] = table.to_pyarrow_table().num_rows
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("world")
    write_world(raw, WorldConfig(n_days=len(DAYS), n_users=150, n_stores=40, n_brands=10, start_date=DAYS[0].isoformat()), progress=False)
    return raw


def _silver_ready(spark, root: Path, raw: Path):
    ctx = _context(spark, root)
    pipeline.ingest("synthetic", DAYS[0], DAY, raw, ctx=ctx)
    pipeline.geo(DAY, ctx=ctx)
    return ctx


GATES = {"max_excess_conflict": 1.0, "min_exclusive_rate": 0.0, "min_code_usage": 0.0}
FIT = {"codes": (8, 8, 8), "niter": 5}


@pytest.fixture(scope="module")
def base(spark, world, tmp_path_factory) -> Path:
    """A lake through the corpus: ingest, geo, embeddings, a published codebook, sequences."""
    root = tmp_path_factory.mktemp("base") / "lake"
    ctx = _silver_ready(spark, root, world)
    pipeline.embed(DAY, template=TEMPLATE, ctx=ctx)
    fit = pipeline.fit_codebook(pipeline.CodebookSpec("residual_kmeans", **FIT), DAY, template=TEMPLATE, ctx=ctx)
    pipeline.publish_codebook(fit.codebook_version, DAY, GATES, ctx=ctx)
    pipeline.corpus_build("synthetic", DAYS[0], DAY, fit.codebook_version, pipeline.split_config("user_chrono", DAY), ctx=ctx)
    return root


def _copy(base: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(base, to)
    return to


@pytest.mark.slow
def test_killed_embedding_keeps_its_committed_chunks_and_the_rerun_embeds_only_the_rest(spark, tmp_path, world):
    # the uninterrupted reference
    reference = _silver_ready(spark, tmp_path / "reference", world)
    total = pipeline.embed(DAY, template=TEMPLATE, ctx=reference).embedded
    assert total > 3 * CHUNK, f"the world is too small to kill between commits: {total} documents"

    ctx = _silver_ready(spark, tmp_path / "lake", world)
    killed = _kill(["embed", "--date", DAY.isoformat(), "--template", TEMPLATE], ctx.lake.root, marker="committed chunk 2/")
    assert killed.committed.get(silver.ITEM_EMBEDDINGS.name, 0) >= 2  # the two chunks it said it had committed

    # readable from outside at a committed version: whole chunks, no partial rows
    rows = _outside_reads(ctx.lake.root)
    assert {"silver.item_geo", "bronze.events"} <= set(rows)
    committed = ctx.lake.to_arrow(silver.ITEM_EMBEDDINGS)
    vectors = np.stack(committed.column("vector").to_numpy(zero_copy_only=False))
    assert 0 < committed.num_rows < total, (committed.num_rows, total)  # two whole chunks of ~CHUNK (hash split)
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    staging = ctx.lake.root / "_work" / "staging"

    # the re-run embeds only what was not committed, and sweeps the dead writer's staging
    rerun = pipeline.embed(DAY, template=TEMPLATE, ctx=ctx)
    assert rerun.embedded == total - committed.num_rows
    assert not any(p.name.split("-")[0] != str(os.getpid()) for p in staging.glob("*/*/*"))

    # the same table as the uninterrupted run (vectors to float tolerance: batches differ)
    def by_item(lake):
        table = lake.to_arrow(silver.ITEM_EMBEDDINGS).sort_by("item_id")
        return table.drop_columns(["vector"]).to_pylist(), np.stack(table.column("vector").to_numpy(zero_copy_only=False))

    (meta_a, vec_a), (meta_b, vec_b) = by_item(reference.lake), by_item(ctx.lake)
    assert meta_a == meta_b
    assert np.allclose(vec_a, vec_b, atol=1e-5)


@pytest.mark.slow
def test_killed_ingest_leaves_committed_tables_and_the_rerun_matches(spark, tmp_path, world):
    reference = _context(spark, tmp_path / "reference")
    pipeline.ingest("synthetic", DAY, DAY, world, ctx=reference)

    root = tmp_path / "lake"
    # killed between two commits of the job (bronze.events and .items committed, not the rest)
    killed = _kill(["ingest", "--source", "synthetic", "--path", str(world), "--date", DAY.isoformat()], root, after_commits=3)
    assert killed.committed and set(killed.committed) < {t.name for t in (bronze.EVENTS, bronze.ITEMS, bronze.REJECTS)} | {"ops.input_days"}, (
        killed.committed
    )
    _outside_reads(root)  # a table half-written would fail to load here

    ctx = _context(spark, root)
    pipeline.ingest("synthetic", DAY, DAY, world, ctx=ctx)
    for spec in (bronze.EVENTS, bronze.ITEMS, bronze.REJECTS):
        assert ctx.lake.digest(spec, dt=DAY) == reference.lake.digest(spec, dt=DAY), spec.name


def _published(ctx) -> str:
    from geosid.jobs.index import published_version

    return published_version(ctx.lake)


# stage: (command line, killed right after this many of its commits, re-run in process, tables
# compared). Each stage commits more often than that (geo 4 times, codebook fit 8, corpus 4:
# its tables' writes and their ops.builds records).
STAGES = {
    "geo": (
        ["geo", "--date", DAY.isoformat()],
        1,  # silver.geo_cells written, silver.item_geo not yet
        lambda ctx: pipeline.geo(DAY, ctx=ctx),
        lambda lake: [lake.digest(silver.GEO_CELLS, dt=DAY), lake.digest(silver.ITEM_GEO, dt=DAY)],
    ),
    "codebook fit": (
        [
            "codebook",
            "fit",
            "--method",
            "residual_kmeans",
            "--codes",
            "8,8,8",
            "--niter",
            "5",
            "--seed",
            "7",
            "--template",
            TEMPLATE,
            "--date",
            DAY.isoformat(),
        ],
        2,
        lambda ctx: pipeline.fit_codebook(pipeline.CodebookSpec("residual_kmeans", seed=7, **FIT), DAY, template=TEMPLATE, ctx=ctx),
        lambda lake: [lake.digest(index.SID_MAP)],
    ),
    "corpus": (
        ["corpus", "build", "--source", "synthetic", "--split", "user_chrono", "--from", DAYS[0].isoformat(), "--to", DAY.isoformat()],
        1,  # corpus.cell_context written, the sequences not yet
        lambda ctx: pipeline.corpus_build("synthetic", DAYS[0], DAY, None, pipeline.split_config("user_chrono", DAY), ctx=ctx),
        lambda lake: [lake.digest(corpus.TRAINING_SEQUENCES, dt=(DAYS[0], DAY)), lake.digest(corpus.CELL_CONTEXT, dt=(DAYS[0], DAY))],
    ),
}


# what each stage had committed when it was killed
KILLED_AFTER = {
    "geo": [silver.GEO_CELLS.name],
    "codebook fit": [index.CODEBOOKS.name, index.CODEBOOK_VERSIONS.name],
    "corpus": [corpus.CELL_CONTEXT.name],
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_killed_stage_leaves_committed_tables_and_the_rerun_matches(spark, base, tmp_path, stage):
    args, after_commits, rerun, digests = STAGES[stage]
    reference = _context(spark, _copy(base, tmp_path / "reference"))
    rerun(reference)
    expected = digests(reference.lake)

    root = _copy(base, tmp_path / "lake")
    killed = _kill(args, root, after_commits=after_commits)
    assert any(f"killed after commit {after_commits} " in line for line in killed.lines)
    assert killed.committed == dict.fromkeys(KILLED_AFTER[stage], 1), killed.committed  # part of the work, not all
    _outside_reads(root)  # every table loads at a committed version
    ctx = _context(spark, root)
    rerun(ctx)
    assert digests(ctx.lake) == expected, stage


@pytest.mark.slow
def test_killed_pretraining_resumes_from_its_last_checkpoint(spark, base, tmp_path):
    options = {
        "protocol": "user_chrono",
        "epochs": 3,
        "batch_size": 16,
        "max_history": 10,
        "patience": 9,
        "eval_limit": 50,
        "beam": 5,
        "device": "cpu",
    }
    flags = [
        "--protocol",
        "user_chrono",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--max-history",
        "10",
        "--patience",
        "9",
        "--eval-limit",
        "50",
        "--beam",
        "5",
        "--device",
        "cpu",
    ]
    root = _copy(base, tmp_path / "lake")
    lines = []
    ctx = _context(spark, root, log=lines.append)
    cfg = pipeline.train_config(**options)
    whole = pipeline.pretrain(cfg, run_id="whole", ctx=ctx)

    _kill(["train", "pretrain", "--run-id", "killed", *flags], root, marker="epoch 1/3:")
    run = root / "_models" / "killed"
    assert (run / "checkpoint.pt").exists() and not (run / "run.json").exists(), sorted(p.name for p in run.iterdir())
    pipeline.pretrain(cfg, run_id="killed", resume=True, ctx=ctx)
    assert any("resumed after epoch 1/3" in line for line in lines), lines[-10:]

    weights = {run: torch.load(root / "_models" / run / "model.pt", weights_only=True) for run in ("whole", "killed")}
    assert all(torch.equal(weights["whole"][k], weights["killed"][k]) for k in weights["whole"])
    assert len(whole.metrics["epochs"]) == 3


@pytest.mark.slow
def test_a_stage_that_finishes_before_the_kill_fails_the_crash_test(base, tmp_path):
    """The crash tests cannot pass by accident: geo commits 4 times, so a kill asked for
    after its 5th commit never comes and `_kill` fails."""
    root = _copy(base, tmp_path / "lake")
    with pytest.raises(AssertionError, match="finished before it could be killed"):
        _kill(["geo", "--date", DAY.isoformat()], root, after_commits=5)
