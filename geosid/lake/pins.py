"""Readers' pins: a reader reads the versions the last writer published and pins them (a
record under `<lake>/_ops/lease/readers/`, kept fresh by a heartbeat) for as long as it
reads; maintenance keeps the files of every live pin's versions and of the published
ones, whatever the retention (`geosid.lake.lease` says why pin-then-check is enough)."""

from __future__ import annotations

import atexit
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from geosid.lake.holders import Heartbeat, Holder, latest_version, read_holder, write_json
from geosid.lake.lease import LakeLease, held_by_me


def _record(lease: LakeLease, pin: Holder) -> Path:
    return lease.readers / f"{pin.token}.json"


def latest_versions(lease: LakeLease) -> dict[str, int]:
    return {name: v for name, path in lease.tables().items() if (v := latest_version(path)) is not None}


def pin(lease: LakeLease, step: str, versions: dict | None = None, tables: Collection[str] | None = None) -> Holder:
    """Pin `versions`, or (None) the published ones (of `tables` only, if given), checked to
    be still the published ones once the pin is written (else the newer ones are pinned).
    A lake no writer has released yet has no published state: its latest versions."""
    lease.readers.mkdir(parents=True, exist_ok=True)
    while True:
        published = lease.published() if versions is None else None
        chosen = versions if versions is not None else (published or {}).get("versions")
        chosen = chosen if chosen is not None else latest_versions(lease)
        mine = Holder.mine(step, {k: int(v) for k, v in chosen.items() if tables is None or k in tables})
        write_json(_record(lease, mine), asdict(mine))
        if versions is not None or published is None:
            return mine
        if (lease.published() or {}).get("generation") == published.get("generation"):
            return mine
        _record(lease, mine).unlink(missing_ok=True)


def renew(lease: LakeLease, mine: Holder) -> None:
    if _record(lease, mine).exists():
        write_json(_record(lease, mine), {**asdict(mine), "heartbeat": time.time()})


def unpin(lease: LakeLease, mine: Holder) -> None:
    _record(lease, mine).unlink(missing_ok=True)


def live_pins(lease: LakeLease, *, sweep: bool = False) -> list[Holder]:
    """The pins of live readers (`sweep`: remove the records of gone ones)."""
    out = []
    for path in sorted(lease.readers.glob("*.json")) if lease.readers.exists() else []:
        record = read_holder(path)
        if record is None or record.gone(lease.settings.timeout_s):
            if sweep:
                path.unlink(missing_ok=True)
            continue
        out.append(record)
    return out


def protected_versions(lease: LakeLease) -> dict[str, set[int]]:
    """Per table, the versions vacuum must keep: the published ones and live readers'."""
    keep: dict[str, set[int]] = {}
    for record in live_pins(lease, sweep=True):
        for table, version in (record.versions or {}).items():
            keep.setdefault(table, set()).add(int(version))
    for table, version in ((lease.published() or {}).get("versions") or {}).items():
        keep.setdefault(table, set()).add(int(version))
    return keep


@contextmanager
def reading(lease: LakeLease, step: str, versions: dict | None = None) -> Iterator[Holder]:
    """Pin a consistent set of versions (the published ones unless given) for the block."""
    mine = pin(lease, step, versions)
    beat = Heartbeat(lambda: renew(lease, mine), lease.settings.heartbeat_s)
    try:
        yield mine
    finally:
        beat.stop()
        unpin(lease, mine)


_PROCESS_PINS: list[tuple[LakeLease, Holder, Heartbeat]] = []


def pin_for_process(lease: LakeLease, step: str, tables: Collection[str], versions: dict | None = None) -> dict[str, int]:
    """Pin the versions of `tables` (the published ones unless given; inside this thread's
    writer lease, the latest) until this process ends: what a training job reads from for
    its whole life. Returns the pinned versions."""
    if versions is None and held_by_me(lease.root) is not None:
        versions = latest_versions(lease)
    if versions is not None:  # already pinned by this process (a job opens its snapshot several times): reuse that pin
        wanted = {t: int(v) for t, v in versions.items() if t in tables}
        for held, mine, _ in _PROCESS_PINS:
            if held.root == lease.root and mine.versions == wanted:
                return dict(mine.versions)
    mine = pin(lease, step, versions, tables)
    beat = Heartbeat(lambda: renew(lease, mine), lease.settings.heartbeat_s)
    if not _PROCESS_PINS:
        atexit.register(_unpin_all)
    _PROCESS_PINS.append((lease, mine, beat))
    return dict(mine.versions or {})


def _unpin_all() -> None:
    for lease, mine, beat in _PROCESS_PINS:
        beat.stop()
        unpin(lease, mine)
    _PROCESS_PINS.clear()
