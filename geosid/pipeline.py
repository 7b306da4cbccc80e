"""Entry points for orchestrators: each opens its own engine session, does one step for
an explicit logical date, and returns a small JSON-able dict (dates, counts, table
versions) for XCom. Never data.
"""

from __future__ import annotations

import datetime as dt_
from pathlib import Path

from geosid.config import Settings


def _resolve_path(settings: Settings, source: str, path: str | None) -> Path:
    if path:
        return Path(path)
    if source == "tsmc2014" and settings.resolved_tsmc_path() is not None:
        return settings.resolved_tsmc_path()
    raise ValueError(f"no raw path for source {source!r}: pass path (or GEOSID_TSMC_PATH for tsmc2014)")


def ingest_day(source: str, logical_date: str | dt_.date, path: str | None = None, lake: str | None = None) -> dict:
    """Ingest one logical day of `source` into bronze; returns the run's report."""
    from geosid.jobs.engine import spark_session
    from geosid.jobs.ingest import run_ingest
    from geosid.jobs.lake import Lake, as_date

    settings = Settings.from_env(lake=lake)
    day = as_date(logical_date)
    with spark_session(settings) as spark:
        lake_ = Lake(settings.lake, spark, committer=settings.committer())
        report = run_ingest(spark, lake_, source, _resolve_path(settings, source, path), day, day, progress=False)
    return report.to_dict()


def validate_day(logical_date: str | dt_.date, lake: str | None = None) -> dict:
    """Run the bronze data-quality suites for one day; `passed` says whether the gate holds."""
    from geosid.jobs.engine import spark_session
    from geosid.jobs.lake import Lake, as_date
    from geosid.jobs.quality import validate_bronze

    settings = Settings.from_env(lake=lake)
    day = as_date(logical_date)
    with spark_session(settings) as spark:
        lake_ = Lake(settings.lake, spark, committer=settings.committer())
        results = validate_bronze(lake_, day, settings.reject_rate_threshold)
    return {
        "dt": day.isoformat(),
        "passed": all(r.success for r in results),
        "tables": {r.table: {"success": r.success, "rows": r.rows, "failed": [c["check"] for c in r.failed]} for r in results},
        "summaries": [r.summary() for r in results],
    }


def geo_day(logical_date: str | dt_.date, lake: str | None = None) -> dict:
    """silver.geo_cells and silver.item_geo for one logical date."""
    from geosid.jobs.engine import spark_session
    from geosid.jobs.geo import run_geo
    from geosid.jobs.lake import Lake

    settings = Settings.from_env(lake=lake)
    with spark_session(settings) as spark:
        report = run_geo(spark, Lake(settings.lake, spark, committer=settings.committer()), logical_date, settings.geo_config())
    return {"dt": report.dt.isoformat(), "cells": report.cells, "items": report.items, "versions": report.versions}


def embed_day(logical_date: str | dt_.date, lake: str | None = None) -> dict:
    """Embed the new and changed item documents of one logical date."""
    from geosid.jobs.embed import run_embed
    from geosid.jobs.engine import spark_session
    from geosid.jobs.lake import Lake

    settings = Settings.from_env(lake=lake)
    with spark_session(settings) as spark:
        lake_ = Lake(settings.lake, spark, committer=settings.committer())
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
    """The silver data-quality suites for one day; `passed` says whether the gate holds."""
    from geosid.jobs.engine import spark_session
    from geosid.jobs.lake import Lake, as_date
    from geosid.jobs.quality import validate_silver

    settings = Settings.from_env(lake=lake)
    day = as_date(logical_date)
    with spark_session(settings) as spark:
        results = validate_silver(Lake(settings.lake, spark, committer=settings.committer()), day)
    return {
        "dt": day.isoformat(),
        "passed": all(r.success for r in results),
        "tables": {r.table: {"success": r.success, "rows": r.rows, "failed": [c["check"] for c in r.failed]} for r in results},
        "summaries": [r.summary() for r in results],
    }
