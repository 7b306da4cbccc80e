"""Training corpus on hand-made timelines: no leakage, histories across days, the
real-time cell, incremental == from scratch, idempotent re-runs, splits, cell context,
data quality."""

import datetime as dt
from typing import NamedTuple

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from geosid.errors import InvalidRequestError, MissingStateError
from geosid.geo import GeohashCells
from geosid.jobs.corpus import (
    CorpusConfig,
    SplitConfig,
    TrajectoryConfig,
    build_cell_context,
    build_day,
    build_range,
    latest_states,
    trajectory_bounds,
)
from geosid.jobs.geo import GeoConfig, run_geo
from geosid.jobs.validate import validate_corpus
from geosid.lake import Lake
from geosid.schemas import bronze, corpus, index
from geosid.sources.registry import BehaviorConfig

V = "cb-test"
SIZES = (8, 8, 8)
CELLS = GeohashCells(6)
D0 = dt.date(2024, 5, 1)
D1, D2, D3 = (D0 + dt.timedelta(days=k) for k in (1, 2, 3))
A = (40.7500, -73.9800)
B = (40.7800, -73.9500)
C = (40.7000, -74.0100)
ITEMS = {"i1": A, "i2": B, "i3": C, "i4": A}  # i9 has no SID


def _nullable(schema):
    return StructType([StructField(f.name, f.dataType, True) for f in schema.fields])


def ts(day, hh, mm=0):
    return dt.datetime.combine(day, dt.time(hh, mm))


class Event(NamedTuple):
    """A bronze.events row, its fields in the table's column order."""

    event_id: str
    source: str
    user_id: str
    item_id: str
    action: str
    event_ts: dt.datetime
    tz_offset_min: int | None
    user_lat: float
    user_lon: float
    request_id: str
    gmv: float | None
    source_file: str
    line_no: int
    dt: dt.date


def event(eid, source, user, item, action, when, where, gmv=None) -> Event:
    lat, lon = where
    return Event(eid, source, user, item, action, when, None, lat, lon, f"r-{eid}", gmv, "f", 1, when.date())


def write_events(spark, lake, rows: list[Event]):
    days = (min(r.dt for r in rows), max(r.dt for r in rows))
    lake.write(spark.createDataFrame(rows, _nullable(bronze.EVENTS.schema)), bronze.EVENTS, dt=days)


def write_sid_map(spark, lake, items=ITEMS, sources=("synthetic", "tsmc2014"), reverse=False):
    rows = []
    for source in sources:
        for k, (item, (lat, lon)) in enumerate(sorted(items.items())):
            codes = [k % 8, (3 * k) % 8, (5 * k + 1) % 8]
            rows.append((V, source, item, codes, 0, "-".join(map(str, codes)) + "-0", ts(D0, 0), lat, lon, D0))
    rows = rows[::-1] if reverse else rows  # the same map in another file order
    lake.write(spark.createDataFrame(rows, _nullable(index.SID_MAP.schema)).coalesce(1), index.SID_MAP)


LOCAL = CorpusConfig.for_source(
    "synthetic",
    behaviors=(
        BehaviorConfig(name="watch", actions=("watch",), max_len=5),
        BehaviorConfig(name="click", actions=("click",), max_len=2),
        BehaviorConfig(name="pay", actions=("pay",), max_len=2),
    ),
)
CHECKINS = CorpusConfig.for_source("tsmc2014")


@pytest.fixture
def local_life(spark, lake):
    write_events(
        spark,
        lake,
        [
            event("e01", "synthetic", "u1", "i1", "watch", ts(D0, 10, 0), A),
            event("e02", "synthetic", "u1", "i1", "click", ts(D0, 10, 1), A),
            event("e03", "synthetic", "u1", "i1", "pay", ts(D0, 10, 5), A, gmv=12.0),
            event("e04", "synthetic", "u1", "i2", "watch", ts(D0, 10, 5), A),  # same instant as the pay
            event("e05", "synthetic", "u1", "i3", "watch", ts(D1, 9, 0), B),
            event("e06", "synthetic", "u1", "i3", "pay", ts(D1, 9, 30), B, gmv=30.0),
            event("e07", "synthetic", "u1", "i9", "pay", ts(D1, 9, 40), B),  # no SID
            event("e08", "synthetic", "u2", "i2", "watch", ts(D1, 8, 0), C),
            event("e09", "synthetic", "u2", "i2", "pay", ts(D2, 8, 0), C),
        ],
    )
    write_sid_map(spark, lake)
    return lake


def rows_by_event(lake, where="true"):
    return {r.event_id: r for r in lake.read(corpus.TRAINING_SEQUENCES).filter(where).collect()}


def history(row, behavior):
    return [e.item_id for h in row.histories if h.behavior == behavior for e in h.events]


def test_local_life_targets_histories_and_request_cells(spark, local_life):
    report = build_range(local_life, V, D0, D2, LOCAL)
    assert (report.targets, report.events_without_sid, report.targets_without_location) == (3, 1, 0)
    rows = rows_by_event(local_life)
    assert set(rows) == {"e03", "e06", "e09"}

    first = rows["e03"]  # the watch of i2 at the pay's very instant is not history
    assert (history(first, "watch"), history(first, "click"), history(first, "pay")) == (["i1"], ["i1"], [])
    assert first.user_cell_id == CELLS.cell_of(*A) and first.neighbour_cell_ids == CELLS.neighbours(CELLS.cell_of(*A))
    assert (first.target_cell_id, first.target_gmv, first.dt) == (CELLS.cell_of(*A), 12.0, D0)
    assert first.target_codes == [0, 0, 1] and first.target_sid == "0-0-1-0"

    across = rows["e06"]  # a history that crosses the day boundary
    assert (history(across, "watch"), history(across, "click"), history(across, "pay")) == (["i1", "i2", "i3"], ["i1"], ["i1"])
    assert across.user_cell_id == CELLS.cell_of(*B)  # the request's own location
    assert [h.max_len for h in across.histories] == [5, 2, 2]
    assert all(e.event_ts < across.target_ts for h in across.histories for e in h.events)
    assert rows["e09"].user_cell_id == CELLS.cell_of(*C) and history(rows["e09"], "watch") == ["i2"]


def test_checkins_use_the_previous_checkin_location_never_the_target(spark, lake):
    write_events(
        spark,
        lake,
        [
            event("c1", "tsmc2014", "u3", "i1", "checkin", ts(D0, 9), A),
            event("c2", "tsmc2014", "u3", "i2", "checkin", ts(D0, 18), B),
            event("c3", "tsmc2014", "u3", "i3", "checkin", ts(D1, 9), C),
        ],
    )
    write_sid_map(spark, lake)
    report = build_range(lake, V, D0, D1, CHECKINS)
    rows = rows_by_event(lake)
    assert report.targets_without_location == 1 and set(rows) == {"c2", "c3"}  # the first has no prior location
    assert rows["c2"].user_cell_id == CELLS.cell_of(*A) and rows["c2"].target_cell_id == CELLS.cell_of(*B)
    assert rows["c3"].user_cell_id == CELLS.cell_of(*B) and history(rows["c3"], "checkin") == ["i1", "i2"]


def test_libcity_protocol_keeps_sessions_and_their_targets(spark, lake):
    """LibCity on a toy check-in file: rare POIs and short sessions dropped, users with one
    session dropped; targets are the check-ins after the first of a non-first session,
    their histories the earlier (kept) sessions plus the session so far; per user 80/10/10."""
    places = {"i1": A, "i2": B, "i3": C, "i4": A}
    rows, t0 = [], ts(D0, 6)

    def checkin(user, item, hours):
        rows.append(event(f"e{len(rows):03d}", "tsmc2014", user, item, "checkin", t0 + dt.timedelta(hours=hours), places[item]))

    for k in range(6):  # u1, session 0: six check-ins an hour apart
        checkin("u1", ["i1", "i2"][k % 2], k)
    checkin("u1", "i4", 5.5)  # i4 is checked in twice in all: a rare POI, dropped everywhere
    for k in range(5):  # 13 h later: session 1
        checkin("u1", ["i3", "i1"][k % 2], 18 + k)
    for k in range(2):  # 20 h later: a session of two, too short
        checkin("u1", "i2", 42 + k)
    checkin("u2", "i4", 1)
    for k in range(6):  # u2: a single session, dropped
        checkin("u2", "i1", 2 + k)
    write_events(spark, lake, rows)
    write_sid_map(spark, lake, sources=("tsmc2014",))
    config = CHECKINS.model_copy(update={"split": SplitConfig(protocol="libcity")})
    build_range(lake, V, D0, D3, config)
    got = sorted(lake.read(corpus.TRAINING_SEQUENCES).collect(), key=lambda r: r.target_ts)
    assert [r.event_id for r in got] == ["e008", "e009", "e010", "e011"]  # session 1 after its first check-in
    assert {r.user_id for r in got} == {"u1"}
    assert [e.item_id for e in got[0].histories[0].events] == ["i1", "i2", "i1", "i2", "i1", "i2", "i3"]  # no i4
    assert [r.split for r in got] == ["train", "train", "train", "test"]  # floor(0.8 * 4) = 3, floor(0.9 * 4) = 3
    with pytest.raises(ValueError, match="libcity"):
        build_day(lake, V, D1, config)


def test_trajectory_bounds_split_the_span_by_days():
    """STHGCN's global_time split: first + int(0.8 * span) and + int(0.9 * span) days."""
    assert trajectory_bounds(D0, D0 + dt.timedelta(days=10), (0.8, 0.1, 0.1)) == (D0 + dt.timedelta(days=8), D0 + dt.timedelta(days=9))
    assert trajectory_bounds(D0, D0 + dt.timedelta(days=19), (0.8, 0.1, 0.1)) == (D0 + dt.timedelta(days=15), D0 + dt.timedelta(days=17))


def test_trajectory_protocol_filters_cuts_and_keeps_last_checkins(spark, lake):
    """The next-POI papers' protocol on a toy file (11 days: valid from day 8, test from
    day 9): a POI and a user below the minimum dropped; trajectories cut at gaps over
    24 h; train targets every check-in after a trajectory's first, valid / test only a
    trajectory's last, and not where its POI or user has no train-period check-in."""
    places = {"i1": A, "i2": B, "i3": C, "i4": A}
    rows = []

    def checkin(eid, user, item, day, hour):
        rows.append(event(eid, "tsmc2014", user, item, "checkin", ts(D0 + dt.timedelta(days=day), hour), places[item]))

    for eid, item, day, hour in (
        ("e01", "i1", 0, 8),
        ("e02", "i2", 0, 10),
        ("e03", "i4", 0, 11),
        ("e04", "i1", 0, 12),
        ("e05", "i2", 2, 9),
        ("e06", "i1", 3, 8),  # 45 h gap: a new trajectory; 23 h: the same
        ("e07", "i2", 8, 10),
        ("e08", "i1", 8, 11),
        ("e09", "i2", 8, 12),  # valid: e09 only
        ("e10", "i1", 9, 13),
        ("e11", "i1", 9, 14),
        ("e12", "i3", 10, 9),
    ):  # i3 unseen in train
        checkin(eid, "u1", item, day, hour)
    for eid, item, day, hour in (("f1", "i1", 1, 10), ("f2", "i2", 1, 11), ("f3", "i2", 9, 10), ("f4", "i1", 9, 12)):
        checkin(eid, "u4", item, day, hour)
    for eid, item, day, hour in (("g1", "i3", 9, 10), ("g2", "i1", 9, 11), ("g3", "i2", 10, 8)):
        checkin(eid, "u2", item, day, hour)  # a user unseen in train: no valid / test target
    checkin("h1", "u3", "i1", 1, 9)
    checkin("h2", "u3", "i2", 1, 10)  # two check-ins: below the user minimum
    write_events(spark, lake, rows)
    write_sid_map(spark, lake, sources=("tsmc2014",))
    split = SplitConfig(protocol="trajectory", trajectory=TrajectoryConfig(min_poi_checkins=2, min_user_checkins=3))
    report = build_range(lake, V, D0, D0 + dt.timedelta(days=10), CHECKINS.model_copy(update={"split": split}))
    got = rows_by_event(lake)
    assert {e: r.split for e, r in got.items()} == {
        "e02": "train",
        "e04": "train",
        "e06": "train",
        "f2": "train",
        "e09": "valid",
        "f4": "test",
    }
    assert report.split_days == {"valid_start": D0 + dt.timedelta(days=8), "test_start": D0 + dt.timedelta(days=9)}
    # a valid target's history: every earlier kept check-in, across trajectories (no i4)
    assert history(got["e09"], "checkin") == ["i1", "i2", "i1", "i2", "i1", "i2", "i1"]
    assert {r.protocol for r in got.values()} == {"trajectory"}
    # given bounds are used as they are: valid from day 3 makes e06 (its trajectory's last) valid
    given = split.model_copy(update={"valid_start": D0 + dt.timedelta(days=3), "test_start": D0 + dt.timedelta(days=9)})
    build_range(lake, V, D0, D0 + dt.timedelta(days=10), CHECKINS.model_copy(update={"split": given}))
    got = rows_by_event(lake)
    assert {e: r.split for e, r in got.items()} == {
        "e02": "train",
        "e04": "train",
        "f2": "train",
        "e06": "valid",
        "e09": "valid",
        "f4": "test",
    }
    with pytest.raises(ValueError, match="trajectory"):
        build_day(lake, V, D1, CHECKINS.model_copy(update={"split": split}))
    from geosid.trainer.loading import load_corpus

    write_codebook_row(spark, lake)
    # the catalog a model ranks is the items the protocol's rows name: not the rare i4
    # (filtered), nor i3 (only after the last target of its users)
    assert sorted(load_corpus(lake.root, V, None, 8, protocol="trajectory").vocab.item_ids) == ["i1", "i2"]


def random_timeline(seed=3, users=7, n=240, days=4):
    rng = np.random.default_rng(seed)
    places = [A, B, C]
    out = []
    for k in range(n):
        day = D0 + dt.timedelta(days=int(rng.integers(0, days)))
        when = ts(day, int(rng.integers(8, 12)), int(rng.integers(0, 4)))  # many ties
        action = str(rng.choice(["watch", "watch", "watch", "click", "pay"]))
        item = str(rng.choice(["i1", "i2", "i3", "i4", "i9"]))
        out.append(event(f"e{k:04d}", "synthetic", f"u{int(rng.integers(0, users))}", item, action, when, places[int(rng.integers(0, 3))]))
    return out


def content(lake, table, dt_range):
    return sorted(repr(r.asDict(recursive=True)) for r in lake.read(table, dt=dt_range).filter(f"codebook_version = '{V}'").collect())


def states_as_of(lake, day):
    rows = latest_states(lake.read(corpus.USER_HISTORY_STATE).filter(f"codebook_version = '{V}'"), day)
    return sorted(repr(r.asDict(recursive=True)) for r in rows.drop("dt").collect())


def test_incremental_days_equal_a_full_rebuild_and_reruns_are_idempotent(spark, lake, tmp_path):
    events = random_timeline()
    config = LOCAL.model_copy(update={"split": SplitConfig(valid_start=D2, test_start=D3)})
    daily = lake
    write_events(spark, daily, events)
    write_sid_map(spark, daily)
    build_range(daily, V, D0, D0, config)
    for day in (D1, D2, D3):
        build_day(daily, V, day, config)
    full = Lake(tmp_path / "full", spark)
    write_events(spark, full, events)
    write_sid_map(spark, full)
    report = build_range(full, V, D0, D3, config)
    sliced = Lake(tmp_path / "sliced", spark)  # the kernel in passes over four user slices
    write_events(spark, sliced, events)
    write_sid_map(spark, sliced)
    assert build_range(sliced, V, D0, D3, config.model_copy(update={"events_per_pass": 60})).passes == 4

    sequences = content(daily, corpus.TRAINING_SEQUENCES, (D0, D3))
    assert len(sequences) == report.targets > 20
    assert sequences == content(full, corpus.TRAINING_SEQUENCES, (D0, D3)) == content(sliced, corpus.TRAINING_SEQUENCES, (D0, D3))
    assert states_as_of(sliced, D3) == states_as_of(full, D3)
    for day in (D2, D3):  # the states of the checkpoint days agree
        assert len(states_as_of(daily, day)) == 7 and states_as_of(daily, day) == states_as_of(full, day)
    assert report.splits["test"] and report.splits["valid"] and report.splits["train"]

    again = build_day(daily, V, D3, config)  # re-running a day: same content
    assert content(daily, corpus.TRAINING_SEQUENCES, (D0, D3)) == sequences
    assert again.targets == len(content(daily, corpus.TRAINING_SEQUENCES, D3))
    assert states_as_of(daily, D3) == states_as_of(full, D3)


def test_a_day_rewrites_only_its_users_and_compaction_keeps_the_retained_states(spark, lake, tmp_path, monkeypatch):
    import deltalake

    events = random_timeline(users=6)
    quiet = event("q0", "synthetic", "u_quiet", "i1", "watch", ts(D0, 9), A)  # active on D0 only
    # compact each day, keeping the state as of the last two days (no weekly checkpoints)
    config = LOCAL.model_copy(update={"state_buckets": 2, "state_compact_days": 1, "checkpoint_days": 2, "checkpoint_weeks": 0})
    write_events(spark, lake, [*events, quiet])
    write_sid_map(spark, lake)
    build_range(lake, V, D0, D0, config)
    with pytest.raises(MissingStateError, match="as of 2024-05-02"):
        build_day(lake, V, D2, config)  # D1 was skipped: the state as of D1 is not complete
    with monkeypatch.context() as patched:  # every state write commits the engine's files as they are
        patched.setattr(deltalake, "write_deltalake", lambda *a, **k: pytest.fail("a state write was rewritten"))
        reports = [build_day(lake, V, day, config) for day in (D1, D2, D3)]
    state = lake.read(corpus.USER_HISTORY_STATE)
    on_d3 = {r.user_id for r in state.filter(F.col("dt") == D3).collect()}
    active_d3 = {e.user_id for e in events if e.dt == D3}
    assert on_d3 and on_d3 <= active_d3 and reports[-1].states_written == len(on_d3)
    assert reports[-1].states == 7 and reports[-1].compacted_buckets == [0, 1]
    # compacted: per user, the latest row up to D2 (the oldest retained day) and later ones
    assert state.groupBy("user_id").count().agg(F.max("count")).first()[0] <= 2
    assert [(r.dt, r.user_bucket) for r in state.filter(F.col("user_id") == "u_quiet").collect()] == [(D0, __import__("zlib").crc32(b"u_quiet") % 2)]
    builds = sorted(r.dt for r in lake.read(corpus.STATE_BUILDS).collect())
    assert builds == [D2, D3]  # the days whose state compaction removed are no longer listed
    full = Lake(tmp_path / "full", spark)
    write_events(spark, full, [*events, quiet])
    write_sid_map(spark, full)
    build_range(full, V, D0, D3, config)
    for day in (D2, D3):
        assert states_as_of(lake, day) == states_as_of(full, day)
    build_day(lake, V, D3, config)  # the latest day re-runs
    assert states_as_of(lake, D3) == states_as_of(full, D3)
    with pytest.raises(MissingStateError):
        build_day(lake, V, D2, config)  # its state as of D1 was compacted away


def test_a_day_without_the_previous_state_is_refused(spark, local_life):
    with pytest.raises(MissingStateError, match="rebuild"):
        build_day(local_life, V, D2, LOCAL)
    build_day(local_life, V, D0, LOCAL)  # nothing before D0: no state needed
    assert set(rows_by_event(local_life)) == {"e03"}


def test_user_chronological_split(spark, lake):
    events = [event(f"c{k:02d}", "tsmc2014", "u1", "i1", "checkin", ts(D0, 8) + dt.timedelta(minutes=10 * k), A) for k in range(11)]
    write_events(spark, lake, events)
    write_sid_map(spark, lake)
    config = CHECKINS.model_copy(update={"split": SplitConfig(protocol="user_chrono")})
    report = build_range(lake, V, D0, D0, config)
    rows = sorted(rows_by_event(lake).values(), key=lambda r: r.target_ts)
    assert [r.split for r in rows] == ["train"] * 8 + ["valid"] + ["test"]  # 10 targets: the first check-in has no location
    assert report.splits == {"train": 8, "valid": 1, "test": 1}
    with pytest.raises(ValueError, match="user_chrono"):
        build_day(lake, V, D1, config)


def test_config_rejects_unknown_keys_and_actions():
    with pytest.raises(ValueError):
        CorpusConfig.for_source("synthetic", target_action=("pay",))
    with pytest.raises(ValueError, match="unknown actions"):
        CorpusConfig.for_source("synthetic", target_actions=("buy",))
    with pytest.raises(ValueError):
        SplitConfig(valid_start=D3, test_start=D1)


def test_cell_context_comes_from_the_latest_earlier_snapshot(spark, lake):
    from tests.test_geo import A as CITY_A
    from tests.test_geo import D as CITY_D
    from tests.test_geo import write_city

    write_city(spark, lake)
    for day in (CITY_D, CITY_D + dt.timedelta(days=1)):
        run_geo(lake, day, GeoConfig(window_days=28))
    report = build_cell_context(lake, CITY_D, CITY_D + dt.timedelta(days=2), CELLS)
    assert report.days_without_context == [CITY_D]  # no snapshot strictly before it
    rows = {(r.cell_id, r.dt): r for r in lake.read(corpus.CELL_CONTEXT).collect()}
    a = rows[(CITY_A, CITY_D + dt.timedelta(days=1))]
    assert a.context_dt == CITY_D and a.n_items == 3
    assert len(a.features) == len(corpus.CELL_FEATURES)
    assert a.features[0] == pytest.approx(np.log1p(3)) and a.features[corpus.CELL_FEATURES.index("has_price")] == 1.0
    assert rows[(CITY_A, CITY_D + dt.timedelta(days=2))].context_dt == CITY_D + dt.timedelta(days=1)


def test_corpus_quality_suites_pass_and_catch_leakage(spark, local_life):
    build_range(local_life, V, D0, D2, LOCAL)
    results = validate_corpus(local_life, (D0, D2), V, SIZES, CELLS.name)
    assert all(r.success for r in results[:2]), [r.summary() for r in results]

    leaky = local_life.read(corpus.TRAINING_SEQUENCES, dt=D1).withColumn(
        "target_ts", F.expr("CASE WHEN size(histories[0].events) > 0 THEN element_at(histories[0].events, -1).event_ts ELSE target_ts END")
    )
    local_life.write(leaky, corpus.TRAINING_SEQUENCES, dt=D1, where=f"codebook_version = '{V}'")
    sequences = validate_corpus(local_life, (D0, D2), V, SIZES, CELLS.name)[0]
    failed = {c["check"].split("(")[1].split(")")[0] for c in sequences.failed}
    assert "history_before_target" in failed

    small = validate_corpus(local_life, (D0, D2), V, (2, 8, 8), CELLS.name)[0]  # codes beyond a level's size
    assert "target_codes_in_codebook" in {c["check"].split("(")[1].split(")")[0] for c in small.failed}


class SeenRow(NamedTuple):
    """What the snapshot test's dataset gives per row (module level: it comes back from worker processes)."""

    event_id: str
    day: str
    histories: int


def test_snapshot_reader_pins_versions(spark, local_life):
    import torch.utils.data

    from geosid.trainer.snapshot import CorpusSnapshot, RowFilter

    build_range(local_life, V, D0, D2, LOCAL)
    snapshot = CorpusSnapshot.open(local_life.root, tables=(corpus.TRAINING_SEQUENCES.name,))
    assert snapshot.codebook_version == V and snapshot.count() == 3
    pinned = snapshot.manifest()["table_versions"]["corpus.training_sequences"]
    assert pinned == local_life.table_version(corpus.TRAINING_SEQUENCES)

    # The lake moves on (one more target on D2); the pinned snapshot does not.
    day2 = [event("e09", "synthetic", "u2", "i2", "pay", ts(D2, 8, 0), C), event("e10", "synthetic", "u2", "i4", "pay", ts(D2, 9), C)]
    write_events(spark, local_life, day2)
    build_day(local_life, V, D2, LOCAL.model_copy(update={"checkpoint_days": 3}))
    assert CorpusSnapshot.open(local_life.root, tables=(corpus.TRAINING_SEQUENCES.name,)).count() == 4
    latest = CorpusSnapshot.open(local_life.root, as_of=dt.datetime.now(dt.UTC), tables=(corpus.TRAINING_SEQUENCES.name,))
    assert latest.count() == 4
    again = CorpusSnapshot.open(local_life.root, table_versions={corpus.TRAINING_SEQUENCES.name: pinned}, tables=(corpus.TRAINING_SEQUENCES.name,))
    assert again.count() == 3
    assert sorted(r["event_id"] for b in again.batches(columns=["event_id"]) for r in b.to_pylist()) == ["e03", "e06", "e09"]

    dataset = snapshot.torch_dataset(transform=lambda row: SeenRow(row["event_id"], str(row["dt"]), len(row["histories"])))
    seen = sorted(x for batch in torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2) for x in [batch])
    assert [s.event_id for s in seen] == ["e03", "e06", "e09"] and {s.histories for s in seen} == {3}
    assert dataset.manifest["table_versions"] == {"corpus.training_sequences": pinned}
    tests_split = CorpusSnapshot.open(local_life.root, rows=RowFilter(splits=("test",)), tables=(corpus.TRAINING_SEQUENCES.name,))
    assert tests_split.count() == 0  # no test_start configured: every row is train


def write_codebook_row(spark, lake):
    versions_row = [(V, "residual_kmeans", "published", "{}", list(SIZES), "m", "t", 1, 12, "{}", D0, D0, None, 1, 0.1)]
    lake.write(spark.createDataFrame(versions_row, _nullable(index.CODEBOOK_VERSIONS.schema)), index.CODEBOOK_VERSIONS)


def tiny_checkin_corpus(spark, lake, n=80):
    items = {f"i{k}": (40.70 + 0.01 * k, -74.0 + 0.01 * (k % 3)) for k in range(12)}
    write_events(
        spark,
        lake,
        [
            event(
                f"e{k:03d}",
                "tsmc2014",
                f"u{k % 5}",
                f"i{(k * 7) % 12}",
                "checkin",
                ts(D0 + dt.timedelta(days=k // 20), 8) + dt.timedelta(minutes=k),
                items[f"i{(k * 7) % 12}"],
            )
            for k in range(n)
        ],
    )
    write_sid_map(spark, lake, items=items, sources=("tsmc2014",))
    write_codebook_row(spark, lake)
    config = CHECKINS.model_copy(update={"split": SplitConfig(valid_start=D2, test_start=D3)})
    build_range(lake, V, D0, D3, config)


def test_a_streamed_train_split_deals_every_row_once_per_epoch_as_featurized_in_memory(spark, lake):
    from geosid.trainer.config import TrainConfig
    from geosid.trainer.loading import load_corpus
    from geosid.trainer.training import pretrain

    tiny_checkin_corpus(spark, lake)
    whole = load_corpus(lake.root, V, None, 8, candidates=3)
    train = whole.splits["train"]
    by_id = {e: k for k, e in enumerate(train.event_id)}
    for workers in (0, 2):
        cfg = TrainConfig(stream_above=0, shuffle_rows=8, stream_workers=workers)
        data = load_corpus(lake.root, V, None, 8, candidates=3, stream=cfg)
        streamed = data.splits["train"]
        assert data.streamed and len(streamed) == len(train) == 35 and data.vocab.item_embed.tolist() == whole.vocab.item_embed.tolist()
        epoch = list(streamed.epoch(0, 0, 16))
        ids = [e for b in epoch for e in b.event_id]
        assert sorted(ids) == sorted(train.event_id) and [len(b) for b in epoch] == [16, 16, 3]
        assert ids == [e for b in streamed.epoch(0, 0, 16) for e in b.event_id]  # a function of (seed, epoch)
        assert ids != [e for b in streamed.epoch(0, 1, 16) for e in b.event_id]
        rows = epoch[0]
        same = train.take([by_id[e] for e in rows.event_id])  # featurized and candidates as in memory
        for name in ("hist_codes", "hist_visits", "hist_trans", "cand_item", "cand_count", "user_ctx", "target"):
            assert np.array_equal(getattr(rows, name), getattr(same, name)), name
    cfg = TrainConfig(epochs=1, batch_size=16, max_history=8, beam=10, stream_above=0, shuffle_rows=8, stream_workers=0)
    run = pretrain(lake.root, cfg, run_id="streamed", log=lambda *_: None)
    assert run.streamed and run.rows["train"] == 35 and np.isfinite(run.metrics["train_loss"][0])
    assert "markov" not in run.metrics["eval"] and "markov_user" in run.metrics["eval"]


def test_the_item_vocabulary_is_in_item_id_order_whatever_the_sid_maps_file_order(spark, lake):
    """Ties among items (rules, candidates) fall to the lower vocabulary index, so the
    vocabulary must not follow the engine's write order; a run records its vocabulary and
    is reloaded with exactly it (runs recorded before that keep the file order)."""
    import json

    from geosid.trainer.config import TrainConfig
    from geosid.trainer.loading import load_corpus, load_run, vocab_fingerprint
    from geosid.trainer.runs import run_dir
    from geosid.trainer.training import pretrain

    tiny_checkin_corpus(spark, lake)
    cfg = TrainConfig(epochs=1, batch_size=16, max_history=8, beam=10)
    run = pretrain(lake.root, cfg, run_id="pinned", log=lambda *_: None)
    ids = sorted(f"i{k}" for k in range(12))
    assert run.manifest["item_vocab_order"] == "item_id" and len(run.manifest["item_vocab"]) == 16
    write_sid_map(spark, lake, items={f"i{k}": (40.70 + 0.01 * k, -74.0 + 0.01 * (k % 3)) for k in range(12)}, sources=("tsmc2014",), reverse=True)
    reversed_version = lake.table_version(index.SID_MAP)
    assert load_corpus(lake.root, V, None, 8).vocab.item_ids.tolist() == ids
    assert load_corpus(lake.root, V, None, 8, vocab_order="file").vocab.item_ids.tolist() == ids[::-1]
    _, data, _, _ = load_run(lake.root, "pinned")
    assert vocab_fingerprint(data.vocab) == run.manifest["item_vocab"] and data.vocab.item_ids.tolist() == ids
    # a run recorded before item_vocab, pinned to the reversed map: reloaded in file order
    record_file = run_dir(lake.root, "pinned") / "run.json"
    record = json.loads(record_file.read_text())
    legacy = {k: v for k, v in record["manifest"].items() if not k.startswith("item_vocab")}
    legacy["table_versions"] = {**legacy["table_versions"], "index.sid_map": reversed_version}
    record_file.write_text(json.dumps({**record, "manifest": legacy}))
    assert load_run(lake.root, "pinned")[1].vocab.item_ids.tolist() == ids[::-1]
    record_file.write_text(json.dumps({**record, "manifest": {**record["manifest"], "item_vocab": "0" * 16}}))
    with pytest.raises(InvalidRequestError, match="trained on item vocabulary 0{16}"):
        load_run(lake.root, "pinned")
