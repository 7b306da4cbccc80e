"""Lineage of the pipeline's steps: every step that builds derived days records them in
`ops.builds` with the inputs they were built from, and refuses to build a day on input
days that have not arrived (`NotArrivedError`). The scope of a table's builds is what
else a rebuild needs to know: the cell system, the representation, the codebook version
and corpus scope; the parameters are what a rebuild takes (recorded as JSON).
"""

from __future__ import annotations

import datetime as dt_
from collections.abc import Iterable

from geosid.errors import NotArrivedError
from geosid.lake import lineage
from geosid.pipeline.context import Context


def geo_params(config) -> dict:
    """A GeoConfig as recorded (geosid.jobs.geo.GeoConfig)."""
    return {"cells": config.cell_config.model_dump(), "window_days": config.window_days, "top_k": config.top_k}


def embed_scope(representation) -> str:
    return f"{representation.template_id}|{representation.model_id}"


def embed_params(representation) -> dict:
    location = representation.location
    return {"template": representation.template_id, "encoder": representation.encoder, "location_weight": location.weight if location else None}


def corpus_scope(codebook_version: str, source: str, protocol: str) -> str:
    return f"{codebook_version}|{source}|{protocol}"


def corpus_params(config, first: dt_.date | None = None, last: dt_.date | None = None) -> dict:
    """A CorpusConfig as recorded: the source, cells, split (and a range build's span)."""
    return {
        "source": config.source,
        "cells": config.cell_config.model_dump(),
        "split": config.split.model_dump(mode="json"),
        "first": first.isoformat() if first else None,
        "last": last.isoformat() if last else None,
    }


def record(
    ctx: Context,
    table: str,
    scope: str,
    days: Iterable[dt_.date],
    params: dict,
    mode: str = "day",
    codebook_version: str | None = None,
    continued_from: dict | None = None,
) -> None:
    lineage.record_builds(ctx.lake, table, scope, days, params, mode, codebook_version, continued_from)


def require_arrived(ctx: Context, day: dt_.date) -> None:
    """Refuse to build `day` while an input day up to it has not arrived: what is built
    on a hole would be silently wrong (a lake that records no input days is not checked)."""
    waiting = lineage.waiting_through(ctx.lake, day)
    if waiting:
        shown = ", ".join(f"{source} {d.isoformat()}" for source, d in waiting[:5]) + (" ..." if len(waiting) > 5 else "")
        raise NotArrivedError(
            f"cannot build {day}: {len(waiting)} input day(s) up to it have not arrived ({shown}); "
            "ingest them when their drops are complete, or declare one missing with `geosid days close --date D --source S`"
        )


def is_stale(ctx: Context, table: str, scope: str, day: dt_.date) -> bool:
    """Whether `table` was built for `day` under `scope` from other inputs than today's."""
    state = lineage.lake_state(ctx.lake).scope(table, scope)
    return state is not None and day in state.stale
