"""Fault injection for the crash tests: with `GEOSID_FAULT_KILL_AFTER_COMMITS=N` in its
environment a process SIGKILLs itself right after its N-th write to the lake that
committed a new table version (any table, any kind of write), the way a machine dies
between two commits of a stage. The tests use it to kill a stage at an exact point; a
stage that makes fewer commits finishes, and the test that expected it killed fails.
Unset (always, outside those tests): nothing happens."""

from __future__ import annotations

import os
import signal
import sys

ENV = "GEOSID_FAULT_KILL_AFTER_COMMITS"
_commits = 0


def armed() -> bool:
    return bool(os.environ.get(ENV))


def after_commit(what: str) -> None:
    """Called by the lake after every write that committed a new table version (an
    outermost write: one that creates its table and writes it counts once)."""
    global _commits
    limit = os.environ.get(ENV)
    if not limit:
        return
    _commits += 1
    if _commits >= int(limit):
        print(f"fault injection: killed after commit {_commits} ({what})", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
