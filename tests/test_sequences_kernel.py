"""The history kernel against a plain per-target Python reference, on random timelines
with ties, duplicates and several days; and state + new days == all events."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from geosid.jobs.sequences_kernel import (
    INPUT_COLUMNS,
    KernelBehavior,
    KernelParams,
    build,
    ranges,
)

DAY0 = dt.date(2024, 3, 1)
BEHAVIORS = (
    KernelBehavior("watch", ("watch",), 4),
    KernelBehavior("click", ("click",), 2),
    KernelBehavior("consume", ("click", "pay"), 3),
)


def neighbours(cell: str) -> list[str]:
    return [f"{cell}-n{k}" for k in range(8)]


def random_events(seed: int, n_users: int = 6, n_events: int = 160, days: int = 4) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_events):
        day = DAY0 + dt.timedelta(days=int(rng.integers(0, days)))
        # Few distinct instants, so ties between events are common.
        ts = dt.datetime.combine(day, dt.time(int(rng.integers(8, 11)), int(rng.integers(0, 3))), tzinfo=dt.UTC)
        rows.append(
            {
                "source": "s",
                "user_id": f"u{int(rng.integers(0, n_users))}",
                "event_id": f"e{i:04d}",
                "request_id": f"r{i}",
                "event_ts": ts,
                "dt": day,
                "action": str(rng.choice(["watch", "watch", "click", "pay", "checkin"])),
                "item_id": f"i{int(rng.integers(0, 20))}",
                "codes": [int(rng.integers(0, 8)) for _ in range(3)],
                "disambiguation": 0,
                "sid": "x",
                "item_cell": f"c{int(rng.integers(0, 5))}",
                "user_cell": f"c{int(rng.integers(0, 5))}",
                "gmv": None,
                "is_new": True,
            }
        )
    return rows


SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("user_id", pa.string()),
        ("event_id", pa.string()),
        ("request_id", pa.string()),
        ("event_ts", pa.timestamp("us", tz="UTC")),
        ("dt", pa.date32()),
        ("action", pa.string()),
        ("item_id", pa.string()),
        ("codes", pa.list_(pa.int32())),
        ("disambiguation", pa.int32()),
        ("sid", pa.string()),
        ("item_cell", pa.string()),
        ("user_cell", pa.string()),
        ("gmv", pa.float64()),
        ("is_new", pa.bool_()),
        ("is_target", pa.bool_()),
    ]
)


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def reference(rows, targets, location, behaviors=BEHAVIORS):
    """Per target event id: (user cell, {behavior: [event ids]}) by definition, slowly."""
    order = sorted(rows, key=lambda r: (r["user_id"], r["event_ts"], r["event_id"]))
    out = {}
    for t in order:
        if not (t["is_new"] and t["action"] in targets):
            continue
        before = [r for r in order if r["user_id"] == t["user_id"] and r["event_ts"] < t["event_ts"]]
        in_any = [r for r in before if any(r["action"] in b.actions for b in behaviors)]
        if location == "request":
            cell = t["user_cell"]
        elif in_any:
            cell = in_any[-1]["user_cell"]
        else:
            continue  # no prior location: not a target
        hist = {b.name: [r["event_id"] for r in before if r["action"] in b.actions][-b.max_len :] for b in behaviors}
        out[t["event_id"]] = (cell, hist)
    return out


def event_ids_of(target_table: pa.Table, events_by_key: dict) -> dict:
    out = {}
    for row in target_table.to_pylist():
        hist = {
            h["behavior"]: [
                events_by_key[(row["user_id"], e["event_ts"], e["item_id"], e["action"], tuple(e["codes"]), e["cell_id"])] for e in h["events"]
            ]
            for h in row["histories"]
        }
        out[row["event_id"]] = (row["user_cell_id"], hist)
    return out


def test_ranges_builds_offsets_and_indices():
    index, offsets = ranges(np.array([5, 0, 9]), np.array([2, 0, 3]))
    assert index.tolist() == [5, 6, 9, 10, 11] and offsets.tolist() == [0, 2, 2, 5]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("location", ["request", "previous_event"])
def test_kernel_matches_the_definition(seed, location):
    rows = random_events(seed)
    for r in rows:  # make every event distinguishable from its history fields
        r["item_id"] = f"{r['item_id']}:{r['event_id']}"
    params = KernelParams(BEHAVIORS, ("pay", "click"), location, ())
    result = build(table(rows), params, neighbours)
    keyed = {(r["user_id"], r["event_ts"], r["item_id"], r["action"], tuple(r["codes"]), r["item_cell"]): r["event_id"] for r in rows}
    expected = reference(rows, ("pay", "click"), location)
    assert event_ids_of(result.targets, keyed) == expected
    assert result.targets_without_location == sum(1 for r in rows if r["action"] in ("pay", "click")) - len(expected)
    assert all(n == neighbours(c) for c, n in zip(result.targets["user_cell_id"].to_pylist(), result.targets["neighbour_cell_ids"].to_pylist()))


def test_state_plus_new_days_equals_all_events():
    rows = random_events(7, n_events=220)
    split = DAY0 + dt.timedelta(days=1)  # state as of day 1, then days 2..3
    params_all = KernelParams(BEHAVIORS, ("pay",), "previous_event", (DAY0 + dt.timedelta(days=3),))
    full = build(table([dict(r, is_new=r["dt"] > split) for r in rows]), params_all, neighbours)

    state = build(table(rows), KernelParams(BEHAVIORS, ("pay",), "previous_event", (split,)), neighbours).states
    carried = []
    for s in state.to_pylist():
        for h in s["histories"]:
            for e in h["events"]:
                carried.append(
                    {
                        "source": s["source"],
                        "user_id": s["user_id"],
                        "event_id": e["event_id"],
                        "request_id": None,
                        "event_ts": e["event_ts"],
                        "dt": e["event_ts"].date(),
                        "action": e["action"],
                        "item_id": e["item_id"],
                        "codes": e["codes"],
                        "disambiguation": None,
                        "sid": None,
                        "item_cell": e["cell_id"],
                        "user_cell": e["user_cell_id"],
                        "gmv": None,
                        "is_new": False,
                    }
                )
    later = [dict(r, is_new=True) for r in rows if r["dt"] > split]
    incremental = build(table(carried + later), params_all, neighbours)

    def canonical(t: pa.Table, drop=()):
        return sorted(tuple((k, repr(v)) for k, v in row.items() if k not in drop) for row in t.to_pylist())

    # Targets carry request ids etc. from the new events only; histories must agree exactly.
    assert canonical(incremental.targets) == canonical(full.targets)
    assert canonical(incremental.states) == canonical(full.states)
    assert full.targets.num_rows > 10 and any(len(h["events"]) for r in full.targets.to_pylist() for h in r["histories"])


def test_input_columns_are_checked():
    with pytest.raises(AssertionError, match="lacks columns"):
        build(table([]).drop_columns(["user_cell"]), KernelParams(BEHAVIORS, ("pay",), "request", ()), neighbours)


def test_schema_lists_every_input_column():
    assert tuple(SCHEMA.names) == INPUT_COLUMNS


def test_events_marked_not_target_are_history_only():
    rows = random_events(7)
    marked = [dict(r, is_target=(i % 3 != 0)) for i, r in enumerate(rows)]
    out = build(table(marked), KernelParams(BEHAVIORS, ("pay", "click"), "request", ()), neighbours)
    ids = set(out.targets.column("event_id").to_pylist())
    skipped = {r["event_id"] for i, r in enumerate(rows) if i % 3 == 0}
    assert ids and not ids & skipped
    # they still fill later histories
    skipped_events = {(r["item_id"], r["event_ts"], r["action"]) for i, r in enumerate(rows) if i % 3 == 0}
    in_histories = {
        (e["item_id"], e["event_ts"], e["action"]) for row in out.targets.column("histories").to_pylist() for h in row for e in h["events"]
    }
    assert in_histories & skipped_events
