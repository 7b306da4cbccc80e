"""One small synthetic world through ingest -> geo -> embed -> codebook -> assign -> corpus
on a given engine session, for the tests that compare engines (JVM Spark, a cluster) with
the embedded default by table digests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

DAYS = [dt.date(2024, 6, 1) + dt.timedelta(days=k) for k in range(2)]


def write_small_world(raw: Path) -> Path:
    from geosid.sources.synthetic_world import WorldConfig, write_world

    write_world(raw, WorldConfig(n_days=len(DAYS), n_users=120, n_stores=30, n_brands=8, start_date=DAYS[0].isoformat()), progress=False)
    return raw


def run_flow(session, settings, raw: Path) -> Path:
    """The steps on `session` into `settings.lake_root`; returns the lake's root."""
    from geosid import pipeline
    from geosid.lake import Lake
    from geosid.pipeline.context import Context

    lake = Lake(settings.lake_root, session, committer=settings.committer(), reader=settings.reader())
    ctx = Context(settings, session, lake)
    pipeline.ingest("synthetic", DAYS[0], DAYS[-1], raw, ctx=ctx)
    pipeline.geo(DAYS[-1], ctx=ctx)
    pipeline.embed(DAYS[-1], template="geo-doc-v1", ctx=ctx)
    fit = pipeline.fit_codebook(pipeline.CodebookSpec("residual_kmeans", codes=(8, 8, 8), niter=5), DAYS[-1], template="geo-doc-v1", ctx=ctx)
    gates = {"max_excess_conflict": 1.0, "min_exclusive_rate": 0.0, "min_code_usage": 0.0}
    pipeline.publish_codebook(fit.codebook_version, DAYS[-1], gates, ctx=ctx)
    pipeline.assign_day(DAYS[-1], ctx=ctx)
    pipeline.corpus_build("synthetic", DAYS[0], DAYS[-1], fit.codebook_version, pipeline.split_config("user_chrono", DAYS[-1]), ctx=ctx)
    # the time protocol: the first day from scratch, the next incrementally from its history state
    pipeline.corpus_build("synthetic", DAYS[0], DAYS[0], fit.codebook_version, pipeline.split_config("time", DAYS[-1]), ctx=ctx)
    day = pipeline.corpus_day(DAYS[-1], "synthetic", fit.codebook_version, ctx=ctx)
    assert day.sequences.mode == "day", day.sequences.summary()
    return Path(settings.lake_root)


def table_digests(spark, root: Path) -> dict:
    """Every table's digest, read through `spark` (the same engine for both lakes, so only
    the tables' contents are compared)."""
    from geosid.lake import Lake
    from geosid.schemas import REGISTRY

    lake = Lake(root, spark)
    return {spec.name: lake.digest(spec, content=True) for spec in REGISTRY if lake.exists(spec)}
