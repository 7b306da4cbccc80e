"""Records of who holds the lake's writer lease or pins a reader's versions, whether
that holder is provably gone, and the heartbeat that keeps a record fresh
(`geosid.lake.lease`, `geosid.lake.pins`)."""

from __future__ import annotations

import datetime as dt_
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_COMMIT = re.compile(r"^(\d{20})\.json$")


# ---------------------------------------------------------------------------------------
# Who holds it, and whether that holder is gone


def _host() -> str:
    return socket.gethostname()


def _pid_start(pid: int) -> str | None:
    """The pid's start time (clock ticks since boot, /proc): tells a reused pid from the
    process that wrote a record. None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> float:
    return time.time()


def iso(seconds: float) -> str:
    return dt_.datetime.fromtimestamp(seconds, dt_.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Holder:
    """A lease's (or a reader pin's) record."""

    token: str
    host: str
    pid: int
    pid_start: str | None
    step: str
    since: float
    heartbeat: float
    versions: dict | None = None  # reader pins: table -> version

    @classmethod
    def mine(cls, step: str, versions: dict | None = None) -> Holder:
        now = _now()
        return cls(uuid.uuid4().hex, _host(), os.getpid(), _pid_start(os.getpid()), step, now, now, versions)

    def gone(self, timeout_s: float) -> bool:
        """Provably gone: a dead (or reused) pid on this host; elsewhere a heartbeat older
        than the timeout."""
        if self.host == _host():
            return not pid_runs(self.pid) or (self.pid_start is not None and _pid_start(self.pid) not in (None, self.pid_start))
        return _now() - self.heartbeat > timeout_s

    def describe(self) -> str:
        return f"{self.step!r} (pid {self.pid} on {self.host}, since {iso(self.since)}, heartbeat {max(0.0, _now() - self.heartbeat):.0f}s ago)"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return None  # a torn or unreadable record: written by a process killed mid-write


def write_json(path: Path, value: dict) -> None:
    """Write whole or not at all: a temporary file renamed over the target."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(value, sort_keys=True))
    os.replace(tmp, path)


def read_holder(path: Path) -> Holder | None:
    raw = read_json(path)
    if raw is None:
        return None
    try:
        return Holder(**raw)
    except TypeError:
        return None


# ---------------------------------------------------------------------------------------
# Table versions


def latest_version(table_path: str | Path) -> int | None:
    """A Delta table's latest committed version from its log folder (no log replay):
    commits are files named by their version, renamed into place whole."""
    try:
        names = os.listdir(Path(table_path) / "_delta_log")
    except FileNotFoundError:
        return None
    versions = [int(m.group(1)) for n in names if (m := _COMMIT.match(n))]
    return max(versions) if versions else None


class Heartbeat:
    """A daemon thread calling `beat` every `every_s` until stopped; `beat` returning False
    stops it and marks the lease lost."""

    def __init__(self, beat: Callable[[], bool | None], every_s: float):
        self._beat, self._every = beat, every_s
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name="geosid-lease-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if self._beat() is False:
                    self.lost = True
                    return
            except OSError as exc:  # a transient storage error: try again next beat
                log.warning("lake lease heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
