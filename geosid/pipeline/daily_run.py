"""The daily run as the daily DAG runs it: the day's drop and any earlier drop that
arrived late or was re-delivered since, the repair of stale earlier days and the build of
days still pending before it, the day itself, and the repair of later days a re-run of
an old day made stale. No derived day is built while an input day up to it has not
arrived (a drop without its marker, never ingested, not closed): the run waits, and says
for what. Closing a day whose drop will not come.
"""

from __future__ import annotations

import datetime as dt_
import time
from dataclasses import dataclass, field
from pathlib import Path

from geosid.config import Settings
from geosid.errors import InvalidRequestError, NotArrivedError
from geosid.jobs.corpus import SplitConfig
from geosid.lake import DateLike, Lake, as_date, day_runs, days_between
from geosid.lake.arrow import EMPTY_DIGEST
from geosid.lake.lineage import input_days, lake_state, record_inputs
from geosid.pipeline.bronze import ingest, not_arrived, validate_bronze
from geosid.pipeline.context import Context, use
from geosid.pipeline.corpus import corpus_day, validate_corpus
from geosid.pipeline.index import assign_day
from geosid.pipeline.records import require_arrived
from geosid.pipeline.repairs import RepairReport, repair
from geosid.pipeline.scopes import CellScope, Stage
from geosid.pipeline.silver import embed, geo, validate_silver
from geosid.pipeline.staleness import days_text
from geosid.schemas import bronze
from geosid.sources.registry import get_source


def drop_arrived(source: str, day: DateLike, path: str | Path | None = None, *, ctx: Context | None = None, lake_root: str | None = None) -> bool:
    """Whether the day's run can go ahead: its drop is complete in every feed (a
    whole-history file holds the days up to its last one), or the day was closed as
    missing. What the daily DAG's sensor pokes (no engine needed)."""

    day = as_date(day)
    settings = ctx.settings if ctx is not None else Settings.from_env(lake_root=lake_root)
    spec = get_source(source)
    if spec.has_arrived(spec.raw_path(path, settings), settings.drop_marker, day):
        return True
    known = input_days(ctx.lake if ctx is not None else Lake(settings.lake_root))
    return bool(len(known[(known.source == source) & (known.dt == day) & (known.status == "closed")]))


def ingest_arrivals(source: str, day: DateLike, path: str | Path | None = None, *, ctx: Context | None = None, lake_root: str | None = None):
    """Ingest the day's input, and every earlier one that arrived since: of drops, every
    earlier drop (from the source's first recorded day) that arrived late or was
    re-delivered (its files differ from the ingested ones; the same content changes
    nothing downstream); of a whole-history file, every day up to this one never ingested
    (a backfill's later day, run first, brings its earlier days with it). Returns the
    ingest outcomes (the day's last)."""

    day = as_date(day)
    with use(ctx, lake_root, writes=f"ingest {source} {day}") as ctx:
        spec = get_source(source)
        raw = spec.raw_path(path, ctx.settings)
        marker = ctx.settings.drop_marker
        known = input_days(ctx.lake)
        known = known[known.source == source]
        closed = set(known[known.status == "closed"].dt)
        first_known = min(known.dt) if len(known) else day
        if not spec.has_arrived(raw, marker, day) and day not in closed:
            raise NotArrivedError(f"{not_arrived(spec, raw, marker, day)}: the daily run waits for it")
        arrived = spec.arrived(raw, marker)
        if arrived is None:  # a whole-history file: the days it holds that were never ingested, and the day
            ingested = set(known.dt)
            late = [d for d in days_between(first_known, day) if d < day and d not in ingested and spec.has_arrived(raw, marker, d)]
            files = {}
        else:
            files = dict(zip(known.dt, known.files))
            late = [d for d, fingerprint in sorted(arrived.items()) if first_known <= d < day and files.get(d) != fingerprint]
        outcomes = []
        for first, last in day_runs(late):
            ctx.log(f"{source}: {days_text(days_between(first, last))} arrived late, were re-delivered or never ingested")
            outcomes.append(ingest(source, first, last, raw, validate=False, ctx=ctx))
        if spec.has_arrived(raw, marker, day):
            outcomes.append(ingest(source, day, day, raw, validate=False, ctx=ctx))
        else:
            ctx.log(f"{source} {day} was closed as missing: the day builds as empty")
        return outcomes


def close_day(source: str, day: DateLike, note: str, *, ctx: Context | None = None, lake_root: str | None = None):
    """Declare that a day's drop will not come (an operator's decision, with the reason):
    the day counts as empty, so later days build; if the drop arrives after all, ingesting
    it makes the later days stale and the daily run repairs them."""

    day = as_date(day)
    if not note or not note.strip():
        raise InvalidRequestError("say why the day is closed (--reason): it is shown by geosid status")
    with use(ctx, lake_root, writes=f"days close {source} {day}") as ctx:
        spec = get_source(source)
        known = input_days(ctx.lake)
        row = known[(known.source == source) & (known.dt == day)]
        if len(row) and row.iloc[0]["status"] == "complete":
            raise InvalidRequestError(f"{source} {day} has arrived (complete): re-ingest it to change it, there is nothing to close")
        events = ctx.lake.day_digests(bronze.EVENTS, [day], {"source": source})[day]
        if events[1] != EMPTY_DIGEST:
            raise InvalidRequestError(f"{source} {day} holds {events[0]:,} bronze events: it is not missing")
        change = record_inputs(ctx.lake, source, [f.name for f in spec.feeds], [day], status="closed", note=note.strip())
        ctx.log(f"{source} {day} closed as missing ({note.strip()}): later days build without it")
        return change


@dataclass
class DailyReport:
    day: dt_.date
    source: str
    ingested: list = field(default_factory=list)  # days ingested (the day, and late or re-delivered ones)
    changed: list = field(default_factory=list)  # earlier days whose content changed
    caught_up: RepairReport | None = None  # stale earlier days repaired
    pending: list = field(default_factory=list)  # earlier days built that were never built
    repaired_after: RepairReport | None = None  # later days a re-run of this day made stale
    codebook_version: str | None = None
    gates: dict = field(default_factory=dict)  # what -> passed
    stages: dict = field(default_factory=dict)  # stage -> wall seconds (the context's timed stages, summed)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(self.gates.values())

    def summary(self) -> str:
        parts = [f"daily {self.source} {self.day}: ingested {days_text(self.ingested)}"]
        if self.changed:
            parts.append(f"changed input days {days_text(self.changed)}")
        if self.caught_up and self.caught_up.repaired:
            parts.append(f"repaired {days_text(self.caught_up.days)}")
        if self.pending:
            parts.append(f"built pending {days_text(self.pending)}")
        if self.repaired_after and self.repaired_after.repaired:
            parts.append(f"repaired later {days_text(self.repaired_after.days)}")
        gates = "all gates pass" if self.passed else "FAILED gates: " + ", ".join(k for k, v in self.gates.items() if not v)
        return "; ".join(parts) + f"; {gates}; {self.seconds:.1f}s"

    def to_dict(self) -> dict:
        return {
            "dt": self.day.isoformat(),
            "source": self.source,
            "ingested": [d.isoformat() for d in self.ingested],
            "changed": [d.isoformat() for d in self.changed],
            "pending": [d.isoformat() for d in self.pending],
            "caught_up": self.caught_up.to_dict() if self.caught_up else None,
            "repaired_after": self.repaired_after.to_dict() if self.repaired_after else None,
            "codebook_version": self.codebook_version,
            "gates": self.gates,
            "passed": self.passed,
            "stages": {k: round(v, 2) for k, v in self.stages.items()},
            "seconds": round(self.seconds, 2),
        }


def stage_seconds(timings: list[tuple[str, float]]) -> dict[str, float]:
    """Timed stages summed by label, in the order they first ran."""
    out: dict[str, float] = {}
    for label, seconds in timings:
        out[label] = out.get(label, 0.0) + seconds
    return out


def pending_days(ctx: Context, before: dt_.date) -> list[dt_.date]:
    """Days before `before` whose inputs arrived after the last day the daily run built
    (its first step, the geo context with items, says which): what runs that went ahead
    out of order, or a catch-up after a late drop, still have to build."""

    state = lake_state(ctx.lake)
    built = state.scope(Stage.ITEM_GEO.table, str(CellScope(ctx.settings.cells.name)))
    if built is None or not built.built:
        return []
    last = max(built.built)
    arrived = sorted({d for s in state.sources for d in s.known if last < d < before})
    waiting = state.waiting_through(before)
    if waiting:
        blocked = min(d for _, d in waiting)
        arrived = [d for d in arrived if d < blocked]
    return arrived


def build_day(
    day: DateLike, source: str, split: SplitConfig | None = None, *, ctx: Context | None = None, lake_root: str | None = None
) -> str | None:
    """A day's derived tables as the daily run builds them: geo context, embeddings, SIDs
    under the version in force, cell context and sequences. Returns the version used."""

    day = as_date(day)
    with use(ctx, lake_root, writes=f"build {day}") as ctx:
        geo(day, ctx=ctx)
        embed(day, ctx=ctx)
        assign_day(day, ctx=ctx)
        outcome = corpus_day(day, source, None, split, ctx=ctx)
        return getattr(outcome, "codebook_version", None)


def catch_up(
    before: DateLike,
    source: str,
    split: SplitConfig | None = None,
    *,
    validate: bool = True,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> tuple[RepairReport, list[dt_.date]]:
    """Before building a day: repair the stale and missing days before it, then build the
    days before it that were never built (a late drop's catch-up; runs that went ahead out
    of order). Refuses while an input day before it has not arrived."""
    before = as_date(before)
    with use(ctx, lake_root, writes=f"catch up before {before}") as ctx:
        require_arrived(ctx, before)
        repaired = repair(before=before, validate=validate, ctx=ctx)
        pending = pending_days(ctx, before)
        for day in pending:
            with ctx.stage(f"pending day {day}", timed="pending days"):
                build_day(day, source, split, ctx=ctx)
        return repaired, pending


@dataclass
class BuildReport:
    """What the daily run's build did: the earlier days repaired and built, then the day."""

    day: dt_.date
    caught_up: RepairReport
    pending: list
    codebook_version: str | None
    seconds: float

    def to_dict(self) -> dict:
        return {
            "dt": self.day.isoformat(),
            "repaired": self.caught_up.to_dict(),
            "pending": [d.isoformat() for d in self.pending],
            "codebook_version": self.codebook_version,
            "seconds": round(self.seconds, 2),
        }


def build_with_catch_up(
    day: DateLike, source: str, split: SplitConfig | None = None, *, validate: bool = True, ctx: Context | None = None, lake_root: str | None = None
) -> BuildReport:
    """Catch up (repair stale earlier days, build pending ones), then build the day: one
    step under the lake's writer lease, so no other writer sees the day half built."""
    started = time.perf_counter()
    day = as_date(day)
    with use(ctx, lake_root, writes=f"build {source} {day}") as ctx:
        caught_up, pending = catch_up(day, source, split, validate=validate, ctx=ctx)
        version = build_day(day, source, split, ctx=ctx)
        return BuildReport(day, caught_up, pending, version, time.perf_counter() - started)


def daily(
    day: DateLike,
    source: str,
    path: str | Path | None = None,
    split: SplitConfig | None = None,
    *,
    validate: bool = True,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> DailyReport:
    """The daily DAG's run of `day`, its tasks in order in one process and under one hold of
    the lake's writer lease: ingest the day's drop (and any late, re-delivered or never
    ingested earlier one), the bronze gate, the build (catch up, then the day), the silver
    and corpus gates, the repair of the later days that a re-run of an old day made stale."""

    started = time.perf_counter()
    day = as_date(day)
    report = DailyReport(day, source)
    with use(ctx, lake_root, writes=f"daily {source} {day}") as ctx:
        mark = len(ctx.timings)
        for outcome in ingest_arrivals(source, day, path, ctx=ctx):
            report.ingested += outcome.report.days
            if outcome.inputs is not None:
                report.changed += outcome.inputs.changed
            if validate and outcome.report.days:
                report.gates[f"bronze {days_text(outcome.report.days)}"] = validate_bronze(
                    min(outcome.report.days), max(outcome.report.days), ctx=ctx
                ).passed
        built = build_with_catch_up(day, source, split, validate=validate, ctx=ctx)
        report.caught_up, report.pending, report.codebook_version = built.caught_up, built.pending, built.codebook_version
        if validate:
            report.gates["silver"] = validate_silver(day, ctx=ctx).passed
            report.gates["corpus"] = validate_corpus(day, day, report.codebook_version, ctx=ctx).passed
        report.repaired_after = repair(after=day, validate=validate, ctx=ctx)
        report.stages = stage_seconds(ctx.timings[mark:])
        report.seconds = time.perf_counter() - started
        ctx.log(report.summary())
        return report
