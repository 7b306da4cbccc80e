"""One writer at a time per lake, and readers on a consistent set of table versions.

Every step that writes holds the lake's **writer lease** for the whole step: what it reads
to decide (which days are pending, stale, already built) and what it writes cannot
interleave with another writer's. The lease is a file under `<lake>/_ops/lease/`:

- `holder.json`: the holder's record (token, host, pid and the pid's start time, step,
  since, heartbeat). A thread of the holder renews the heartbeat every few seconds.
- `guard`: a file locked (`flock`) for the moment an acquire, a renewal, a release or a
  break decides; the kernel drops that lock when its process dies, so no decision is
  ever left half made.
- `queue/`: a ticket per waiting writer (refreshed while it waits): writers take their
  turns in the order they came, so a process that releases and asks again cannot starve
  the others.

A lease is released when its step ends (exception or not). It is broken only when its
holder is provably gone: on this host, its pid no longer runs (or runs another process:
the pid's start time differs); on another host, its heartbeat is older than
`lease_timeout_seconds`. A second writer waits up to `lease_wait_seconds`, then refuses
with one line naming the holder (`LakeBusyError`). The lease is re-entrant within a
thread: a step that calls other steps holds it once.

When a writer releases the lease it **publishes** the versions of every table
(`published.json`, with a generation number): a state between two steps, never the
middle of one. Readers (SQL, the report, status, training snapshots) read those
versions, and **pin** them (`readers/<token>.json`, with a heartbeat) for as long as they
read; maintenance never vacuums the files of a published or pinned version. A reader
pins, then checks that the generation it pinned is still the published one (else pins
the newer one): a vacuum that could not have seen its pin ran before that generation was
published, and kept it.

What this needs of the storage: a POSIX file system shared by every writer (local disk;
NFS v4 with working `flock`, which Linux maps to NFS byte-range locks; a Fuse mount of
HDFS or an object store only if it gives atomic rename and `flock`). On an object store
without such a mount, use a lock that store offers (S3 conditional writes, a DynamoDB
locking provider) in front of the same protocol; geosid's own lease is the file one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from geosid.errors import UserError
from geosid.lake.holders import Heartbeat, Holder, iso, latest_version, read_holder, read_json, write_json

log = logging.getLogger(__name__)

LEASE_DIR = ("_ops", "lease")


class LakeBusyError(UserError, RuntimeError):
    """Another writer held the lake's lease for longer than this writer would wait."""


class LeaseLostError(UserError, RuntimeError):
    """This writer's lease was broken (its heartbeat stopped for longer than the timeout)."""


# ---------------------------------------------------------------------------------------
# The lease


@dataclass(frozen=True)
class LeaseSettings:
    wait_s: float = 600.0  # how long a writer waits for a busy lease before it refuses
    timeout_s: float = 120.0  # a holder on another host whose heartbeat is older than this is gone
    heartbeat_s: float = 5.0

    @classmethod
    def from_env(cls) -> LeaseSettings:
        """The defaults, or GEOSID_LEASE_WAIT_SECONDS / GEOSID_LEASE_TIMEOUT_SECONDS (what
        `geosid.config.Settings` reads too: a Lake made without settings obeys them)."""
        values = {}
        for field_name, variable in (("wait_s", "GEOSID_LEASE_WAIT_SECONDS"), ("timeout_s", "GEOSID_LEASE_TIMEOUT_SECONDS")):
            if os.environ.get(variable):
                values[field_name] = float(os.environ[variable])
        return cls(**values)


class LakeLease:
    """The writer lease of the lake at `root` (see the module's doc). `tables` lists the
    lake's table folders (name -> path) for publishing their versions."""

    def __init__(self, root: str | Path, tables: Callable[[], dict[str, str]], settings: LeaseSettings = LeaseSettings()):
        self.root = Path(root).resolve()
        self.folder = self.root.joinpath(*LEASE_DIR)
        self.tables = tables
        self.settings = settings

    @property
    def holder_path(self) -> Path:
        return self.folder / "holder.json"

    @property
    def published_path(self) -> Path:
        return self.folder / "published.json"

    @property
    def readers(self) -> Path:
        return self.folder / "readers"

    @contextmanager
    def _guard(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "guard", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def holder(self) -> Holder | None:
        """The current holder (None: free); a gone holder still shows until broken."""
        return read_holder(self.holder_path)

    @property
    def queue(self) -> Path:
        return self.folder / "queue"

    def _first_waiter(self) -> Holder | None:
        """The live writer that has waited longest (tickets of gone waiters are removed)."""
        waiting = []
        for path in self.queue.glob("*.json") if self.queue.exists() else []:
            ticket = read_holder(path)
            if ticket is None or ticket.gone(self.settings.timeout_s):
                path.unlink(missing_ok=True)
            else:
                waiting.append(ticket)
        return min(waiting, key=lambda t: (t.since, t.token), default=None)

    def try_acquire(self, step: str, ticket: Holder | None = None) -> tuple[Holder | None, Holder | None, bool]:
        """(mine, None, _) when acquired; else (None, other, held): the live holder (held), or
        the writer queued before `ticket` whose turn comes first. A gone holder's lease is
        broken here (logged)."""
        with self._guard():
            current = self.holder()
            if current is not None and not current.gone(self.settings.timeout_s):
                return None, current, True
            first = self._first_waiter()
            if first is not None and (ticket is None or first.token != ticket.token):
                return None, first, False
            if current is not None:
                log.warning("breaking the lake lease of %s: its holder is gone", current.describe())
            mine = Holder.mine(step)
            write_json(self.holder_path, asdict(mine))
            if ticket is not None:
                (self.queue / f"{ticket.token}.json").unlink(missing_ok=True)
            return mine, None, True

    def acquire(self, step: str, on_wait: Callable[[str], None] | None = None) -> Holder:
        """Acquire, waiting up to `wait_s` while another live writer holds the lease; waiters
        take their turns in the order they came (a ticket under `queue/`, kept fresh)."""
        deadline = time.monotonic() + self.settings.wait_s
        pause, told, ticket = 0.1, False, None
        try:
            while True:
                mine, other, held = self.try_acquire(step, ticket)
                if mine is not None:
                    return mine
                if ticket is None:
                    self.queue.mkdir(parents=True, exist_ok=True)
                    ticket = Holder.mine(step)
                write_json(self.queue / f"{ticket.token}.json", {**asdict(ticket), "heartbeat": time.time()})
                whom = f"held by {other.describe()}" if held else f"next in line: {other.describe()}"
                if time.monotonic() >= deadline:
                    raise LakeBusyError(
                        f"the lake {self.root} is busy: {step!r} waited {self.settings.wait_s:g}s for the writer lease, {whom}; "
                        "try again later (or raise GEOSID_LEASE_WAIT_SECONDS)"
                    )
                if not told and on_wait is not None:
                    on_wait(f"waiting for the lake's writer lease, {whom}")
                    told = True
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 1.5, 1.0)
        finally:
            if ticket is not None:
                (self.queue / f"{ticket.token}.json").unlink(missing_ok=True)

    def renew(self, mine: Holder) -> bool:
        """Renew the heartbeat; False when the lease is no longer `mine` (broken)."""
        with self._guard():
            current = self.holder()
            if current is None or current.token != mine.token:
                return False
            write_json(self.holder_path, {**asdict(current), "heartbeat": time.time()})
            return True

    def holds(self, mine: Holder) -> bool:
        current = self.holder()
        return current is not None and current.token == mine.token

    def release(self, mine: Holder) -> bool:
        """Publish the tables' versions and give the lease up; False when it had been broken
        (nothing is published then: the state may be another writer's middle)."""
        with self._guard():
            current = self.holder()
            if current is None or current.token != mine.token:
                return False
            self._publish(mine.step)
            self.holder_path.unlink()
            return True

    # ---- published versions ------------------------------------------------------------

    def _publish(self, step: str) -> dict:
        previous = read_json(self.published_path) or {}
        versions = {name: v for name, path in self.tables().items() if (v := latest_version(path)) is not None}
        record = {"generation": int(previous.get("generation", 0)) + 1, "versions": versions, "step": step, "at": iso(time.time())}
        write_json(self.published_path, record)
        return record

    def publish(self, mine: Holder) -> dict:
        """Publish mid-step (a step whose intermediate state is consistent, e.g. maintenance
        after compaction, which changes no table's content)."""
        with self._guard():
            if not self.holds(mine):
                raise LeaseLostError(f"the lake's writer lease of {mine.step!r} was broken; nothing was published")
            return self._publish(mine.step)

    def published(self) -> dict | None:
        return read_json(self.published_path)


# ---------------------------------------------------------------------------------------
# Holding it from a process: re-entrant per thread


@dataclass
class _Hold:
    lease: LakeLease
    mine: Holder
    heartbeat: Heartbeat
    thread: int
    pid: int
    depth: int = 1


_HELD: dict[Path, _Hold] = {}
_HELD_LOCK = threading.Lock()


def _current(root: Path) -> _Hold | None:
    hold = _HELD.get(root)
    if hold is not None and hold.pid != os.getpid():  # inherited through fork: not ours
        _HELD.pop(root, None)
        return None
    return hold


def held_by_me(root: str | Path) -> Holder | None:
    """This thread's lease on the lake at `root`, if it holds one."""
    hold = _current(Path(root).resolve())
    return hold.mine if hold is not None and hold.thread == threading.get_ident() else None


@contextmanager
def writing(lease: LakeLease, step: str, on_wait: Callable[[str], None] | None = None) -> Iterator[Holder]:
    """Hold the lake's writer lease for the block (re-entrant: an outer hold of this
    thread covers it). Refuses with LakeBusyError after the wait; LeaseLostError at the
    end when the lease was broken meanwhile."""
    root = lease.root
    with _HELD_LOCK:
        hold = _current(root)
        mine_already = hold is not None and hold.thread == threading.get_ident()
        if mine_already:
            hold.depth += 1
    if mine_already:
        try:
            yield hold.mine
        finally:
            hold.depth -= 1
        return
    mine = lease.acquire(step, on_wait)
    beat = Heartbeat(lambda: lease.renew(mine), lease.settings.heartbeat_s)
    hold = _Hold(lease, mine, beat, threading.get_ident(), os.getpid())
    with _HELD_LOCK:
        _HELD[root] = hold
    released = False
    try:
        yield mine
    finally:
        beat.stop()
        with _HELD_LOCK:
            _HELD.pop(root, None)
        released = lease.release(mine)
    if not released:
        raise LeaseLostError(
            f"the lake's writer lease of {step!r} was broken while it ran (its heartbeat stopped for over "
            f"{lease.settings.timeout_s:g}s): another writer may have written meanwhile; run `geosid status` and `geosid repair`"
        )


def check_held(root: str | Path) -> None:
    """Before a commit: the lease this thread holds is still its own (else LeaseLostError)."""
    hold = _current(Path(root).resolve())
    if hold is not None and hold.thread == threading.get_ident() and (hold.heartbeat.lost or not hold.lease.holds(hold.mine)):
        raise LeaseLostError(f"the lake's writer lease of {hold.mine.step!r} was broken: this writer stops before committing more")
