"""Entry points for orchestrators: each opens its own engine session, does one step for
an explicit logical date, and returns a small JSON-able dict (dates, counts, table
versions) for XCom. Never data.
"""

from __future__ import annotations

import datetime as dt_
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geosid.config import Settings


@contextmanager
def _lake(lake: str | None) -> Iterator[tuple]:
    """(settings, spark, Lake) for one step."""
    from geosid.jobs.engine import spark_session
    from geosid.jobs.lake import Lake

    settings = Settings.from_env(lake=lake)
    with spark_session(settings) as spark:
        yield settings, spark, Lake(settings.lake, spark, committer=settings.committer())


def _resolve_path(settings: Settings, source: str, path: str | None) -> Path:
    if path:
        return Path(path)
    if source == "tsmc2014" and settings.resolved_tsmc_path() is not None:
        return settings.resolved_tsmc_path()
    raise ValueError(f"no raw path for source {source!r}: pass path (or GEOSID_TSMC_PATH for tsmc2014)")


def _gate_outcome(day: dt_.date, results) -> dict:
    return {
        "dt": day.isoformat(),
        "passed": all(r.success for r in results),
        "tables": {r.table: {"success": r.success, "rows": r.rows, "failed": [c["check"] for c in r.failed]} for r in results},
        "summaries": [r.summary() for r in results],
    }


def ingest_day(source: str, logical_date: str | dt_.date, path: str | None = None, lake: str | None = None) -> dict:
    """Ingest one logical day of `source` into bronze; returns the run's report."""
    from geosid.jobs.ingest import run_ingest
    from geosid.jobs.lake import as_date

    day = as_date(logical_date)
    with _lake(lake) as (settings, spark, lake_):
        report = run_ingest(spark, lake_, source, _resolve_path(settings, source, path), day, day, progress=False)
    return report.to_dict()


def validate_day(logical_date: str | dt_.date, lake: str | None = None) -> dict:
    """Run the bronze data-quality suites for one day; `passed` says whether the gate holds."""
    from geosid.jobs.lake import as_date
    from geosid.jobs.quality import validate_bronze

    day = as_date(logical_date)
    with _lake(lake) as (settings, _spark, lake_):
        return _gate_outcome(day, validate_bronze(lake_, day, settings.reject_rate_threshold))


def geo_day(logical_date: str | dt_.date, lake: str | None = None) -> dict:
    """silver.geo_cells and silver.item_geo for one logical date."""
    from geosid.jobs.geo import GeoConfig, run_geo

    with _lake(lake) as (settings, spark, lake_):
        report = run_geo(spark, lake_, logical_date, GeoConfig.from_settings(settings))
    return {"dt": report.dt.isoformat(), "cells": report.cells, "items": report.items, "versions": report.versions}


def embed_day(logical_date: str | dt_.date, lake: str | None = None) -> dict:
    """Embed the new and changed item documents of one logical date."""
    from geosid.jobs.embed import run_embed

    with _lake(lake) as (settings, spark, lake_):
        report = run_embed(spark, lake_, logical_date, settings.encoder, progress=False)
    return {
        "dt": report.dt.isoformat(),
        "model_id": report.model_id,
        "template_id": report.template_id,
        "items": report.items,
        "embedded": report.embedded,
        "version": report.version,
    }


def validate_silver_day(logical_date: str | dt_.date, lake: str | None = None) -> dict:
    """The silver (and SID map) data-quality suites for one day."""
    from geosid.jobs.lake import as_date
    from geosid.jobs.quality import validate_silver

    day = as_date(logical_date)
    with _lake(lake) as (_settings, _spark, lake_):
        return _gate_outcome(day, validate_silver(lake_, day))


def fit_codebook(method: str, logical_date: str | dt_.date, codes: str | None = None, lake: str | None = None) -> dict:
    """Fit a candidate codebook version on the latest embeddings snapshot."""
    from geosid.jobs.index import CodebookSpec, fit_candidate

    spec = CodebookSpec(method=method, codes=tuple(int(c) for c in codes.split(",")) if codes else None)
    with _lake(lake) as (_settings, spark, lake_):
        report = fit_candidate(spark, lake_, spec, logical_date)
    return {"version": report.version, "method": report.method, "n_items": report.n_items, "metrics": report.metrics}


def publish_codebook(version: str, logical_date: str | dt_.date, gates: dict | None = None, lake: str | None = None) -> dict:
    """Publish a candidate after its gates (GateError when it fails them)."""
    from geosid.jobs.index import Gates, publish

    with _lake(lake) as (_settings, spark, lake_):
        return publish(spark, lake_, version, logical_date, Gates(**(gates or {})))


def assign_day(logical_date: str | dt_.date, version: str | None = None, lake: str | None = None) -> dict:
    """SIDs for the day's items not yet tokenized under `version` (default: the published one)."""
    from geosid.jobs.index import assign_sids, published_version

    with _lake(lake) as (_settings, spark, lake_):
        version = version or published_version(lake_)
        if version is None:
            return {"dt": str(logical_date), "version": None, "new_items": 0, "skipped": "no published codebook version"}
        report = assign_sids(spark, lake_, version, logical_date)
    return {"dt": report.dt.isoformat(), "version": version, "new_items": report.new_items, "total_items": report.total_items}


def days_between(first: str | dt_.date, last: str | dt_.date) -> list[str]:
    from geosid.jobs.lake import date_bounds

    start, end = date_bounds((first, last))
    return [(start + dt_.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def corpus_config(source: str, settings: Settings, test_start=None, valid_start=None, protocol: str = "time"):
    """The source's corpus shape with the lake's cell system and the given split."""
    from geosid.jobs.corpus import CorpusConfig, SplitConfig

    split = SplitConfig(protocol=protocol, test_start=test_start or None, valid_start=valid_start or None)
    return CorpusConfig.for_source(
        source,
        cell_system=settings.cell_system,
        precision=settings.geohash_precision,
        resolution=settings.h3_resolution,
        split=split,
    )


def corpus_day(
    logical_date: str | dt_.date,
    source: str,
    version: str | None = None,
    test_start: str | None = None,
    valid_start: str | None = None,
    lake: str | None = None,
) -> dict:
    """corpus.cell_context and the day's training sequences under `version` (default: the
    published one), continuing yesterday's history state. With no state yet (a new
    version, or the first run), the corpus is rebuilt from the first day of the source."""
    from geosid.jobs.corpus import MissingStateError, build_cell_context, build_day, build_range, corpus_scan
    from geosid.jobs.index import published_version
    from geosid.jobs.lake import as_date

    day = as_date(logical_date)
    with _lake(lake) as (settings, spark, lake_):
        version = version or published_version(lake_)
        if version is None:
            return {"dt": day.isoformat(), "version": None, "skipped": "no published codebook version"}
        config = corpus_config(source, settings, test_start, valid_start)
        context = build_cell_context(spark, lake_, day, day, config.cells())
        try:
            report = build_day(spark, lake_, version, day, config)
        except MissingStateError:
            first = corpus_scan(lake_, source)[0]
            report = build_range(spark, lake_, version, first, day, config)
    return {"dt": day.isoformat(), "context_rows": context.rows, **report.to_dict()}


def rebuild_corpus(
    version: str,
    first: str | dt_.date,
    last: str | dt_.date,
    source: str,
    test_start: str | None = None,
    valid_start: str | None = None,
    protocol: str = "time",
    lake: str | None = None,
) -> dict:
    """Rebuild corpus.cell_context and the sequences of [first, last] under `version`
    from scratch (the backfill path), with the history state as of `last`."""
    from geosid.jobs.corpus import build_cell_context, build_range

    with _lake(lake) as (settings, spark, lake_):
        config = corpus_config(source, settings, test_start, valid_start, protocol)
        context = build_cell_context(spark, lake_, first, last, config.cells())
        report = build_range(spark, lake_, version, first, last, config)
    return {"context_rows": context.rows, **report.to_dict()}


def validate_corpus_day(
    logical_date: str | dt_.date, version: str | None = None, last: str | dt_.date | None = None, lake: str | None = None
) -> dict:
    """The corpus suites of a day (or of [logical_date, last]) under `version`."""
    from geosid.jobs.index import published_version, version_row
    from geosid.jobs.lake import as_date
    from geosid.jobs.quality import validate_corpus

    day = as_date(logical_date)
    with _lake(lake) as (settings, _spark, lake_):
        version = version or published_version(lake_)
        if version is None:
            return {"dt": day.isoformat(), "passed": True, "tables": {}, "summaries": ["no published version: no corpus"]}
        sizes = tuple(int(s) for s in version_row(lake_, version)["level_sizes"])
        cells = corpus_config("tsmc2014", settings).cells().name
        span = (day, as_date(last)) if last else day
        return _gate_outcome(day, validate_corpus(lake_, span, version, sizes, cells))
