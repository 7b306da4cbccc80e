"""Operations over time: the daily run as the daily DAG runs it, what is stale and why,
the repair of stale days from state checkpoints, closing a day whose drop never came.

Days arrive late, twice, corrected or not at all. What makes the tables right anyway:

- every ingest records its input days with a content digest (`ops.input_days`), every
  derived day the digest of the inputs it read (`ops.builds`); a built day whose inputs
  changed since is stale, and `status` says which input changed and when;
- no derived day is built while an input day up to it has not arrived (a drop without its
  marker, never ingested, not closed): the daily run waits, and says for what;
- `repair` rebuilds exactly the stale (and missing) days, in day order, each stage as the
  daily run builds it: embeddings and SIDs of the stale days are taken back first, the
  history state goes back to its nearest checkpoint before the first stale day (never to
  the source's first day while one exists), and the days after are built again;
- `daily` runs a day end to end: the day's drop and any earlier drop that arrived late or
  was re-delivered since, the repair of stale earlier days and the build of days still
  pending before it, the day itself, and the repair of later days a re-run of an old day
  made stale. After any order of late, corrected and re-run days, the tables equal a clean
  run over the final inputs (bench/year_of_operations.py, tests/test_operations.py).
"""

from __future__ import annotations

import datetime as dt_
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from geosid.errors import InvalidRequestError, NotArrivedError, UnknownNameError
from geosid.lake import DateLike, as_date, day_runs, days_between
from geosid.pipeline.context import Context, use
from geosid.pipeline.records import geo_params, record, require_arrived

GEO_TABLES = ("silver.geo_cells", "silver.item_geo")
EMBEDDINGS = "silver.item_embeddings"
SID_MAP = "index.sid_map"
CELL_CONTEXT = "corpus.cell_context"
SEQUENCES = "corpus.training_sequences"
CODEBOOKS = "index.codebooks"


def _days_text(days: list[dt_.date]) -> str:
    if not days:
        return "none"
    days = sorted(days)
    return f"{days[0]}" if len(days) == 1 else f"{days[0]} .. {days[-1]} ({len(days)} days)"


# ---------------------------------------------------------------------------------------
# Status


@dataclass
class StatusReport:
    state: object  # geosid.lake.lineage.LakeState
    checkpoints: dict = field(default_factory=dict)  # corpus scope -> its state checkpoint days

    @property
    def stale(self) -> int:
        return sum(len(s.stale) + len(s.missing) for s in self.state.scopes if s.table != CODEBOOKS)

    def summary(self) -> str:
        state = self.state
        if not state.tracked:
            return "no input days recorded in this lake (built before lineage existed): ingest the days again to record them"
        lines = ["inputs:"]
        for s in state.sources:
            closed = f", {len(s.closed)} closed as missing ({_days_text(s.closed)})" if s.closed else ""
            waiting = f"; WAITING for {len(s.waiting)}: {', '.join(d.isoformat() for d in s.waiting[:8])}" if s.waiting else ""
            known = s.known
            lines.append(f"  {s.source}: {len(s.complete)} complete day(s) {known[0]} .. {known[-1]}, "
                         f"{len(s.empty)} of them without events{closed}{waiting}")  # fmt: skip
        lines.append("derived tables (fresh / stale / missing days):")
        for s in state.scopes:
            flag = "" if not (s.stale or s.missing) else "  <- repair"
            if s.table == CODEBOOKS and s.stale:
                flag = "  <- fit on inputs that changed since (a version is immutable: fit a new one to include them)"
            lines.append(f"  {s.table:<27} {s.scope[:60]:<60} {len(s.fresh):>5} / {len(s.stale):>3} / {len(s.missing):>3}"
                         f"  built {_days_text(s.built)}{flag}")  # fmt: skip
            if s.stale:
                first = min(s.stale)
                lines.append(f"      stale {_days_text(s.stale)}: {s.why[first]}")
            if s.missing:
                lines.append(f"      missing {_days_text(s.missing)}: never built between daily builds (a run that failed)")
            if s.scope in self.checkpoints:
                days = self.checkpoints[s.scope]
                lines.append(f"      state checkpoints: {len(days)} ({_days_text(days)})")
        if not state.scopes:
            lines.append("  (none built yet)")
        lines.append(f"{self.stale} stale or missing day(s) to repair" + (": geosid repair" if self.stale else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "tracked": self.state.tracked,
            "inputs": {s.source: {"complete": len(s.complete), "closed": [d.isoformat() for d in s.closed],
                                  "waiting": [d.isoformat() for d in s.waiting]} for s in self.state.sources},
            "tables": [{"table": s.table, "scope": s.scope, "fresh": len(s.fresh), "stale": [d.isoformat() for d in s.stale],
                        "missing": [d.isoformat() for d in s.missing],
                        "why": {d.isoformat(): w for d, w in s.why.items()}} for s in self.state.scopes],
            "stale": self.stale,
        }  # fmt: skip


def status(*, ctx: Context | None = None, lake_root: str | None = None) -> StatusReport:
    """Per source the days that arrived, were closed or are awaited; per derived table and
    scope the fresh, stale (with the input that changed, and when) and missing days."""
    from geosid.lake.lineage import lake_state
    from geosid.schemas import corpus

    with use(ctx, lake_root) as ctx:
        state = lake_state(ctx.lake)
        checkpoints = {}
        if ctx.lake.exists(corpus.STATE_BUILDS):
            rows = ctx.lake.read(corpus.STATE_BUILDS).select("codebook_version", "source", "dt").collect()
            for r in rows:
                checkpoints.setdefault(f"{r['codebook_version']}|{r['source']}|time", []).append(r["dt"])
        return StatusReport(state, {k: sorted(v) for k, v in checkpoints.items()})


# ---------------------------------------------------------------------------------------
# Repair


@dataclass
class RepairReport:
    days: list = field(default_factory=list)  # every day something was rebuilt
    tables: dict = field(default_factory=dict)  # table -> days rebuilt
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
            lines.append(f"repair: {_days_text(self.days)} rebuilt in order ({tables}) in {self.seconds:.1f}s")
            for scope, checkpoint in sorted(self.checkpoints.items()):
                origin = f"the state checkpoint of {checkpoint}" if checkpoint else "the source's first day (no checkpoint before it)"
                lines.append(f"    corpus {scope}: continued from {origin}")
            lines.append(f"    SIDs that came out different: {self.sids_moved}")
            lines += [f"    why: {r}" for r in self.reasons[:5]]
        if self.waiting:
            lines.append(f"repair: days from {min(d for _, d in self.waiting)} on wait for input "
                         + ", ".join(f"{s} {d}" for s, d in self.waiting[:5]))  # fmt: skip
        lines += [f"not repaired: {n}" for n in self.not_repaired]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"days": [d.isoformat() for d in self.days], "tables": self.tables,
                "checkpoints": {k: v.isoformat() if v else None for k, v in self.checkpoints.items()},
                "sids_moved": self.sids_moved, "waiting": [[s, d.isoformat()] for s, d in self.waiting],
                "not_repaired": self.not_repaired, "seconds": round(self.seconds, 2)}  # fmt: skip


def _geo_config(params: dict):
    from geosid.geo.geometry import CellConfig
    from geosid.jobs.geo import GeoConfig

    return GeoConfig(cell_config=CellConfig(**params["cells"]), window_days=params["window_days"], top_k=params["top_k"])


def _representation(params: dict, scope: str):
    from geosid.embedding.location import LocationEncoder
    from geosid.jobs.embed import Representation

    weight = params.get("location_weight")
    rep = Representation(params["template"], params["encoder"], LocationEncoder(weight=weight) if weight is not None else None)
    if f"{rep.template_id}|{rep.model_id}" != scope:
        raise InvalidRequestError(f"cannot rebuild embeddings {scope}: this geosid's encoder gives {rep.model_id} now")
    return rep


def _corpus_config(params: dict):
    from geosid.geo.geometry import CellConfig
    from geosid.jobs.corpus import CorpusConfig, SplitConfig

    return CorpusConfig.for_source(params["source"], cell_config=CellConfig(**params["cells"]), split=SplitConfig(**params["split"]))


@dataclass
class _Work:
    """What one scope's repair rebuilds: its days, and how."""

    table: str
    scope: str
    days: list
    params: dict  # day -> the params to rebuild it with
    first_built: dt_.date | None = None  # the scope's first built day (a rebuild from scratch starts there)


def _plan(state, from_day: dt_.date | None, before: dt_.date | None, after: dt_.date | None,
          blocked_from: dt_.date | None) -> tuple[list[_Work], list[str]]:  # fmt: skip
    """Per scope, the days a repair rebuilds: from its first stale or missing day (or
    `from_day`, forced) on, every day it had built, within (after, before), and before the
    first day whose inputs have not arrived."""
    work, reasons = [], {}
    for s in state.scopes:
        if s.table == CODEBOOKS:
            continue
        start = s.first_to_repair
        if from_day is not None:
            forced = [d for d in s.built if d >= from_day]
            start = min([d for d in (start, min(forced) if forced else None) if d is not None], default=None)
        if start is None:
            continue
        days = sorted(d for d in set(s.built) | set(s.missing) if d >= start)
        days = [d for d in days if (before is None or d < before) and (after is None or d > after)
                and (blocked_from is None or d < blocked_from)]  # fmt: skip
        if not days:
            continue
        params = {d: s.params.get(d, s.latest_params) for d in days}
        work.append(_Work(s.table, s.scope, days, params, min(s.built) if s.built else days[0]))
        if s.stale and min(s.stale) in s.why:
            reasons.setdefault(s.why[min(s.stale)], []).append(s.table)
    return work, [f"{why} ({', '.join(sorted(set(tables)))})" for why, tables in reasons.items()]


def repair(from_day: DateLike | None = None, *, before: DateLike | None = None, after: DateLike | None = None,
           validate: bool = True, ctx: Context | None = None, lake_root: str | None = None) -> RepairReport:  # fmt: skip
    """Rebuild the stale and missing days of every derived table (from `from_day` on every
    built day, stale or not), in day order, as the daily run builds them; only days before
    `before` / after `after` when given (the daily run repairs the days before and after
    its own)."""
    from geosid.lake.lineage import lake_state

    started = time.perf_counter()
    before = as_date(before) if before is not None else None
    after = as_date(after) if after is not None else None
    from_day = as_date(from_day) if from_day is not None else None
    report = RepairReport()
    with use(ctx, lake_root) as ctx:
        state = lake_state(ctx.lake)
        waiting = sorted((d, s) for s, d in state.waiting_through(dt_.date.max))
        blocked_from = waiting[0][0] if waiting else None
        work, report.reasons = _plan(state, from_day, before, after, blocked_from)
        if blocked_from is not None:
            unfinished = _plan(state, from_day, before, after, None)[0]
            if any(d >= blocked_from for w in unfinished for d in w.days):
                report.waiting = [(s, d) for d, s in waiting]
        refit = sorted(s.scope for s in state.scopes if s.table == CODEBOOKS and s.stale)
        if refit:
            report.not_repaired = [f"{len(refit)} codebook version(s) were fit on inputs that changed since ({', '.join(refit)}): "
                                   "a version never changes; fit and publish a new one to include them"]  # fmt: skip
        if work:
            with ctx.stage(f"repair {_days_text(sorted({d for w in work for d in w.days}))}", timed="repair"):
                _execute(ctx, work, report, validate)
        report.seconds = time.perf_counter() - started
        ctx.log(report.summary())
        return report


@dataclass
class _Schedule:
    """A repair's work in the order it runs: geo context per cell system, then each day's
    steps (ranked: text embeddings, embeddings, SIDs, cell context, corpus), then the
    scopes rebuilt as one range."""

    geo: dict = field(default_factory=lambda: defaultdict(dict))  # cell system -> {day: (params, with items)}
    days: dict = field(default_factory=lambda: defaultdict(list))  # day -> [(rank, table, what)]
    ranges: list = field(default_factory=list)  # (version, CorpusConfig, _Work)
    taken_sids: list = field(default_factory=list)  # SIDs taken back (frames), to count the ones that move


def _schedule(ctx: Context, work: list[_Work], report: RepairReport) -> _Schedule:
    """Take back what the stale days wrote where later days build on it (the SIDs given on
    or after the first stale day; the history state, to its nearest checkpoint before it)
    and lay the rebuild out day by day. Embeddings are not taken back: each day, in order,
    keeps its rows that still hold and embeds the rest."""
    from geosid.embedding.templates import TEXT_TEMPLATE
    from geosid.jobs.corpus import rollback_state
    from geosid.jobs.index import rollback_sids

    plan = _Schedule()
    for w in work:
        first, last = w.days[0], w.days[-1]
        if w.table in GEO_TABLES:
            for d in w.days:
                with_items = plan.geo[w.scope].get(d, (None, False))[1] or w.table == "silver.item_geo"
                plan.geo[w.scope][d] = (w.params[d], with_items)
        elif w.table == EMBEDDINGS:
            template, rep = w.scope.split("|", 1)[0], _representation(w.params[first], w.scope)
            rank = 1 if TEXT_TEMPLATE[template] == template else 2  # text vectors before the templates that reuse them
            for d in w.days:
                plan.days[d].append((rank, w.table, rep))
        elif w.table == SID_MAP:
            plan.taken_sids.append(rollback_sids(ctx.lake, w.scope, first))
            for d in w.days:
                plan.days[d].append((3, w.table, w.scope))
        elif w.table == CELL_CONTEXT:
            for d in w.days:
                plan.days[d].append((4, w.table, w.params[d]))
        elif w.table == SEQUENCES:
            version, _, protocol = w.scope.split("|")
            config = _corpus_config(w.params[last])
            checkpoint = rollback_state(ctx.lake, config, version, first) if protocol == "time" else None
            if protocol == "time":
                report.checkpoints[w.scope] = checkpoint
            if checkpoint is None:  # a per-user protocol, or no checkpoint: the scope is rebuilt as one range
                plan.ranges.append((version, config, w))
                continue
            for d in days_between(checkpoint + dt_.timedelta(days=1), last):
                plan.days[d].append((5, w.table, (version, _corpus_config(w.params.get(d, w.params[last])))))
    return plan


def _execute(ctx: Context, work: list[_Work], report: RepairReport, validate: bool) -> None:
    """Rebuild what `_schedule` laid out: geo context, then day by day, then ranges; count
    the SIDs that came out different; validate the repaired corpus days."""
    from geosid.pipeline.corpus import sequences_day, validate_corpus
    from geosid.pipeline.index import assign_day_under

    plan = _schedule(ctx, work, report)
    for days in plan.geo.values():  # geo context reads bronze alone: every day's first, in range jobs
        _repair_geo(ctx, days, report)
    # The index days (embeddings, SIDs) all come before the corpus days: a corpus day joins
    # the SID map as it stands, and a codebook backfilled on a later day (the demo's, fitted
    # and assigned on its last day) gave the SIDs that the earlier days' sequences were built
    # with. A day's own items get their SIDs on or before it, so daily-assigned SIDs read the same.
    steps = [(day, step) for day in sorted(plan.days) for step in sorted(plan.days[day], key=lambda a: a[0])]
    corpus_rank = 4  # ranks in _schedule: 1-2 embeddings, 3 SIDs, 4 cell context, 5 sequences
    for day, (_, table, what) in sorted(steps, key=lambda s: s[1][0] >= corpus_rank):  # stable: days stay in order per pass
        if table == EMBEDDINGS:
            _repair_embed(ctx, day, what)
        elif table == SID_MAP:
            assign_day_under(ctx, what, day, "repair")
        elif table == CELL_CONTEXT:
            _repair_cell_context(ctx, day, what)
        else:
            sequences_day(ctx, *what, day, "repair")
        report.tables[table] = report.tables.get(table, 0) + 1
    report.days = sorted(set(plan.days) | {d for days in plan.geo.values() for d in days})
    for version, config, w in plan.ranges:
        _rebuild_range(ctx, version, config, w, report)
    report.sids_moved = _moved_sids(ctx, plan.taken_sids)
    if validate:
        for w in work:
            if w.table == SEQUENCES:
                version, _, protocol = w.scope.split("|")
                validate_corpus(w.days[0], w.days[-1], version, protocol=protocol, ctx=ctx)


def _rebuild_range(ctx: Context, version: str, config, w: _Work, report: RepairReport) -> None:
    """A corpus scope rebuilt from scratch: a per-user protocol's recorded range, or a time
    scope with no checkpoint from its first built day."""
    from geosid.jobs.corpus import build_range
    from geosid.pipeline.corpus import record_sequences

    recorded = w.params[w.days[-1]]
    first, last = as_date(recorded.get("first") or w.first_built), as_date(recorded.get("last") or w.days[-1])
    with ctx.stage(f"training sequences {first} .. {last} under {version} ({config.split.protocol}, rebuilt)", timed="sequences"):
        build_range(ctx.lake, version, first, last, config)
        record_sequences(ctx, version, config, first, last, "range")
    span = days_between(first, last)
    report.tables[SEQUENCES] = report.tables.get(SEQUENCES, 0) + len(span)
    report.days = sorted(set(report.days) | set(span))


def _moved_sids(ctx: Context, taken: list) -> int:
    """How many of the SIDs a repair took back came out different."""
    import pandas as pd

    from geosid.schemas import index

    taken = pd.concat(taken) if taken else pd.DataFrame()
    if not len(taken):
        return 0
    now = ctx.lake.read(index.SID_MAP).select("version", "source", "item_id", "sid").toPandas()
    merged = taken.merge(now, on=["version", "source", "item_id"], how="left", suffixes=("_was", ""))
    return int((merged["sid"] != merged["sid_was"]).sum())


def _repair_geo(ctx: Context, days: dict, report: RepairReport) -> None:
    """silver.geo_cells (and silver.item_geo where the day had it) of `days` ({day: (params,
    with items)}), one range job per run of consecutive days."""
    from geosid.jobs.geo import run_geo_range
    from geosid.pipeline.silver import record_geo
    from geosid.schemas import silver

    for first, last in day_runs(list(days)):
        span = days_between(first, last)
        config = _geo_config(days[last][0])
        item_days = {d for d in span if days[d][1]}
        with ctx.stage(f"geo context {_days_text(span)} (repair)", timed="geo"):
            run_geo_range(ctx.lake, first, last, config, item_days=item_days)
            record_geo(ctx, config, span, with_items=False, mode="repair")
            if item_days:
                record(ctx, silver.ITEM_GEO.name, config.cells().name, sorted(item_days), geo_params(config), "repair")
        report.tables[silver.GEO_CELLS.name] = report.tables.get(silver.GEO_CELLS.name, 0) + len(span)
        if item_days:
            report.tables[silver.ITEM_GEO.name] = report.tables.get(silver.ITEM_GEO.name, 0) + len(item_days)


def _repair_embed(ctx: Context, day: dt_.date, rep) -> None:
    from geosid.jobs.embed import run_embed
    from geosid.pipeline.silver import record_embed

    with ctx.stage(f"item embeddings as of {day} ({rep.template_id}, repair)", timed=f"embed {rep.template_id}"):
        report = run_embed(ctx.lake, day, rep, progress=False, chunk_size=ctx.settings.embed_chunk_size, log=ctx.log)
        record_embed(ctx, rep, day, "repair")
    ctx.log(report.summary())


def _repair_cell_context(ctx: Context, day: dt_.date, params: dict) -> None:
    from geosid.geo.geometry import CellConfig
    from geosid.jobs.corpus import build_cell_context
    from geosid.pipeline.corpus import record_cell_context

    cells = CellConfig(**params["cells"])
    with ctx.stage(f"corpus.cell_context {day} (repair)", timed="cell context"):
        build_cell_context(ctx.lake, day, day, cells.cells())
        record_cell_context(ctx, cells, day, day, "repair")


# ---------------------------------------------------------------------------------------
# Arrivals: drops that came, late ones, re-deliveries, days that never came


def drop_arrived(source: str, day: DateLike, path: str | Path | None = None, *, ctx: Context | None = None,
                 lake_root: str | None = None) -> bool:  # fmt: skip
    """Whether the day's run can go ahead: its drop is complete in every feed (a
    whole-history file holds every day), or the day was closed as missing. What the daily
    DAG's sensor pokes (no engine needed)."""
    from geosid.config import Settings
    from geosid.lake.lineage import input_days
    from geosid.lake import Lake
    from geosid.sources.registry import get_source

    day = as_date(day)
    settings = ctx.settings if ctx is not None else Settings.from_env(lake_root=lake_root)
    spec = get_source(source)
    complete = spec.complete_days(spec.raw_path(path, settings), settings.drop_marker)
    if complete is None or day in complete:
        return True
    known = input_days(ctx.lake if ctx is not None else Lake(settings.lake_root))
    return bool(len(known[(known.source == source) & (known.dt == day) & (known.status == "closed")]))


def ingest_arrivals(source: str, day: DateLike, path: str | Path | None = None, *, ctx: Context | None = None,
                    lake_root: str | None = None):  # fmt: skip
    """Ingest the day's drop, and every earlier drop (from the source's first recorded day)
    that arrived since or was re-delivered (its files differ from the ingested ones); a
    re-delivery with the same content changes nothing downstream. Returns the ingest
    outcomes (the day's last)."""
    from geosid.lake.lineage import input_days
    from geosid.pipeline.bronze import ingest
    from geosid.sources.registry import get_source

    day = as_date(day)
    with use(ctx, lake_root) as ctx:
        spec = get_source(source)
        raw = spec.raw_path(path, ctx.settings)
        arrived = spec.arrived(raw, ctx.settings.drop_marker)
        if arrived is None:  # a whole-history file: the day's lines
            return [ingest(source, day, day, raw, validate=False, ctx=ctx)]
        known = input_days(ctx.lake)
        known = known[known.source == source]
        closed = set(known[known.status == "closed"].dt)
        if day not in arrived and day not in closed:
            raise NotArrivedError(
                f"the drop of {source} for {day} has not arrived under {raw} (each feed's dt={day} folder needs "
                f"{ctx.settings.drop_marker or 'to exist'}): the daily run waits for it"
            )
        first_known = min(known.dt) if len(known) else day
        files = dict(zip(known.dt, known.files))
        late = [d for d, fingerprint in sorted(arrived.items()) if first_known <= d < day and files.get(d) != fingerprint]
        outcomes = []
        for first, last in day_runs(late):
            ctx.log(f"{source}: drops of {_days_text(days_between(first, last))} arrived late or were re-delivered")
            outcomes.append(ingest(source, first, last, raw, validate=False, ctx=ctx))
        if day in arrived:
            outcomes.append(ingest(source, day, day, raw, validate=False, ctx=ctx))
        else:
            ctx.log(f"{source} {day} was closed as missing: the day builds as empty")
        return outcomes


def close_day(source: str, day: DateLike, note: str, *, ctx: Context | None = None, lake_root: str | None = None):
    """Declare that a day's drop will not come (an operator's decision, with the reason):
    the day counts as empty, so later days build; if the drop arrives after all, ingesting
    it makes the later days stale and the daily run repairs them."""
    from geosid.lake.lineage import input_days, record_inputs
    from geosid.lake.table import EMPTY_DIGEST
    from geosid.schemas import bronze
    from geosid.sources.registry import get_source

    day = as_date(day)
    if not note or not note.strip():
        raise InvalidRequestError("say why the day is closed (--reason): it is shown by geosid status")
    with use(ctx, lake_root) as ctx:
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


# ---------------------------------------------------------------------------------------
# The daily run


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
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(self.gates.values())

    def summary(self) -> str:
        parts = [f"daily {self.source} {self.day}: ingested {_days_text(self.ingested)}"]
        if self.changed:
            parts.append(f"changed input days {_days_text(self.changed)}")
        if self.caught_up and self.caught_up.repaired:
            parts.append(f"repaired {_days_text(self.caught_up.days)}")
        if self.pending:
            parts.append(f"built pending {_days_text(self.pending)}")
        if self.repaired_after and self.repaired_after.repaired:
            parts.append(f"repaired later {_days_text(self.repaired_after.days)}")
        gates = "all gates pass" if self.passed else "FAILED gates: " + ", ".join(k for k, v in self.gates.items() if not v)
        return "; ".join(parts) + f"; {gates}; {self.seconds:.1f}s"

    def to_dict(self) -> dict:
        return {"dt": self.day.isoformat(), "source": self.source, "ingested": [d.isoformat() for d in self.ingested],
                "changed": [d.isoformat() for d in self.changed], "pending": [d.isoformat() for d in self.pending],
                "caught_up": self.caught_up.to_dict() if self.caught_up else None,
                "repaired_after": self.repaired_after.to_dict() if self.repaired_after else None,
                "codebook_version": self.codebook_version, "gates": self.gates, "passed": self.passed,
                "seconds": round(self.seconds, 2)}  # fmt: skip


def pending_days(ctx: Context, before: dt_.date) -> list[dt_.date]:
    """Days before `before` whose inputs arrived after the last day the daily run built
    (its first step, the geo context with items, says which): what runs that went ahead
    out of order, or a catch-up after a late drop, still have to build."""
    from geosid.lake.lineage import lake_state

    state = lake_state(ctx.lake)
    built = state.scope("silver.item_geo", ctx.settings.cells.name)
    if built is None or not built.built:
        return []
    last = max(built.built)
    arrived = sorted({d for s in state.sources for d in s.known if last < d < before})
    waiting = state.waiting_through(before)
    if waiting:
        blocked = min(d for _, d in waiting)
        arrived = [d for d in arrived if d < blocked]
    return arrived


def build_day(day: DateLike, source: str, test_start=None, valid_start=None, *, ctx: Context | None = None,
              lake_root: str | None = None) -> str | None:  # fmt: skip
    """A day's derived tables as the daily run builds them: geo context, embeddings, SIDs
    under the version in force, cell context and sequences. Returns the version used."""
    from geosid.pipeline.corpus import corpus_day
    from geosid.pipeline.index import assign_day
    from geosid.pipeline.silver import embed, geo

    day = as_date(day)
    with use(ctx, lake_root) as ctx:
        geo(day, ctx=ctx)
        embed(day, ctx=ctx)
        assign_day(day, ctx=ctx)
        outcome = corpus_day(day, source, None, test_start, valid_start, ctx=ctx)
        return getattr(outcome, "codebook_version", None)


def catch_up(before: DateLike, source: str, test_start=None, valid_start=None, validate: bool = True, *,
             ctx: Context | None = None, lake_root: str | None = None) -> tuple[RepairReport, list[dt_.date]]:  # fmt: skip
    """Before building a day: repair the stale and missing days before it, then build the
    days before it that were never built (a late drop's catch-up; runs that went ahead out
    of order). Refuses while an input day before it has not arrived."""
    before = as_date(before)
    with use(ctx, lake_root) as ctx:
        require_arrived(ctx, before)
        repaired = repair(before=before, validate=validate, ctx=ctx)
        pending = pending_days(ctx, before)
        for day in pending:
            with ctx.stage(f"pending day {day}", timed="pending days"):
                build_day(day, source, test_start, valid_start, ctx=ctx)
        return repaired, pending


def daily(day: DateLike, source: str, path: str | Path | None = None, test_start=None, valid_start=None,
          validate: bool = True, *, ctx: Context | None = None, lake_root: str | None = None) -> DailyReport:  # fmt: skip
    """The daily DAG's run of `day`, its tasks in order in one process: ingest the day's drop
    (and any late or re-delivered earlier one), the bronze gate, catch up (repair stale
    earlier days, build pending ones), build the day, the silver and corpus gates, repair
    the later days that a re-run of an old day made stale."""
    from geosid.pipeline.bronze import validate_bronze
    from geosid.pipeline.corpus import validate_corpus
    from geosid.pipeline.silver import validate_silver

    started = time.perf_counter()
    day = as_date(day)
    report = DailyReport(day, source)
    with use(ctx, lake_root) as ctx:
        for outcome in ingest_arrivals(source, day, path, ctx=ctx):
            report.ingested += outcome.report.days
            if outcome.inputs is not None:
                report.changed += outcome.inputs.changed
            if validate and outcome.report.days:
                report.gates[f"bronze {_days_text(outcome.report.days)}"] = validate_bronze(
                    min(outcome.report.days), max(outcome.report.days), ctx=ctx).passed  # fmt: skip
        report.caught_up, report.pending = catch_up(day, source, test_start, valid_start, validate, ctx=ctx)
        report.codebook_version = build_day(day, source, test_start, valid_start, ctx=ctx)
        if validate:
            report.gates["silver"] = validate_silver(day, ctx=ctx).passed
            report.gates["corpus"] = validate_corpus(day, day, report.codebook_version, ctx=ctx).passed
        report.repaired_after = repair(after=day, validate=validate, ctx=ctx)
        report.seconds = time.perf_counter() - started
        ctx.log(report.summary())
        return report


# ---------------------------------------------------------------------------------------
# Maintenance


@dataclass
class MaintenanceReport:
    tables: list = field(default_factory=list)  # geosid.lake.maintenance.TableMaintenance
    work_bytes_removed: int = 0  # what killed runs left under _work
    retention_hours: float = 0.0
    forced: bool = False
    seconds: float = 0.0

    @property
    def bytes_before(self) -> int:
        return sum(t.before.bytes for t in self.tables)

    @property
    def bytes_after(self) -> int:
        return sum(t.after.bytes for t in self.tables)

    def summary(self) -> str:
        lines = [t.summary() for t in self.tables]
        files = (sum(t.before.data_files for t in self.tables), sum(t.after.data_files for t in self.tables))
        lines.append(
            f"maintenance (retention {self.retention_hours:g} h{', forced: pinned snapshots not protected' if self.forced else ''}): "
            f"{files[0]:,} -> {files[1]:,} data files, {self.bytes_before / 1e6:,.1f} MB -> {self.bytes_after / 1e6:,.1f} MB "
            f"in {len(self.tables)} tables; {self.work_bytes_removed / 1e6:,.1f} MB of leftovers under _work; {self.seconds:.1f}s"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"tables": [t.to_dict() for t in self.tables], "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "work_bytes_removed": self.work_bytes_removed, "retention_hours": self.retention_hours, "forced": self.forced,
                "seconds": round(self.seconds, 2)}  # fmt: skip


def pinned_versions(lake_root: str | Path) -> dict[str, list[int]]:
    """Per table, the versions that recorded training snapshots pin (`_models/*/run.json`)."""
    from geosid.trainer.runs import list_runs

    pinned: dict[str, set[int]] = defaultdict(set)
    for run in list_runs(lake_root):
        for table, version in ((run.get("manifest") or {}).get("table_versions") or {}).items():
            if version is not None:
                pinned[table].add(int(version))
    return {t: sorted(v) for t, v in pinned.items()}


def maintain(retention_hours: float | None = None, log_retention_hours: float | None = None, force: bool = False,
             tables: list[str] | None = None, *, ctx: Context | None = None, lake_root: str | None = None) -> MaintenanceReport:  # fmt: skip
    """Compact, vacuum (default retention: the settings', 7 days) and checkpoint every
    table (or `tables`), keeping the files of versions that recorded training snapshots
    still pin unless `force`; clear what killed runs left under _work once older than the
    retention. Prints bytes and files before and after per table."""
    import shutil

    from geosid.lake.maintenance import maintain_table
    from geosid.lake.table import sweep_dead_stages

    started = time.perf_counter()
    with use(ctx, lake_root) as ctx:
        hours = ctx.settings.vacuum_retention_hours if retention_hours is None else retention_hours
        log_hours = ctx.settings.log_retention_hours if log_retention_hours is None else log_retention_hours
        if hours < 0 or log_hours < 0:
            raise InvalidRequestError("retention hours must be >= 0")
        report = MaintenanceReport(retention_hours=hours, forced=force)
        pinned = pinned_versions(ctx.lake.root)
        specs = [ctx.lake.spec(t) for t in tables] if tables else ctx.lake.existing_tables()
        with ctx.stage(f"maintain {len(specs)} tables (retention {hours:g} h, log {log_hours:g} h)", timed="maintain"):
            for spec in specs:
                if not ctx.lake.exists(spec):
                    continue
                result = maintain_table(spec.name, ctx.lake.path(spec), hours, log_hours, pinned.get(spec.name, []), force)
                report.tables.append(result)
                ctx.log("    " + result.summary())
            work = ctx.lake.root / "_work"
            cutoff = time.time() - hours * 3600
            for folder in ("checkpoints", "ingest"):
                for leftover in (work / folder).iterdir() if (work / folder).exists() else []:
                    if leftover.stat().st_mtime <= cutoff:
                        report.work_bytes_removed += sum(f.stat().st_size for f in leftover.rglob("*") if f.is_file())
                        shutil.rmtree(leftover, ignore_errors=True)
            for stage_root in (work / "staging").glob("*/*") if (work / "staging").exists() else []:
                sweep_dead_stages(stage_root)  # staged writes of processes that are gone
        report.seconds = time.perf_counter() - started
        ctx.log(report.summary())
        return report
