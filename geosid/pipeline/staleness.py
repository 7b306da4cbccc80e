"""What is stale and why: per derived table and scope, the fresh / stale / missing days
(a built day is stale when an input day it read changed since; `ops.input_days` and
`ops.builds` say which and when), the state checkpoints, and codebook versions fit on
changed inputs (reported, never refit).
"""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass, field

from geosid.lake.lineage import lake_state
from geosid.pipeline.context import Context, use
from geosid.pipeline.index import refit_advice
from geosid.pipeline.scopes import CorpusScope, Stage
from geosid.schemas import corpus


def days_text(days: list[dt_.date]) -> str:
    if not days:
        return "none"
    days = sorted(days)
    return f"{days[0]}" if len(days) == 1 else f"{days[0]} .. {days[-1]} ({len(days)} days)"


@dataclass
class StatusReport:
    state: object  # geosid.lake.lineage.LakeState
    checkpoints: dict = field(default_factory=dict)  # corpus scope -> its state checkpoint days
    refit: object | None = None  # geosid.jobs.index.drift.RefitAdvice of the version in force

    @property
    def stale(self) -> int:
        return sum(len(s.stale) + len(s.missing) for s in self.state.scopes if s.table != Stage.CODEBOOKS.table)

    def summary(self) -> str:
        state = self.state
        if not state.tracked:
            return "no input days recorded in this lake (built before lineage existed): ingest the days again to record them"
        lines = ["inputs:"]
        for s in state.sources:
            closed = f", {len(s.closed)} closed as missing ({days_text(s.closed)})" if s.closed else ""
            waiting = f"; WAITING for {len(s.waiting)}: {', '.join(d.isoformat() for d in s.waiting[:8])}" if s.waiting else ""
            known = s.known
            lines.append(
                f"  {s.source}: {len(s.complete)} complete day(s) {known[0]} .. {known[-1]}, {len(s.empty)} of them without events{closed}{waiting}"
            )
        lines.append("derived tables (fresh / stale / missing days):")
        for s in state.scopes:
            flag = "" if not (s.stale or s.missing) else "  <- repair"
            if s.table == Stage.CODEBOOKS.table and s.stale:
                flag = "  <- fit on inputs that changed since (a version is immutable: fit a new one to include them)"
            lines.append(
                f"  {s.table:<27} {s.scope[:60]:<60} {len(s.fresh):>5} / {len(s.stale):>3} / {len(s.missing):>3}  built {days_text(s.built)}{flag}"
            )
            if s.stale:
                first = min(s.stale)
                lines.append(f"      stale {days_text(s.stale)}: {s.why[first]}")
            if s.missing:
                lines.append(f"      missing {days_text(s.missing)}: never built between daily builds (a run that failed)")
            if s.scope in self.checkpoints:
                days = self.checkpoints[s.scope]
                lines.append(f"      state checkpoints: {len(days)} ({days_text(days)})")
        if not state.scopes:
            lines.append("  (none built yet)")
        if self.refit is not None:
            lines.append(f"codebook drift: {self.refit.summary()}")
        lines.append(f"{self.stale} stale or missing day(s) to repair" + (": geosid repair" if self.stale else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "tracked": self.state.tracked,
            "inputs": {
                s.source: {"complete": len(s.complete), "closed": [d.isoformat() for d in s.closed], "waiting": [d.isoformat() for d in s.waiting]}
                for s in self.state.sources
            },
            "tables": [
                {
                    "table": s.table,
                    "scope": s.scope,
                    "fresh": len(s.fresh),
                    "stale": [d.isoformat() for d in s.stale],
                    "missing": [d.isoformat() for d in s.missing],
                    "why": {d.isoformat(): w for d, w in s.why.items()},
                }
                for s in self.state.scopes
            ],
            "stale": self.stale,
            "refit": None if self.refit is None else self.refit.to_dict(),
        }


def status(*, ctx: Context | None = None, lake_root: str | None = None) -> StatusReport:
    """Per source the days that arrived, were closed or are awaited; per derived table and
    scope the fresh, stale (with the input that changed, and when) and missing days."""

    with use(ctx, lake_root, reads="status") as ctx:
        state = lake_state(ctx.lake)
        checkpoints = {}
        if ctx.lake.exists(corpus.STATE_BUILDS):
            rows = ctx.lake.read(corpus.STATE_BUILDS).select("codebook_version", "source", "dt").collect()
            for r in rows:
                checkpoints.setdefault(str(CorpusScope(r["codebook_version"], r["source"], "time")), []).append(r["dt"])
        return StatusReport(state, {k: sorted(v) for k, v in checkpoints.items()}, refit_advice(ctx=ctx))
