"""The lake's writer lease and readers' pins (geosid.lake.lease, geosid.lake.pins): one
writer at a time, a holder that is gone is broken and a live one is not, a busy lake
refuses with one line naming the holder, readers read the published versions and
vacuum keeps what they pinned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow as pa
import pytest

from geosid.lake import Lake, lease, pins
from geosid.lake.arrow import spec_arrow_schema
from geosid.lake.holders import Holder
from geosid.lake.maintenance import maintain_table
from geosid.schemas import ops

HOLD = """
import sys, time
from geosid.lake import Lake
lake = Lake(sys.argv[1])
with lake.writing("test helper"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def _holder_process(root: Path, seconds: float = 60.0) -> subprocess.Popen:
    """A process that holds the lake's lease for `seconds` (returns once it holds it)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def _lake(root: Path, wait_s: float = 0.5, timeout_s: float = 30.0) -> Lake:
    return Lake(root, lease=lease.LeaseSettings(wait_s=wait_s, timeout_s=timeout_s, heartbeat_s=0.2))


def _table(lake: Lake, rows: int) -> int:
    """Replace ops.builds (a small table any lake has) with `rows` rows; the new version."""
    data = pa.Table.from_pylist(
        [{"table_name": "t", "scope": f"s{k}", "params": "{}", "mode": "day"} for k in range(rows)], schema=spec_arrow_schema(ops.BUILDS)
    )
    return lake.write_arrow(data, ops.BUILDS, where="TRUE")


def test_a_writer_holds_the_lease_once_and_releases_it_publishing_the_versions(tmp_path):
    lake = _lake(tmp_path / "lake")
    with lake.writing("outer step"):
        record = json.loads(lake.lease.holder_path.read_text())
        assert record["pid"] == os.getpid() and record["step"] == "outer step" and record["host"]
        with lake.writing("inner step"):  # re-entrant: the same hold
            assert json.loads(lake.lease.holder_path.read_text())["token"] == record["token"]
            version = _table(lake, 3)
    assert not lake.lease.holder_path.exists()
    published = lake.lease.published()
    assert published["versions"]["ops.builds"] == version and published["step"] == "outer step"
    _table(lake, 2)  # a write outside any step takes a lease of its own, and publishes
    assert lake.lease.published()["generation"] == published["generation"] + 1


def test_a_second_writer_waits_then_refuses_naming_the_holder(tmp_path):
    root = tmp_path / "lake"
    holder = _holder_process(root)
    try:
        started = time.monotonic()
        with pytest.raises(
            lease.LakeBusyError,
            match=r"busy: 'second' waited 0.5s for the writer lease, held by "
            r"'test helper' \(pid \d+ on ",
        ):
            with _lake(root).writing("second"):
                pass
        assert 0.5 <= time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_waits_for_a_live_holder_and_goes_on_once_it_releases(tmp_path):
    root = tmp_path / "lake"
    holder = _holder_process(root, seconds=1.5)
    try:
        started = time.monotonic()
        told = []
        lake = _lake(root, wait_s=30)
        lake.log = told.append
        with lake.writing("second"):
            waited = time.monotonic() - started
        assert 0.5 < waited < 20 and holder.wait(timeout=10) == 0
        assert told and "held by 'test helper'" in told[0]
    finally:
        holder.kill()


def test_a_holder_killed_with_sigkill_is_broken_at_once(tmp_path):
    root = tmp_path / "lake"
    holder = _holder_process(root)
    pid = holder.pid
    os.kill(pid, signal.SIGKILL)
    assert holder.wait(timeout=10) == -signal.SIGKILL  # it died of the signal, holding the lease
    assert json.loads((root / "_ops" / "lease" / "holder.json").read_text())["pid"] == pid
    started = time.monotonic()
    with _lake(root, wait_s=60).writing("after the kill"):
        assert json.loads((root / "_ops" / "lease" / "holder.json").read_text())["pid"] == os.getpid()
    assert time.monotonic() - started < 5  # provably gone: not a timeout


def test_only_a_provably_gone_holder_is_gone(tmp_path):
    me = Holder.mine("step")
    assert not me.gone(timeout_s=0.0)  # alive on this host: never by its heartbeat's age
    assert replace(me, pid_start="0").gone(timeout_s=1e9)  # the pid runs another process now
    elsewhere = replace(me, host=me.host + "-elsewhere", heartbeat=time.time() - 30)
    assert not elsewhere.gone(timeout_s=60) and elsewhere.gone(timeout_s=10)
    # a stale holder on another host is broken; a fresh one makes the lake busy
    root = tmp_path / "lake"
    lake = _lake(root, timeout_s=10)
    lake.lease.folder.mkdir(parents=True)
    lake.lease.holder_path.write_text(json.dumps(asdict(elsewhere)))
    with lake.writing("breaks the stale one"):
        pass
    lake.lease.holder_path.write_text(json.dumps(asdict(replace(elsewhere, heartbeat=time.time()))))
    with pytest.raises(lease.LakeBusyError, match="-elsewhere"):
        with lake.writing("meets a live one"):
            pass


def test_waiters_take_their_turns_in_the_order_they_came(tmp_path):
    lake = _lake(tmp_path / "lake")
    lease_ = lake.lease
    lease_.queue.mkdir(parents=True)
    first = Holder.mine("first waiter")
    (lease_.queue / f"{first.token}.json").write_text(json.dumps(asdict(first)))
    gone = replace(Holder.mine("gone waiter"), since=first.since - 60, pid_start="0")
    (lease_.queue / f"{gone.token}.json").write_text(json.dumps(asdict(gone)))
    mine, other, held = lease_.try_acquire("newcomer")  # the lake is free, but someone waits longer
    assert (mine, other.token, held) == (None, first.token, False)
    assert not (lease_.queue / f"{gone.token}.json").exists()  # a gone waiter loses its turn
    mine, other, held = lease_.try_acquire("first waiter", first)
    assert mine is not None and other is None and not list(lease_.queue.glob("*.json"))
    assert lease_.release(mine)


def test_a_broken_lease_stops_its_writer_before_the_next_commit(tmp_path):
    lake = _lake(tmp_path / "lake")
    with pytest.raises(lease.LeaseLostError, match="was broken"):
        with lake.writing("slow step"):
            other = Holder.mine("another writer")
            lake.lease.holder_path.write_text(json.dumps(asdict(other)))  # someone judged this one gone
            _table(lake, 1)
    assert json.loads(lake.lease.holder_path.read_text())["token"] == other.token  # not released by the loser


def test_readers_read_the_published_versions_and_vacuum_keeps_what_they_pinned(tmp_path):
    lake = _lake(tmp_path / "lake")
    first = _table(lake, 3)
    with lake.reading("a reader") as versions:
        assert versions["ops.builds"] == first and lake.table_version(ops.BUILDS) == first
        # a writer moves on and maintenance runs with retention 0 while the reader reads
        writer = _lake(tmp_path / "lake")
        with writer.writing("writer"):
            assert _table(writer, 5) > first
            result = maintain_table("ops.builds", writer.path(ops.BUILDS), 0, 0, protect=lambda: pins.protected_versions(writer.lease)["ops.builds"])
        assert first in result.pinned_versions
        assert lake.to_arrow(ops.BUILDS).num_rows == 3  # the pinned version still reads
    assert not list(lake.lease.readers.glob("*.json"))  # unpinned at the end
    with lake.writing("maintenance"):
        maintain_table("ops.builds", lake.path(ops.BUILDS), 0, 0, protect=lambda: pins.protected_versions(lake.lease).get("ops.builds", ()))
    with pytest.raises(Exception):
        lake.to_arrow(ops.BUILDS, version=first)  # once no reader pins it, vacuum reclaims it


def test_a_pin_chases_a_publication_that_happened_while_it_pinned(tmp_path, monkeypatch):
    lake = _lake(tmp_path / "lake")
    _table(lake, 1)
    _table(lake, 2)
    real = lake.lease.published
    calls = []

    def published():  # the writer publishes between the reader's read and its check
        calls.append(1)
        if len(calls) == 1:
            record = real()
            return {**record, "generation": record["generation"] - 1, "versions": {"ops.builds": record["versions"]["ops.builds"] - 1}}
        return real()

    monkeypatch.setattr(lake.lease, "published", published)
    mine = pins.pin(lake.lease, "reader")
    assert mine.versions == real()["versions"] and len(calls) == 4  # read, check (moved on), read again, check
    assert [p.stem for p in lake.lease.readers.glob("*.json")] == [mine.token]  # the first pin was taken back


def test_the_pins_of_gone_readers_protect_nothing(tmp_path):
    lake = _lake(tmp_path / "lake")
    _table(lake, 1)
    gone = replace(Holder.mine("killed reader", {"ops.builds": 0}), pid_start="0")
    lake.lease.readers.mkdir(parents=True)
    (lake.lease.readers / f"{gone.token}.json").write_text(json.dumps(asdict(gone)))
    assert pins.protected_versions(lake.lease) == {"ops.builds": {lake.lease.published()["versions"]["ops.builds"]}}
    assert not list(lake.lease.readers.glob("*.json"))  # swept


def test_a_busy_lake_is_one_line_and_exit_1_on_the_command_line(tmp_path):
    root = tmp_path / "lake"
    holder = _holder_process(root)
    try:
        env = {**os.environ, "GEOSID_LEASE_WAIT_SECONDS": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "geosid.cli", "--lake", str(root), "maintain"], capture_output=True, text=True, env=env, timeout=120
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "geosid: the lake" in done.stderr and "is busy: 'maintain' waited 1s" in done.stderr and "held by" in done.stderr


def test_a_reader_pinned_before_maintenance_reads_its_version_through_the_engine(spark, tmp_path):
    """Sail's Delta reader cannot load a version older than the table's last checkpoint;
    a reader pinned before maintenance still reads its own rows (the version's files)."""
    root = tmp_path / "lake"
    lake = Lake(root, spark, lease=lease.LeaseSettings(wait_s=5))
    for rows in (1, 2, 3):
        first = _table(lake, rows)
    with lake.reading("a reader"):
        writer = Lake(root, spark)
        for rows in (4, 5, 6):
            _table(writer, rows)
        with writer.writing("maintenance"):
            maintain_table("ops.builds", writer.path(ops.BUILDS), 0, 0, protect=lambda: pins.protected_versions(writer.lease)["ops.builds"])
        last_checkpoint = json.loads((Path(writer.path(ops.BUILDS)) / "_delta_log" / "_last_checkpoint").read_text())["version"]
        assert last_checkpoint > first
        assert lake.read(ops.BUILDS).count() == 3 and sorted(lake.read(ops.BUILDS).toPandas().scope) == ["s0", "s1", "s2"]
    assert lake.read(ops.BUILDS).count() == 6  # no longer pinned: the latest
