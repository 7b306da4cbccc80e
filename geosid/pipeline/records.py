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
from geosid.pipeline.scopes import Scope, Stage


def corpus_params(config, first: dt_.date | None = None, last: dt_.date | None = None) -> dict:
    """A corpus build as recorded: its config (`CorpusConfig.to_record`) and a range build's span."""
    return {**config.to_record(), "first": first.isoformat() if first else None, "last": last.isoformat() if last else None}


def record(
    ctx: Context,
    stage: Stage,
    scope: Scope,
    days: Iterable[dt_.date],
    params: dict,
    mode: str = "day",
    codebook_version: str | None = None,
    continued_from: dict | None = None,
) -> None:
    """Record that `stage` built `days` under `scope` with `params` (a config's `to_record()`)."""
    lineage.record_builds(ctx.lake, stage.table, str(scope), days, params, mode, codebook_version, continued_from)


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


def is_stale(ctx: Context, stage: Stage, scope: Scope, day: dt_.date) -> bool:
    """Whether `stage` was built for `day` under `scope` from other inputs than today's."""
    state = lineage.lake_state(ctx.lake).scope(stage.table, str(scope))
    return state is not None and day in state.stale
