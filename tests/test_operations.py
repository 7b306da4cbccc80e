"""Operations over time: drops that arrive late, corrected or not at all, repairs from
state checkpoints, maintenance. The month of operations (bench/year_of_operations.py,
smaller) ends with every table equal to a clean run over the final inputs."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pandas as pd
import pytest

from geosid import pipeline
from geosid.config import Settings
from geosid.errors import InvalidRequestError, NotArrivedError
from geosid.lake import Lake, lineage
from geosid.pipeline.context import Context

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import year_of_operations as ops  # noqa: E402

START = dt.date(2024, 6, 1)
DAYS = [START + dt.timedelta(days=k) for k in range(8)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from geosid.sources.synthetic_world import WorldConfig, write_world

    final = tmp_path_factory.mktemp("world") / "final"
    write_world(final, WorldConfig(n_days=len(DAYS), n_users=80, n_stores=20, n_brands=6, start_date=START.isoformat()), progress=False)
    return final


def context(spark, root: Path) -> Context:
    settings = Settings(lake_root=root)
    return Context(settings, spark, Lake(root, spark))


def arrive(ctx: Context, world: Path, raw: Path, day: dt.date, geo: bool = False, corrupt: bool = False):
    """A day's drop delivered (with wrong rows if `corrupt`) and ingested; its geo built if `geo`."""
    ops.deliver(world, raw, day, corrupt=corrupt)
    outcome = pipeline.ingest("synthetic", day, day, raw, validate=False, ctx=ctx)
    if geo:
        pipeline.geo(day, ctx=ctx)
    return outcome


def indexed_days(ctx: Context, world: Path, raw: Path, last: dt.date, capacity_aware: bool) -> str:
    """The days up to `last` delivered and ingested, their geo and embeddings, and a small
    codebook fit on `last` and published as of it: its version."""
    for day in DAYS[: DAYS.index(last) + 1]:
        ops.deliver(world, raw, day)
    pipeline.ingest("synthetic", DAYS[0], last, raw, validate=False, ctx=ctx)
    pipeline.context_snapshots(DAYS[0], last, every=1, ctx=ctx)
    pipeline.geo(last, ctx=ctx)
    pipeline.embed(last, ctx=ctx)
    spec = pipeline.CodebookSpec("residual_kmeans", codes=(8, 8), niter=5, capacity_aware=capacity_aware)
    version = pipeline.fit_codebook(spec, last, ctx=ctx).codebook_version
    pipeline.publish_codebook(version, last, ops.GATES, ctx=ctx)
    return version


# ---------------------------------------------------------------------------------------
# Inputs: arrival, completeness, digests


def test_a_drop_without_its_marker_has_not_arrived_and_a_range_leaves_it_alone(spark, tmp_path, world):
    raw = tmp_path / "raw"
    for day in DAYS[:3]:
        ops.deliver(world, raw, day)
    (ops.drop_folder(raw, "events", DAYS[1]) / "_SUCCESS").unlink()  # day 2's events still arriving
    ctx = context(spark, tmp_path / "lake")
    with pytest.raises(NotArrivedError, match="2024-06-02 has not arrived"):
        pipeline.ingest("synthetic", DAYS[1], DAYS[1], raw, validate=False, ctx=ctx)
    outcome = pipeline.ingest("synthetic", DAYS[0], DAYS[2], raw, validate=False, ctx=ctx)
    assert outcome.report.days == [DAYS[0], DAYS[2]] and outcome.report.waiting == [DAYS[1]]
    assert sorted(outcome.inputs.new) == [DAYS[0], DAYS[2]]
    state = lineage.lake_state(ctx.lake)
    assert [s.waiting for s in state.sources] == [[DAYS[1]]]
    # no derived day on top of the hole: day 3 waits, day 1 does not
    pipeline.geo(DAYS[0], ctx=ctx)
    with pytest.raises(NotArrivedError, match="synthetic 2024-06-02"):
        pipeline.geo(DAYS[2], ctx=ctx)
    assert not pipeline.drop_arrived("synthetic", DAYS[1], raw, ctx=ctx)
    assert pipeline.drop_arrived("synthetic", DAYS[2], raw, ctx=ctx)


def test_an_identical_redelivery_changes_nothing_and_a_corrected_one_makes_later_days_stale(spark, tmp_path, world):
    raw = tmp_path / "raw"
    ctx = context(spark, tmp_path / "lake")
    for day in DAYS[:3]:
        arrive(ctx, world, raw, day, geo=True)
    again = arrive(ctx, world, raw, DAYS[1])  # the same files again: new times, same content
    assert again.inputs.unchanged == [DAYS[1]] and not again.inputs.changed
    assert pipeline.status(ctx=ctx).stale == 0

    changed = arrive(ctx, world, raw, DAYS[1], corrupt=True)  # other rows for day 2
    assert changed.inputs.changed == [DAYS[1]]
    report = pipeline.status(ctx=ctx)
    cells = report.state.scope("silver.geo_cells", "geohash6")
    assert cells.fresh == [DAYS[0]] and cells.stale == DAYS[1:3]
    assert "input synthetic 2024-06-02 changed at" in cells.why[DAYS[1]]
    assert "stale 2024-06-02 .. 2024-06-03" in report.summary()

    repaired = pipeline.repair(validate=False, ctx=ctx)
    assert repaired.days == DAYS[1:3] and repaired.tables == {"silver.geo_cells": 2, "silver.item_geo": 2}
    assert pipeline.status(ctx=ctx).stale == 0
    # the repaired days equal days built once from the corrected inputs
    clean = context(spark, tmp_path / "clean")
    for day in DAYS[:3]:
        pipeline.ingest("synthetic", day, day, raw, validate=False, ctx=clean)
        pipeline.geo(day, ctx=clean)
    for table in ("silver.geo_cells", "silver.item_geo"):
        assert ctx.lake.digest(table) == clean.lake.digest(table), table


def test_a_closed_day_builds_as_empty_until_its_drop_arrives(spark, tmp_path, world):
    raw = tmp_path / "raw"
    ctx = context(spark, tmp_path / "lake")
    ops.deliver(world, raw, DAYS[0])
    ops.deliver(world, raw, DAYS[2])
    pipeline.ingest("synthetic", DAYS[0], DAYS[2], raw, validate=False, ctx=ctx)
    with pytest.raises(InvalidRequestError, match="say why"):
        pipeline.close_day("synthetic", DAYS[1], " ", ctx=ctx)
    with pytest.raises(InvalidRequestError, match="has arrived"):
        pipeline.close_day("synthetic", DAYS[0], "no", ctx=ctx)
    pipeline.close_day("synthetic", DAYS[1], "partner outage", ctx=ctx)
    assert pipeline.drop_arrived("synthetic", DAYS[1], raw, ctx=ctx)
    pipeline.geo(DAYS[2], ctx=ctx)  # no longer waits
    text = pipeline.status(ctx=ctx).summary()
    assert "1 closed as missing (2024-06-02)" in text
    arrive(ctx, world, raw, DAYS[1])  # it came after all
    state = lineage.lake_state(ctx.lake).scope("silver.geo_cells", "geohash6")
    assert state.stale == [DAYS[2]]


def test_the_input_chain_and_day_predicates():
    inputs = pd.DataFrame(
        {
            "source": ["a", "b", "a"],
            "dt": [DAYS[0], DAYS[0], DAYS[2]],
            "digest": ["x", "y", "z"],
        }
    )
    chain = lineage.InputChain(inputs)
    assert chain.at(DAYS[0]) == chain.at(DAYS[1]) != chain.at(DAYS[2])
    assert chain.at(START - dt.timedelta(days=1)) == "empty"
    changed = lineage.InputChain(inputs.assign(digest=["x", "y", "w"]))
    assert changed.at(DAYS[1]) == chain.at(DAYS[1]) and changed.at(DAYS[2]) != chain.at(DAYS[2])
    assert lineage.InputChain(inputs.iloc[::-1]).at(DAYS[2]) == chain.at(DAYS[2])  # order-free
    assert lineage.days_predicate([DAYS[3], DAYS[0], DAYS[1]]) == ("((dt >= DATE'2024-06-01' AND dt <= DATE'2024-06-02') OR dt = DATE'2024-06-04')")


# ---------------------------------------------------------------------------------------
# State checkpoints


def test_compaction_keeps_every_checkpoint_day_and_nothing_else(spark):
    """Against a reference: a user's row of day a answers every day until its next row;
    after compaction as of day D, the state as of every checkpoint day (the daily window
    and the Sundays before it) is what it was, and a row answering none is gone."""
    from geosid.jobs.corpus import CorpusConfig, checkpoint_days, compacted_states, latest_states

    config = CorpusConfig.for_source("synthetic", checkpoint_days=5, checkpoint_weeks=2)
    as_of = dt.date(2024, 7, 31)  # a Wednesday
    rows = [("u1", as_of - dt.timedelta(days=k)) for k in (0, 3, 6, 9, 10, 11, 17, 25, 40)]
    rows += [("u2", dt.date(2024, 7, 1)), ("u2", dt.date(2024, 7, 2))]
    frame = spark.createDataFrame(
        [("v", "s", user, day, 0) for user, day in rows], "codebook_version string, source string, user_id string, dt date, user_bucket int"
    )
    kept = {(r.user_id, r.dt) for r in compacted_states(frame, as_of, config).collect()}
    days = checkpoint_days(config, as_of)
    assert days[-5:] == tuple(as_of - dt.timedelta(days=k) for k in range(4, -1, -1))
    assert all(d.isoweekday() == 7 for d in days[:-5]) and len(days) == 5 + 2
    for day in days:  # every checkpoint still answered the same
        before = {(r.user_id, r.dt) for r in latest_states(frame, day).collect()}
        assert before <= kept, day
    needed = {(r.user_id, r.dt) for day in days for r in latest_states(frame, day).collect()}
    assert kept == needed | {(u, d) for u, d in rows if d > as_of}


# ---------------------------------------------------------------------------------------
# Maintenance


def test_maintenance_compacts_and_vacuums_but_keeps_a_pinned_snapshot(spark, tmp_path, world):
    from geosid.lake.maintenance import folder_size
    from geosid.trainer.runs import RunRecord, save_run

    raw = tmp_path / "raw"
    ctx = context(spark, tmp_path / "lake")
    for day in DAYS[:4]:
        arrive(ctx, world, raw, day)
        if day == DAYS[1]:  # a training run pins the table as of the first two days
            pinned = ctx.lake.table_version("bronze.events")
            rows_then = ctx.lake.to_arrow("bronze.events", version=pinned).num_rows
            manifest = {"table_versions": {"bronze.events": pinned}}
            record = RunRecord(run_id="pinned", kind="pretrain", manifest=manifest, model_config={}, train_config={}, metrics={})
            save_run(ctx.lake.root, record, {})
    events = ctx.lake.path("bronze.events")
    for day in DAYS[:4]:  # re-runs replace every file: the first two days' old ones are pinned, the others not
        pipeline.ingest("synthetic", day, day, raw, validate=False, ctx=ctx)
    before = folder_size(events)
    report = pipeline.maintain(retention_hours=0, log_retention_hours=0, ctx=ctx)
    events_report = next(t for t in report.tables if t.table == "bronze.events")
    assert events_report.vacuumed > 0 and events_report.kept_for_snapshots > 0
    assert folder_size(events).data_bytes < before.data_bytes
    assert ctx.lake.to_arrow("bronze.events", version=pinned).num_rows == rows_then  # the pinned version still loads
    assert "bronze.events" in report.summary() and report.bytes_after < report.bytes_before
    forced = pipeline.maintain(retention_hours=0, log_retention_hours=0, force=True, tables=["bronze.events"], ctx=ctx)
    assert forced.tables[0].vacuumed > 0
    with pytest.raises(Exception):
        ctx.lake.to_arrow("bronze.events", version=pinned)


def test_a_repair_under_a_codebook_assigned_on_the_last_day_equals_a_rebuild(spark, tmp_path, world):
    """The demo's shape: every SID given on the last day (the fit's), the corpus built
    after it; a corrected earlier day takes those SIDs back, and the corpus days before the
    last must still see them again."""
    from geosid.schemas.corpus import TRAINING_SEQUENCES

    raw, ctx = tmp_path / "raw", context(spark, tmp_path / "lake")
    first, last = DAYS[0], DAYS[5]
    version = indexed_days(ctx, world, raw, last, capacity_aware=True)
    pipeline.corpus_build("synthetic", first, last, version, validate=False, ctx=ctx)

    arrive(ctx, world, raw, DAYS[3], corrupt=True)
    repaired = pipeline.repair(validate=False, ctx=ctx)
    assert repaired.days[0] == DAYS[3] and pipeline.status(ctx=ctx).stale == 0
    assert repaired.sids_moved == 0
    scope, days = f"codebook_version = '{version}'", (DAYS[3], last)
    after_repair = ctx.lake.digest(TRAINING_SEQUENCES, dt=days, where=scope)
    pipeline.corpus_build("synthetic", first, last, version, validate=False, ctx=ctx)
    assert after_repair[0] > 0 and after_repair == ctx.lake.digest(TRAINING_SEQUENCES, dt=days, where=scope)


def test_a_day_after_a_skipped_one_continues_from_the_nearest_checkpoint(spark, tmp_path, world):
    """`corpus day` for a day whose yesterday was never built: the state goes back to the
    checkpoint before it, the skipped day is built, then the day; as a rebuild would."""
    from geosid.schemas.corpus import TRAINING_SEQUENCES

    raw, ctx = tmp_path / "raw", context(spark, tmp_path / "lake")
    first, last = DAYS[0], DAYS[5]
    version = indexed_days(ctx, world, raw, last, capacity_aware=False)
    pipeline.corpus_build("synthetic", first, DAYS[3], version, validate=False, ctx=ctx)
    lines = []
    ctx.log = lines.append
    pipeline.corpus_day(last, "synthetic", version, ctx=ctx)  # DAYS[4] was never built
    assert any(f"continuing from the state checkpoint of {DAYS[3]}" in line for line in lines), lines
    scope, days = f"codebook_version = '{version}'", (DAYS[4], last)
    continued = ctx.lake.digest(TRAINING_SEQUENCES, dt=days, where=scope)
    pipeline.corpus_build("synthetic", first, last, version, validate=False, ctx=ctx)
    assert continued[0] > 0 and continued == ctx.lake.digest(TRAINING_SEQUENCES, dt=days, where=scope)


# ---------------------------------------------------------------------------------------
# A month of operations


@pytest.mark.slow
def test_a_month_of_late_corrected_missing_and_killed_days_ends_equal_to_a_clean_run(spark, tmp_path):
    scenario = ops.month()
    results = ops.simulate(scenario, tmp_path / "month", log=lambda _: None, spark=spark)
    unequal = [t for t, r in results["tables"].items() if not r["equal"]]
    assert not unequal, (unequal, results["incidents"]["repairs"])
    assert len(results["tables"]) >= 17 and results["tables"]["corpus.training_sequences"]["rows"] > 100
    assert results["stale_after"] == 0
    incidents = results["incidents"]
    assert incidents["killed"].startswith("after"), incidents["killed"]  # killed mid-day, then run again
    # repairs continued from the checkpoint before the changed day, not from the first day
    assert len(incidents["repairs"]) >= 2
    assert all("the source's first day" not in r for r in incidents["repairs"]) and any("checkpoint of" in r for r in incidents["repairs"])
    assert results["bytes_ratio"] <= 1.3
    assert results["pinned_snapshot_loads"] is True
