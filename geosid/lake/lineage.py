"""Lineage: what arrived (`ops.input_days`), what every derived day was built from
(`ops.builds`), and from the two, what is stale.

Every derived day depends on all input days up to it (items known as of the day, the
history state, trailing activity windows), so a build records one digest of its inputs:
the chain of every source's input-day digests up to its day (`InputChain`). A build
whose recorded chain differs from today's chain of its day is stale; the earliest input
day that changed after it was built says why. A day between two daily builds of a scope
that was never built is missing (a run that failed midway).

Both tables are small (a row per source and day; a row per table, scope and day) and are
written by delta-rs alone, so recording lineage never needs the engine.
"""

from __future__ import annotations

import bisect
import datetime as dt_
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from geosid.errors import InvalidRequestError
from geosid.lake.arrow import EMPTY_DIGEST, spark_type_to_arrow
from geosid.lake.dates import day_runs
from geosid.lake.table import Lake
from geosid.schemas import bronze, ops

# Columns of bronze.events that say where a row came from, not what it is: a re-delivery
# under other file names with the same rows is the same input.
EVENT_LINEAGE = ("source_file", "line_no")
# The inputs of a build in a lake that records no input days (older than lineage).
UNTRACKED = "untracked"


def _now() -> dt_.datetime:
    return dt_.datetime.now(dt_.timezone.utc).replace(tzinfo=None)


def days_predicate(days: Iterable[dt_.date], column: str = "dt") -> str:
    """SQL for a set of days, as ranges of consecutive days."""
    runs = day_runs(days)
    if not runs:
        return "FALSE"
    clauses = [
        f"{column} = DATE'{a.isoformat()}'" if a == b else f"({column} >= DATE'{a.isoformat()}' AND {column} <= DATE'{b.isoformat()}')"
        for a, b in runs
    ]
    return "(" + " OR ".join(clauses) + ")"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------
# Inputs


# What is derived from one version of an ops table (its rows, the input chain), by
# (kind, path, table version): a daily run asks several times, and a table version never
# changes its rows.
_PER_VERSION: dict[tuple[str, str, int], object] = {}


def _per_version(lake: Lake, spec, kind: str, make: Callable[[], object]):
    """`make()` once per version of `spec`'s table (the table exists)."""
    key = (kind, lake.path(spec), lake.table_version(spec))
    if key not in _PER_VERSION:
        if len(_PER_VERSION) > 32:
            _PER_VERSION.clear()
        _PER_VERSION[key] = make()
    return _PER_VERSION[key]


def _read(lake: Lake, spec) -> pd.DataFrame:
    if not lake.exists(spec):
        return pd.DataFrame(columns=spec.columns)
    return _per_version(lake, spec, "rows", lambda: lake.to_arrow(spec).to_pandas()).copy()


def input_days(lake: Lake) -> pd.DataFrame:
    """ops.input_days as a frame (empty, with its columns, when absent)."""
    return _read(lake, ops.INPUT_DAYS)


@dataclass
class InputChange:
    """What an ingest did to the recorded input days of a source."""

    source: str
    new: list[dt_.date] = field(default_factory=list)  # days the lake did not know
    changed: list[dt_.date] = field(default_factory=list)  # known days whose content changed
    unchanged: list[dt_.date] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.new)} new", f"{len(self.changed)} changed", f"{len(self.unchanged)} unchanged"]
        changed = f" (changed: {', '.join(d.isoformat() for d in self.changed[:5])}{' ...' if len(self.changed) > 5 else ''})" if self.changed else ""
        return f"input days of {self.source}: " + ", ".join(parts) + changed

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "new": [d.isoformat() for d in self.new],
            "changed": [d.isoformat() for d in self.changed],
            "unchanged": len(self.unchanged),
        }


def _write_input_days(lake: Lake, source: str, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows, schema=pa.schema([(f.name, _arrow(f.dataType)) for f in ops.INPUT_DAYS.schema.fields]))
    where = f"source = {_quote(source)} AND {days_predicate(r['dt'] for r in rows)}"
    lake.write_arrow(table, ops.INPUT_DAYS, where=where)


def _arrow(data_type) -> pa.DataType:
    return spark_type_to_arrow(data_type)


def record_inputs(
    lake: Lake,
    source: str,
    feeds: Sequence[str],
    days: Sequence[dt_.date],
    files: dict | None = None,
    status: str = "complete",
    note: str | None = None,
) -> InputChange:
    """Record the ingested (or closed) `days` of `source` with the digest of their bronze
    events and items; `files` maps a day to its delivery's fingerprint (drops)."""
    change = InputChange(source)
    days = sorted(set(days))
    if not days:
        return change
    events = lake.day_digests(bronze.EVENTS, days, {"source": source}, exclude=EVENT_LINEAGE)
    items = lake.day_digests(bronze.ITEMS, days, {"source": source})
    rejects = {d: 0 for d in days}
    for feed in feeds:
        for day, (n, _) in lake.day_digests(bronze.REJECTS, days, {"source": feed}).items():
            rejects[day] += n
    known = input_days(lake)
    known = known[known.source == source].set_index("dt") if len(known) else known
    now = _now()
    rows = []
    for day in days:
        (n_events, e_digest), (n_items, i_digest) = events[day], items[day]
        digest = EMPTY_DIGEST if not n_events and not n_items else hashlib.sha256(f"{e_digest}:{i_digest}".encode()).hexdigest()[:16]
        previous = known.loc[day] if len(known) and day in known.index else None
        if previous is None:
            change.new.append(day)
            changed_at = now
        elif previous["digest"] != digest:
            change.changed.append(day)
            changed_at = now
        else:
            change.unchanged.append(day)
            changed_at = previous["changed_at"].to_pydatetime() if hasattr(previous["changed_at"], "to_pydatetime") else previous["changed_at"]
        rows.append(
            {
                "source": source,
                "dt": day,
                "status": status,
                "digest": digest,
                "events": n_events,
                "items": n_items,
                "rejects": rejects[day],
                "files": (files or {}).get(day),
                "note": note,
                "ingested_at": now,
                "changed_at": changed_at,
            }
        )
    _write_input_days(lake, source, rows)
    return change


# ---------------------------------------------------------------------------------------
# The chain of input digests


class InputChain:
    """The digest of every input day up to a day, over all sources (one hash chain in
    day order): what a build of that day read. Days with nothing recorded add nothing."""

    def __init__(self, inputs: pd.DataFrame):
        self.tracked = len(inputs) > 0
        self._days: list[dt_.date] = []
        self._digests: list[str] = []
        h = hashlib.sha256()
        if self.tracked:
            for day, group in inputs.sort_values(["dt", "source"]).groupby("dt", sort=True):
                for row in group.itertuples():
                    h.update(f"{row.source}|{day.isoformat()}|{row.digest};".encode())
                self._days.append(day)
                self._digests.append(h.copy().hexdigest()[:16])

    def at(self, day: dt_.date) -> str:
        if not self.tracked:
            return UNTRACKED
        k = bisect.bisect_right(self._days, day)
        return self._digests[k - 1] if k else EMPTY_DIGEST


def chain(lake: Lake) -> InputChain:
    """The input chain of the lake's recorded input days (cached per table version)."""
    if not lake.exists(ops.INPUT_DAYS):
        return InputChain(input_days(lake))
    return _per_version(lake, ops.INPUT_DAYS, "chain", lambda: InputChain(input_days(lake)))


# ---------------------------------------------------------------------------------------
# Builds


def builds(lake: Lake) -> pd.DataFrame:
    """ops.builds as a frame (empty, with its columns, when absent)."""
    return _read(lake, ops.BUILDS)


def record_builds(
    lake: Lake,
    table: str,
    scope: str,
    days: Iterable[dt_.date],
    params: dict,
    mode: str = "day",
    codebook_version: str | None = None,
    continued_from: dict | None = None,
    inputs: InputChain | None = None,
) -> None:
    """Record that `table` was built for `days` under `scope` from the inputs the lake holds
    now (`continued_from`: a day -> the state checkpoint it continued from)."""
    if mode not in ops.BUILD_MODES:
        raise InvalidRequestError(f"build mode must be one of {ops.BUILD_MODES}, got {mode!r}")
    days = sorted(set(days))
    if not days:
        return
    inputs = inputs or chain(lake)
    now = _now()
    text = json.dumps(params, sort_keys=True, default=str)
    rows = [
        {
            "table_name": table,
            "scope": scope,
            "dt": day,
            "inputs": inputs.at(day),
            "codebook_version": codebook_version,
            "continued_from": (continued_from or {}).get(day),
            "params": text,
            "mode": mode,
            "built_at": now,
        }
        for day in days
    ]
    data = pa.Table.from_pylist(rows, schema=pa.schema([(f.name, _arrow(f.dataType)) for f in ops.BUILDS.schema.fields]))
    where = f"table_name = {_quote(table)} AND scope = {_quote(scope)} AND {days_predicate(days)}"
    lake.write_arrow(data, ops.BUILDS, where=where)


# ---------------------------------------------------------------------------------------
# Staleness


@dataclass
class ScopeState:
    """One derived table under one scope: its built days, which are fresh, stale (with
    why) or missing (never built, between two daily builds)."""

    table: str
    scope: str
    fresh: list[dt_.date] = field(default_factory=list)
    stale: list[dt_.date] = field(default_factory=list)
    missing: list[dt_.date] = field(default_factory=list)
    why: dict = field(default_factory=dict)  # stale day -> the reason, in words
    params: dict = field(default_factory=dict)  # stale or missing day -> its build's params (dict)
    latest_params: dict = field(default_factory=dict)
    codebook_version: str | None = None

    @property
    def built(self) -> list[dt_.date]:
        return sorted(self.fresh + self.stale)

    @property
    def first_to_repair(self) -> dt_.date | None:
        todo = self.stale + self.missing
        return min(todo) if todo else None

    def to_repair(self, *, from_day: dt_.date | None = None) -> list[dt_.date]:
        """Every built or missing day from the first one to repair on (or from the first
        built day on or after `from_day`, when earlier: a forced rebuild): a rebuild
        restarts there and redoes what followed, in order."""
        forced = [d for d in self.built if from_day is not None and d >= from_day]
        start = min([d for d in (self.first_to_repair, min(forced, default=None)) if d is not None], default=None)
        if start is None:
            return []
        return sorted(d for d in set(self.built) | set(self.missing) if d >= start)


@dataclass
class SourceInputs:
    source: str
    complete: list[dt_.date] = field(default_factory=list)
    closed: list[dt_.date] = field(default_factory=list)
    empty: list[dt_.date] = field(default_factory=list)  # complete days without events or items
    waiting: list[dt_.date] = field(default_factory=list)  # days between known days that have not arrived

    @property
    def known(self) -> list[dt_.date]:
        return sorted(self.complete + self.closed)


@dataclass
class LakeState:
    tracked: bool
    sources: list[SourceInputs]
    scopes: list[ScopeState]

    def waiting_through(self, day: dt_.date) -> list[tuple[str, dt_.date]]:
        """(source, day) of the inputs up to `day` that have not arrived."""
        return [(s.source, d) for s in self.sources for d in s.waiting if d <= day]

    def scope(self, table: str, scope: str) -> ScopeState | None:
        return next((s for s in self.scopes if s.table == table and s.scope == scope), None)


def _reason(inputs: pd.DataFrame, day: dt_.date, built_at) -> str:
    later = inputs[(inputs.dt <= day) & (inputs.changed_at > built_at)].sort_values("dt")
    if later.empty:
        return "its inputs differ from what it was built from"
    first = later.iloc[0]
    what = "closed as missing" if first["status"] == "closed" else "changed"
    more = f" (and {len(later) - 1} more input day(s))" if len(later) > 1 else ""
    return f"input {first['source']} {first['dt'].isoformat()} {what} at {first['changed_at']:%Y-%m-%d %H:%M:%S} UTC{more}"


def source_inputs(inputs: pd.DataFrame) -> list[SourceInputs]:
    """Per source: its complete, closed and empty days, and the days between its known
    days that have not arrived."""
    sources = []
    for source, group in inputs.groupby("source", sort=True) if len(inputs) else []:
        known = set(group.dt)
        first, last = min(known), max(known)
        span = [first + dt_.timedelta(days=k) for k in range((last - first).days + 1)]
        sources.append(
            SourceInputs(
                source,
                complete=sorted(group[group.status == "complete"].dt),
                closed=sorted(group[group.status == "closed"].dt),
                empty=sorted(group[(group.status == "complete") & (group.digest == EMPTY_DIGEST)].dt),
                waiting=[d for d in span if d not in known],
            )
        )
    return sources


def waiting_through(lake: Lake, day: dt_.date) -> list[tuple[str, dt_.date]]:
    """(source, day) of the input days up to `day` that have not arrived."""
    return LakeState(True, source_inputs(input_days(lake)), []).waiting_through(day)


def lake_state(lake: Lake) -> LakeState:
    """What arrived, and every derived table's fresh, stale and missing days."""
    inputs = input_days(lake)
    current = chain(lake)
    sources = source_inputs(inputs)
    arrived = {d for s in sources for d in s.known}
    scopes = []
    done = builds(lake)
    for (table, scope), group in done.groupby(["table_name", "scope"], sort=True) if len(done) else []:
        state = ScopeState(table, scope)
        group = group.sort_values("dt")
        for row in group.itertuples():
            if not current.tracked or row.inputs == UNTRACKED or row.inputs == current.at(row.dt):
                state.fresh.append(row.dt)
            else:
                state.stale.append(row.dt)
                state.why[row.dt] = _reason(inputs, row.dt, row.built_at)
            state.params[row.dt] = json.loads(row.params)
        daily = sorted(group[group["mode"] != "range"].dt)
        if daily:
            built = set(group.dt)
            state.missing = [
                daily[0] + dt_.timedelta(days=k)
                for k in range((daily[-1] - daily[0]).days)
                if daily[0] + dt_.timedelta(days=k) not in built and daily[0] + dt_.timedelta(days=k) in arrived
            ]
        latest = group.iloc[-1]
        state.latest_params = json.loads(latest["params"])
        state.codebook_version = latest["codebook_version"]
        scopes.append(state)
    return LakeState(current.tracked, sources, scopes)
