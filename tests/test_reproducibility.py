"""Re-running an old logical date, after later days were added, reproduces that date's
tables byte for byte: every step reads only what existed for its date (the codebook
version in force that day, embeddings made by then, the geo snapshot before it)."""

import datetime as dt

import pytest

from geosid import pipeline
from geosid.schemas import bronze, corpus, index, silver
from geosid.sources.synthetic_world import WorldConfig, write_world

DAYS = [dt.date(2024, 6, 1) + dt.timedelta(days=k) for k in range(3)]


def run_day(ctx, raw, day):
    pipeline.ingest("synthetic", day, day, raw, ctx=ctx)
    pipeline.geo(day, ctx=ctx)
    pipeline.embed(day, ctx=ctx)
    pipeline.assign_day(day, ctx=ctx)
    return pipeline.corpus_day(day, "synthetic", ctx=ctx)


def day_digests(lake, day) -> dict:
    out = {}
    for spec in (bronze.EVENTS, bronze.ITEMS, bronze.REJECTS, silver.GEO_CELLS, silver.ITEM_GEO, corpus.TRAINING_SEQUENCES, corpus.CELL_CONTEXT):
        out[spec.name] = lake.digest(spec, dt=day)
    out["index.sid_map@day"] = lake.digest(index.SID_MAP, where=f"assigned_dt = DATE'{day}'")
    out["index.sid_map"] = lake.digest(index.SID_MAP)
    out["silver.item_embeddings"] = lake.digest(silver.ITEM_EMBEDDINGS)
    return out


@pytest.mark.slow
def test_rerun_of_an_old_date_after_later_days_reproduces_its_tables(spark, tmp_path):
    from geosid.config import Settings
    from geosid.lake import Lake
    from geosid.pipeline.context import Context

    raw = tmp_path / "raw"
    # new videos every day and a busy city: documents (area density) change from day to day
    write_world(
        raw,
        WorldConfig(n_days=3, n_users=400, n_stores=60, n_brands=15, start_date=DAYS[0].isoformat(), new_video_fraction_per_day=0.2),
        progress=False,
    )
    settings = Settings(lake_root=tmp_path / "lake")
    ctx = Context(settings, spark, Lake(settings.lake_root, spark))

    # day 1, then a codebook fitted and published as of day 1, in force from then on
    run_day(ctx, raw, DAYS[0])
    fit = pipeline.fit_codebook(pipeline.CodebookSpec("residual_kmeans", codes=(8, 8, 8), niter=5), DAYS[0], ctx=ctx)
    gates = {"max_excess_conflict": 1.0, "min_exclusive_rate": 0.0, "min_code_usage": 0.0}
    pipeline.publish_codebook(fit.codebook_version, DAYS[0], gates, ctx=ctx)
    pipeline.assign_day(DAYS[0], ctx=ctx)
    assert pipeline.corpus_day(DAYS[0], "synthetic", ctx=ctx).codebook_version == fit.codebook_version
    run_day(ctx, raw, DAYS[1])
    before = day_digests(ctx.lake, DAYS[1])
    assert before["corpus.training_sequences"][0] > 0 and before["index.sid_map@day"][0] > 0

    # later days arrive, and a newer codebook is published as of day 3
    run_day(ctx, raw, DAYS[2])
    newer = pipeline.fit_codebook(pipeline.CodebookSpec("residual_kmeans", codes=(8, 8, 8), niter=5, seed=7), DAYS[2], ctx=ctx)
    pipeline.publish_codebook(newer.codebook_version, DAYS[2], gates, ctx=ctx)
    embeddings_after_day3 = ctx.lake.digest(silver.ITEM_EMBEDDINGS)
    assert embeddings_after_day3 != before["silver.item_embeddings"]  # day 3 embedded new / changed documents

    # re-run day 2 end to end: the version in force on day 2 is still the first one
    rerun = run_day(ctx, raw, DAYS[1])
    assert rerun.codebook_version == fit.codebook_version
    after = day_digests(ctx.lake, DAYS[1])
    for table in (
        "bronze.events",
        "bronze.items",
        "bronze.rejects",
        "silver.geo_cells",
        "silver.item_geo",
        "corpus.training_sequences",
        "corpus.cell_context",
        "index.sid_map@day",
    ):
        assert after[table] == before[table], table
    # and it moved nothing of the later days: no embedding went back in time
    assert ctx.lake.digest(silver.ITEM_EMBEDDINGS) == embeddings_after_day3
