"""The history kernel: sorted user timelines -> target rows and history states, in Arrow.

It is the one place where histories are cut, used alike by a from-scratch build (every
past event of the users) and by the incremental daily build (yesterday's state plus
today's events), which is why the two agree exactly:

- a history of behavior b for a target holds the last `max_len` events whose action is
  one of b's, with event_ts strictly before the target's, oldest first;
- the state of a user as of day S holds, per behavior, the last `max_len` such events
  with dt <= S; since every later event is later in time, those are all a later target
  can ever need. A state row is written for the first state day (every user with a
  behavior event by then) and for a later state day only for the users with a behavior
  event on it: a user's state changes only then, so the state as of any day is the
  user's latest row up to it (what `corpus.user_history_state` stores);
- the real-time cell at request time is either the request's own location
  (location="request", the local-life shape) or the user cell of the latest behavior
  event strictly before the target (location="previous_event", check-ins: never the
  target's own location).

Everything is vectorized: slices of a user's timeline become index ranges into sorted
arrays, and nested lists are built from offsets (no Python loop per event).
"""

from __future__ import annotations

import datetime as dt_
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Columns the kernel reads (one row per event; state events have is_new = False).
# is_target: whether a new event of a target action is a target (a protocol may keep an
# event as history only, e.g. the first check-in of a session).
INPUT_COLUMNS = (
    "source",
    "user_id",
    "event_id",
    "request_id",
    "event_ts",
    "dt",
    "action",
    "item_id",
    "codes",
    "disambiguation",
    "sid",
    "item_cell",
    "user_cell",
    "gmv",
    "is_new",
    "is_target",
)

EPOCH = dt_.date(1970, 1, 1)


@dataclass(frozen=True)
class KernelBehavior:
    name: str
    actions: tuple[str, ...]
    max_len: int


@dataclass(frozen=True)
class KernelParams:
    behaviors: tuple[KernelBehavior, ...]
    target_actions: tuple[str, ...]
    location: str  # "request" | "previous_event"
    state_days: tuple[dt_.date, ...]  # write a state as of the end of each of these days
    state_buckets: int = 16  # user_bucket = crc32(user_id) % state_buckets (the state's layout)


@dataclass
class KernelOutput:
    targets: pa.Table  # one row per target (columns TARGET_FIELDS)
    states: pa.Table  # one row per (user, state day on which the user's state changed)
    targets_without_location: int


def user_buckets(user_ids: Sequence[str], buckets: int) -> list[int]:
    """The state layout's user hash: crc32 of the UTF-8 id, modulo `buckets` (the same on
    every engine and machine, unlike an engine's own hash function)."""
    return [zlib.crc32(u.encode()) % buckets for u in user_ids]


def ranges(begins: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated [begin, begin + length) index ranges and the list offsets over them."""
    lengths = lengths.astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - begins.astype(np.int64), lengths)
    return index, offsets


def _starts(boundary: np.ndarray) -> np.ndarray:
    """For every row, the index of the first row of its run (boundary marks run starts)."""
    return np.maximum.accumulate(np.where(boundary, np.arange(len(boundary)), 0))


def _changed(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Row i differs from row i - 1 (row 0 always counts as changed)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    out = np.ones(len(array), bool)
    if len(array) > 1:
        out[1:] = pc.fill_null(pc.not_equal(array.slice(1), array.slice(0, len(array) - 1)), True).to_numpy(zero_copy_only=False)
    return out


def _is_in(column, values: Sequence[str]) -> np.ndarray:
    return pc.fill_null(pc.is_in(column, value_set=pa.array(list(values), pa.string())), False).to_numpy(zero_copy_only=False)


class _Timeline:
    """Events sorted by (source, user, time, event id), duplicates of an event dropped."""

    def __init__(self, events: pa.Table):
        order = pc.sort_indices(
            events,
            sort_keys=[("source", "ascending"), ("user_id", "ascending"), ("event_ts", "ascending"), ("event_id", "ascending")],
        )
        table = events.take(order)
        new_user = _changed(table["source"]) | _changed(table["user_id"])
        duplicate = ~(_changed(table["event_id"]) | new_user)
        if duplicate.any():  # the same event reached the kernel twice (state + bronze)
            table = table.filter(pa.array(~duplicate))
            new_user = new_user[~duplicate]
        self.table = table
        self.n = table.num_rows
        ts = table["event_ts"].combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
        self.ts = ts
        self.day = table["dt"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
        new_tie = new_user.copy()
        new_tie[1:] |= ts[1:] != ts[:-1]
        self.new_user = new_user
        self.user_start = _starts(new_user)  # first row of the row's user
        self.tie_start = _starts(new_tie)  # first row of the user's events at the same instant
        self.block_starts = np.flatnonzero(new_user)

    def prefix_counts(self, mask: np.ndarray) -> np.ndarray:
        """c[i] = number of masked rows before row i (length n + 1)."""
        out = np.zeros(self.n + 1, np.int64)
        np.cumsum(mask, out=out[1:])
        return out


def _history_lists(
    timeline: _Timeline,
    events: pa.StructArray,
    behaviors: Sequence[KernelBehavior],
    masks: Sequence[np.ndarray],
    cuts: np.ndarray,
    floors: np.ndarray,
) -> pa.ListArray:
    """Per row r: for each behavior, the last max_len of its events in [floors[r], cuts[r])."""
    n_rows, n_behaviors = len(cuts), len(behaviors)
    per_behavior = []
    for behavior, mask in zip(behaviors, masks):
        before = timeline.prefix_counts(mask)
        positions = np.flatnonzero(mask)
        ends = before[cuts]
        begins = np.maximum(before[floors], ends - behavior.max_len)
        index, offsets = ranges(begins, ends - begins)
        values = events.take(pa.array(positions[index]))
        per_behavior.append(pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values))
    # Interleave: row r's histories are [b0, b1, ...] at positions r * n_behaviors + j.
    stacked = pa.concat_arrays(per_behavior) if per_behavior else pa.array([], pa.list_(events.type))
    order = (np.arange(n_rows)[:, None] + np.arange(n_behaviors)[None, :] * n_rows).ravel()
    lists = stacked.take(pa.array(order))
    names = pa.array([b.name for b in behaviors] * n_rows, pa.string())
    max_lens = pa.array([b.max_len for b in behaviors] * n_rows, pa.int32())
    struct = pa.StructArray.from_arrays([names, max_lens, lists], names=["behavior", "max_len", "events"])
    return pa.ListArray.from_arrays(pa.array((np.arange(n_rows + 1) * n_behaviors).astype(np.int32)), struct)


def build(events: pa.Table, params: KernelParams, neighbours: Callable[[str], list[str]]) -> KernelOutput:
    """Events (INPUT_COLUMNS) of whole users -> targets with histories, and user states.

    `events` must hold every event a user's histories may need: all of the user's past
    behavior events, or a state of them plus the days being built.
    """
    missing = [c for c in INPUT_COLUMNS if c not in events.column_names]
    assert not missing, f"kernel input lacks columns {missing}"
    timeline = _Timeline(events.select(list(INPUT_COLUMNS)))
    masks = [_is_in(timeline.table["action"], b.actions) for b in params.behaviors]
    in_any = np.logical_or.reduce(masks) if masks else np.zeros(timeline.n, bool)
    behavior = _BehaviorIndex(masks, timeline.prefix_counts(in_any), np.flatnonzero(in_any))
    targets, unlocated = _targets(timeline, params, behavior, neighbours)
    return KernelOutput(targets, _states(timeline, params, behavior), unlocated)


@dataclass(frozen=True)
class _BehaviorIndex:
    """Where the behavior events are: per behavior a mask over the timeline; `before[i]`
    the behavior events before position i; `positions` those events' positions."""

    masks: list[np.ndarray]
    before: np.ndarray
    positions: np.ndarray


def _targets(timeline: _Timeline, params: KernelParams, behavior: _BehaviorIndex, neighbours: Callable[[str], list[str]]) -> tuple[pa.Table, int]:
    """The new target events with a location, their histories and request cells; and how
    many targets had no location."""
    table = timeline.table
    user_cell = table["user_cell"].combine_chunks()
    is_new = table["is_new"].combine_chunks().to_numpy(zero_copy_only=False).astype(bool)
    is_target = pc.fill_null(table["is_target"].combine_chunks(), True).to_numpy(zero_copy_only=False).astype(bool)
    targets = np.flatnonzero(is_new & is_target & _is_in(table["action"], params.target_actions))
    if params.location == "request":
        located = targets[pc.is_valid(user_cell.take(pa.array(targets))).to_numpy(zero_copy_only=False)]
        location = user_cell.take(pa.array(located))
    elif params.location == "previous_event":
        k = behavior.before[timeline.tie_start[targets]]
        has_previous = k > behavior.before[timeline.user_start[targets]]
        located = targets[has_previous]
        location = user_cell.take(pa.array(behavior.positions[k[has_previous] - 1]))
    else:
        raise ValueError(f"location must be 'request' or 'previous_event', got {params.location!r}")
    history_events = pa.StructArray.from_arrays(
        [table[c].combine_chunks() for c in ("item_id", "codes", "item_cell", "event_ts", "action")],
        names=["item_id", "codes", "cell_id", "event_ts", "action"],
    )
    histories = _history_lists(timeline, history_events, params.behaviors, behavior.masks, timeline.tie_start[located], timeline.user_start[located])
    cache: dict[str, list[str]] = {}
    ring = []
    for cell in location.to_pylist():
        if cell not in cache:
            cache[cell] = neighbours(cell)
        ring.append(cache[cell])
    take = pa.array(located)
    columns = {name: table[column].take(take) for name, column in TARGET_COLUMNS}
    target_table = pa.table(
        {
            **columns,
            "user_cell_id": location,
            "neighbour_cell_ids": pa.array(ring, pa.list_(pa.string())),
            "histories": histories,
            "dt": table["dt"].take(take),
        }
    )
    return target_table, int(len(targets) - len(located))


# target table column <- timeline column
TARGET_COLUMNS = (
    ("source", "source"),
    ("user_id", "user_id"),
    ("event_id", "event_id"),
    ("request_id", "request_id"),
    ("target_ts", "event_ts"),
    ("target_action", "action"),
    ("target_item_id", "item_id"),
    ("target_codes", "codes"),
    ("target_disambiguation", "disambiguation"),
    ("target_sid", "sid"),
    ("target_cell_id", "item_cell"),
    ("target_gmv", "gmv"),
)


def _states(timeline: _Timeline, params: KernelParams, behavior: _BehaviorIndex) -> pa.Table | None:
    """User states as of the end of each state day (after the first, only the users whose
    state changed)."""
    table = timeline.table
    user_cell = table["user_cell"].combine_chunks()
    state_events = pa.StructArray.from_arrays(
        [table[c].combine_chunks() for c in ("event_id", "item_id", "codes", "item_cell", "user_cell", "event_ts", "action")],
        names=["event_id", "item_id", "codes", "cell_id", "user_cell_id", "event_ts", "action"],
    )
    state_parts = []
    starts = timeline.block_starts
    previous_cuts = None
    for day in sorted(params.state_days):
        upto = timeline.day <= (day - EPOCH).days  # a prefix of every user's block
        counts = np.add.reduceat(upto.astype(np.int64), starts) if len(starts) else np.zeros(0, np.int64)
        cuts = starts + counts
        k = behavior.before[cuts]
        keep = k > behavior.before[starts]  # users with at least one behavior event by then
        if previous_cuts is not None:  # a later state day: only the users whose state changed
            keep &= k > behavior.before[previous_cuts]
        previous_cuts = cuts
        cuts, floors, last = cuts[keep], starts[keep], behavior.positions[k[keep] - 1]
        rows = pa.array(starts[keep])
        users = table["user_id"].take(rows)
        state_parts.append(
            pa.table(
                {
                    "source": table["source"].take(rows),
                    "user_id": users,
                    "last_event_ts": table["event_ts"].take(pa.array(last)),
                    "last_cell_id": user_cell.take(pa.array(last)),
                    "histories": _history_lists(timeline, state_events, params.behaviors, behavior.masks, cuts, floors),
                    "user_bucket": pa.array(user_buckets(users.to_pylist(), params.state_buckets), pa.int32()),
                    "dt": pa.array([day] * int(keep.sum()), pa.date32()),
                }
            )
        )
    return pa.concat_tables(state_parts) if state_parts else None
