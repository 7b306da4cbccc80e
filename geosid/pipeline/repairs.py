"""The repair of stale days: exactly the stale (and missing) days, in day order, each
stage as the daily run builds it. Embeddings and SIDs of the stale days are taken back
first; the history state goes back to its nearest checkpoint before the first stale day
(never to the source's first day while one exists), and the days after are built again.
After any order of late, corrected and re-run days, the tables equal a clean run over the
final inputs (bench/year_of_operations.py, tests/test_operations.py).
"""

from __future__ import annotations

import datetime as dt_
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pandas as pd

from geosid.errors import InvalidRequestError
from geosid.geo.geometry import CellConfig
from geosid.jobs.corpus import CorpusConfig, build_cell_context, build_range, rollback_state
from geosid.jobs.embed import Representation, run_embed
from geosid.jobs.geo import GeoConfig, run_geo_range
from geosid.jobs.index import rollback_sids
from geosid.lake import DateLike, as_date, day_runs, days_between
from geosid.lake.lineage import lake_state
from geosid.pipeline.context import Context, use
from geosid.pipeline.corpus import record_cell_context, record_sequences, sequences_day, validate_corpus
from geosid.pipeline.index import assign_day_under
from geosid.pipeline.records import record
from geosid.pipeline.scopes import CellScope, EmbedScope, Scope, Stage, scope_of
from geosid.pipeline.silver import record_embed, record_geo
from geosid.pipeline.staleness import days_text
from geosid.schemas import index


@dataclass
class RepairReport:
    days: list = field(default_factory=list)  # every day something was rebuilt
    tables: Counter = field(default_factory=Counter)  # table -> days rebuilt
    checkpoints: dict = field(default_factory=dict)  # corpus scope -> the checkpoint it continued from (None: first day)
    sids_moved: int = 0  # items whose SID came out different after the repair
    waiting: list = field(default_factory=list)  # (source, day): inputs that block repairing later days
    not_repaired: list = field(default_factory=list)  # what a repair does not rebuild (and why)
    reasons: list = field(default_factory=list)  # why the first day of each table was stale
    seconds: float = 0.0

    @property
    def repaired(self) -> bool:
        return bool(self.days)

    @property
    def passed(self) -> bool:
        """Nothing left to repair waits for an input."""
        return not self.waiting

    def summary(self) -> str:
        if not self.days and not self.waiting and not self.not_repaired:
            return "repair: nothing stale"
        lines = []
        if self.days:
            tables = ", ".join(f"{t} {n}" for t, n in sorted(self.tables.items()))
            lines.append(f"repair: {days_text(self.days)} rebuilt in order ({tables}) in {self.seconds:.1f}s")
            for scope, checkpoint in sorted(self.checkpoints.items()):
                origin = f"the state checkpoint of {checkpoint}" if checkpoint else "the source's first day (no checkpoint before it)"
                lines.append(f"    corpus {scope}: continued from {origin}")
            lines.append(f"    SIDs that came out different: {self.sids_moved}")
            lines += [f"    why: {r}" for r in self.reasons[:5]]
        if self.waiting:
            lines.append(
                f"repair: days from {min(d for _, d in self.waiting)} on wait for input " + ", ".join(f"{s} {d}" for s, d in self.waiting[:5])
            )
        lines += [f"not repaired: {n}" for n in self.not_repaired]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "days": [d.isoformat() for d in self.days],
            "tables": dict(self.tables),
            "checkpoints": {k: v.isoformat() if v else None for k, v in self.checkpoints.items()},
            "sids_moved": self.sids_moved,
            "waiting": [[s, d.isoformat()] for s, d in self.waiting],
            "not_repaired": self.not_repaired,
            "seconds": round(self.seconds, 2),
        }


def _representation(params: dict, scope: EmbedScope) -> Representation:
    rep = Representation.from_record(params)
    if EmbedScope.of(rep) != scope:
        raise InvalidRequestError(f"cannot rebuild embeddings {scope}: this geosid's encoder gives {rep.model_id} now")
    return rep


@dataclass
class _Work:
    """What one scope's repair rebuilds: its days, and how."""

    stage: Stage
    scope: Scope
    days: list[dt_.date]
    params: dict  # day -> the recorded params to rebuild it with (a config's `to_record()`)
    first_built: dt_.date  # the scope's first built day (a rebuild from scratch starts there)


def _plan(
    state, from_day: dt_.date | None, before: dt_.date | None, after: dt_.date | None, blocked_from: dt_.date | None
) -> tuple[list[_Work], list[str]]:
    """Per scope, the days a repair rebuilds (`ScopeState.to_repair`: from its first stale
    or missing day, or `from_day`, forced, on every day it had built), within (after,
    before), and before the first day whose inputs have not arrived."""
    work, reasons = [], {}
    for s in state.scopes:
        scope = scope_of(s.table, s.scope)
        stage = Stage.of(s.table, scope)
        if not stage.rebuilt:
            continue
        days = [
            d
            for d in s.to_repair(from_day=from_day)
            if (before is None or d < before) and (after is None or d > after) and (blocked_from is None or d < blocked_from)
        ]
        if not days:
            continue
        params = {d: s.params.get(d, s.latest_params) for d in days}
        work.append(_Work(stage, scope, days, params, min(s.built) if s.built else days[0]))
        if s.stale and min(s.stale) in s.why:
            reasons.setdefault(s.why[min(s.stale)], []).append(s.table)
    return work, [f"{why} ({', '.join(sorted(set(tables)))})" for why, tables in reasons.items()]


def repair(
    from_day: DateLike | None = None,
    *,
    before: DateLike | None = None,
    after: DateLike | None = None,
    validate: bool = True,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> RepairReport:
    """Rebuild the stale and missing days of every derived table (from `from_day` on every
    built day, stale or not), in day order, as the daily run builds them; only days before
    `before` / after `after` when given (the daily run repairs the days before and after
    its own)."""

    started = time.perf_counter()
    before = as_date(before) if before is not None else None
    after = as_date(after) if after is not None else None
    from_day = as_date(from_day) if from_day is not None else None
    report = RepairReport()
    with use(ctx, lake_root, writes="repair") as ctx:
        state = lake_state(ctx.lake)
        waiting = sorted((d, s) for s, d in state.waiting_through(dt_.date.max))
        blocked_from = waiting[0][0] if waiting else None
        work, report.reasons = _plan(state, from_day, before, after, blocked_from)
        if blocked_from is not None:
            unfinished = _plan(state, from_day, before, after, None)[0]
            if any(d >= blocked_from for w in unfinished for d in w.days):
                report.waiting = [(s, d) for d, s in waiting]
        refit = sorted(s.scope for s in state.scopes if s.table == Stage.CODEBOOKS.table and s.stale)
        if refit:
            report.not_repaired = [
                f"{len(refit)} codebook version(s) were fit on inputs that changed since ({', '.join(refit)}): "
                "a version never changes; fit and publish a new one to include them"
            ]
        if work:
            with ctx.stage(f"repair {days_text(sorted({d for w in work for d in w.days}))}", timed="repair"):
                _execute(ctx, work, report, validate=validate)
        report.seconds = time.perf_counter() - started
        ctx.log(report.summary())
        return report


@dataclass(frozen=True)
class RepairStep:
    """One stage of one day as a repair rebuilds it, with the config it is rebuilt with
    (restored from its build record; none for SIDs: the scope's version says it all)."""

    day: dt_.date
    stage: Stage
    scope: Scope
    config: Representation | CellConfig | CorpusConfig | None = None

    @property
    def order(self) -> tuple[bool, dt_.date, Stage]:
        """Every day's index stages before any corpus stage (a corpus day joins the SID map
        as it stands), then by day, then by stage."""
        return (self.stage.is_corpus, self.day, self.stage)


@dataclass(frozen=True)
class _GeoDay:
    config: GeoConfig
    with_items: bool  # silver.item_geo too, not only silver.geo_cells


@dataclass(frozen=True)
class _RangeRebuild:
    """A corpus scope rebuilt as one range (a per-user protocol, or no state checkpoint)."""

    config: CorpusConfig
    work: _Work  # its scope is a CorpusScope


@dataclass
class _Schedule:
    """A repair's work in the order it runs: geo context per cell system, then the steps
    in `RepairStep.order`, then the scopes rebuilt as one range."""

    geo: dict = field(default_factory=lambda: defaultdict(dict))  # cell system -> {day: _GeoDay}
    steps: list[RepairStep] = field(default_factory=list)
    ranges: list[_RangeRebuild] = field(default_factory=list)
    taken_sids: list = field(default_factory=list)  # SIDs taken back (frames), to count the ones that move

    def ordered(self) -> list[RepairStep]:
        return sorted(self.steps, key=lambda step: step.order)  # stable: a day's scopes of one stage keep their order


def _schedule(ctx: Context, work: list[_Work], report: RepairReport) -> _Schedule:
    """Take back what the stale days wrote where later days build on it (the SIDs given on
    or after the first stale day; the history state, to its nearest checkpoint before it)
    and lay the rebuild out day by day. Embeddings are not taken back: each day, in order,
    keeps its rows that still hold and embeds the rest."""

    plan = _Schedule()
    for w in work:
        first, last = w.days[0], w.days[-1]
        if w.stage.is_geo:
            for d in w.days:
                earlier = plan.geo[w.scope].get(d)
                with_items = (earlier is not None and earlier.with_items) or w.stage is Stage.ITEM_GEO
                plan.geo[w.scope][d] = _GeoDay(GeoConfig.from_record(w.params[d]), with_items)
        elif w.stage.is_embeddings:
            rep = _representation(w.params[first], w.scope)
            plan.steps += [RepairStep(d, w.stage, w.scope, rep) for d in w.days]
        elif w.stage is Stage.SIDS:
            plan.taken_sids.append(rollback_sids(ctx.lake, w.scope.version, first))
            plan.steps += [RepairStep(d, w.stage, w.scope) for d in w.days]
        elif w.stage is Stage.CELL_CONTEXT:
            plan.steps += [RepairStep(d, w.stage, w.scope, CellConfig.from_record(w.params[d])) for d in w.days]
        elif w.stage is Stage.SEQUENCES:
            config = CorpusConfig.from_record(w.params[last])
            checkpoint = rollback_state(ctx.lake, config, w.scope.version, first) if w.scope.keeps_state else None
            if w.scope.keeps_state:
                report.checkpoints[str(w.scope)] = checkpoint
            if checkpoint is None:  # a per-user protocol, or no checkpoint: the scope is rebuilt as one range
                plan.ranges.append(_RangeRebuild(config, w))
                continue
            for d in days_between(checkpoint + dt_.timedelta(days=1), last):
                plan.steps.append(RepairStep(d, w.stage, w.scope, CorpusConfig.from_record(w.params.get(d, w.params[last]))))
    return plan


def _execute(ctx: Context, work: list[_Work], report: RepairReport, *, validate: bool) -> None:
    """Rebuild what `_schedule` laid out: geo context, then day by day, then ranges; count
    the SIDs that came out different; validate the repaired corpus days."""

    plan = _schedule(ctx, work, report)
    for days in plan.geo.values():  # geo context reads bronze alone: every day's first, in range jobs
        _repair_geo(ctx, days, report)
    # The index days (embeddings, SIDs) all come before the corpus days: a corpus day joins
    # the SID map as it stands, and a codebook backfilled on a later day (the demo's, fitted
    # and assigned on its last day) gave the SIDs that the earlier days' sequences were built
    # with. A day's own items get their SIDs on or before it, so daily-assigned SIDs read the same.
    steps = plan.ordered()
    for step in steps:
        if step.stage.is_embeddings:
            _repair_embed(ctx, step.day, step.config)
        elif step.stage is Stage.SIDS:
            assign_day_under(ctx, step.scope.version, step.day, "repair")
        elif step.stage is Stage.CELL_CONTEXT:
            _repair_cell_context(ctx, step.day, step.config)
        else:
            sequences_day(ctx, step.scope.version, step.config, step.day, "repair")
        report.tables[step.stage.table] += 1
    report.days = sorted({step.day for step in steps} | {d for days in plan.geo.values() for d in days})
    for rebuild in plan.ranges:
        _rebuild_range(ctx, rebuild, report)
    report.sids_moved = _moved_sids(ctx, plan.taken_sids)
    if validate:
        for w in work:
            if w.stage is Stage.SEQUENCES:
                validate_corpus(w.days[0], w.days[-1], w.scope.version, protocol=w.scope.protocol, ctx=ctx)


def _rebuild_range(ctx: Context, rebuild: _RangeRebuild, report: RepairReport) -> None:
    """A corpus scope rebuilt from scratch: a per-user protocol's recorded range, or a time
    scope with no checkpoint from its first built day."""

    w, version, config = rebuild.work, rebuild.work.scope.version, rebuild.config
    recorded = w.params[w.days[-1]]
    first, last = as_date(recorded.get("first") or w.first_built), as_date(recorded.get("last") or w.days[-1])
    with ctx.stage(f"training sequences {first} .. {last} under {version} ({config.split.protocol}, rebuilt)", timed="sequences"):
        build_range(ctx.lake, version, first, last, config)
        record_sequences(ctx, version, config, first, last, "range")
    span = days_between(first, last)
    report.tables[Stage.SEQUENCES.table] += len(span)
    report.days = sorted(set(report.days) | set(span))


def _moved_sids(ctx: Context, taken: list) -> int:
    """How many of the SIDs a repair took back came out different."""

    taken = pd.concat(taken) if taken else pd.DataFrame()
    if not len(taken):
        return 0
    now = ctx.lake.read(index.SID_MAP).select("version", "source", "item_id", "sid").toPandas()
    merged = taken.merge(now, on=["version", "source", "item_id"], how="left", suffixes=("_was", ""))
    return int((merged["sid"] != merged["sid_was"]).sum())


def _repair_geo(ctx: Context, days: dict, report: RepairReport) -> None:
    """silver.geo_cells (and silver.item_geo where the day had it) of `days` ({day:
    _GeoDay}), one range job per run of consecutive days."""

    for first, last in day_runs(list(days)):
        span = days_between(first, last)
        config = days[last].config
        item_days = {d for d in span if days[d].with_items}
        with ctx.stage(f"geo context {days_text(span)} (repair)", timed="geo"):
            run_geo_range(ctx.lake, first, last, config, with_items=False, item_days=item_days)
            record_geo(ctx, config, span, with_items=False, mode="repair")
            if item_days:
                record(ctx, Stage.ITEM_GEO, CellScope(config.cells().name), sorted(item_days), config.to_record(), "repair")
        report.tables[Stage.GEO_CELLS.table] += len(span)
        if item_days:
            report.tables[Stage.ITEM_GEO.table] += len(item_days)


def _repair_embed(ctx: Context, day: dt_.date, rep: Representation) -> None:
    with ctx.stage(f"item embeddings as of {day} ({rep.template_id}, repair)", timed=f"embed {rep.template_id}"):
        report = run_embed(ctx.lake, day, rep, progress=False, chunk_size=ctx.settings.embed_chunk_size, log=ctx.log)
        record_embed(ctx, rep, day, "repair")
    ctx.log(report.summary())


def _repair_cell_context(ctx: Context, day: dt_.date, cells: CellConfig) -> None:
    with ctx.stage(f"corpus.cell_context {day} (repair)", timed="cell context"):
        build_cell_context(ctx.lake, day, day, cells.cells())
        record_cell_context(ctx, cells, day, day, "repair")
