"""geosid inside a user's Airflow: the lake a deployment writes (configured once), the
pool that keeps its writing tasks one at a time, retries only for refusals that pass,
and the set-up command that creates both.

- The lake: a DAG run's `lake` param (an absolute path), else the Airflow Variable
  `geosid_lake`, else an absolute `GEOSID_LAKE` in the workers' environment. Never a
  relative `./lake`: a task's working directory is nobody's choice.
- The pool `geosid_lake` (GEOSID_AIRFLOW_POOL at parse time), one slot: every task that
  writes the lake takes it, so the scheduler queues them instead of starting writers
  that would wait for the lake's lease (which still guards writers outside Airflow).
- A task that meets a transient refusal (the lease busy past its wait; an input day not
  there yet) fails to be retried; a user's mistake or a failed gate fails for good, in
  one line.
"""

from __future__ import annotations

import datetime as dt_
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geosid.errors import InvalidRequestError, NotArrivedError, UserError
from geosid.lake.lease import LakeBusyError

POOL = os.environ.get("GEOSID_AIRFLOW_POOL", "geosid_lake")
# The Airflow asset the daily DAG updates when the drift of the version in force advises a
# re-fit, and the codebook backfill DAG is scheduled on (an aligned re-fit of that version).
REFIT_ASSET = {"name": "geosid_refit_advised", "uri": "geosid://codebook/refit-advised"}
LAKE_VARIABLE = "geosid_lake"
# Refusals a later try can get past: another writer holds the lake; an input is not there yet.
TRANSIENT = (LakeBusyError, NotArrivedError)


def dags_folder() -> Path:
    """Where the installed DAG files are (package data: `geosid/dags/`): what Airflow's
    dags folder points at, or where its geosid_*.py files are linked from."""
    return Path(__file__).resolve().parents[1] / "dags"


def task_defaults() -> dict:
    """default_args of geosid's DAGs: retries with a growing delay (GEOSID_AIRFLOW_RETRIES,
    GEOSID_AIRFLOW_RETRY_DELAY_SECONDS at parse time)."""
    delay = float(os.environ.get("GEOSID_AIRFLOW_RETRY_DELAY_SECONDS", "60"))
    return {
        "retries": int(os.environ.get("GEOSID_AIRFLOW_RETRIES", "6")),
        "retry_delay": dt_.timedelta(seconds=delay),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt_.timedelta(seconds=max(delay, 600)),
    }


def drop_wait() -> tuple[float, float]:
    """(hours the daily sensor waits for a drop by default, seconds between its pokes):
    GEOSID_DROP_WAIT_HOURS (48) and GEOSID_DROP_POKE_SECONDS (600) at parse time."""
    return float(os.environ.get("GEOSID_DROP_WAIT_HOURS", "48")), float(os.environ.get("GEOSID_DROP_POKE_SECONDS", "600"))


def _absolute(path: str, where: str) -> str:
    if not Path(path).is_absolute():
        raise InvalidRequestError(f"the lake from {where} must be an absolute path, got {path!r}")
    return path


def deployment_lake(param: str | None) -> str:
    """The lake a DAG run writes: its `lake` param, else the Airflow Variable geosid_lake,
    else an absolute GEOSID_LAKE; else one line saying how to configure it."""
    if param:
        return _absolute(param, "the run's lake param")
    from airflow.sdk import Variable  # lazy: only inside a running Airflow task

    configured = Variable.get(LAKE_VARIABLE, default=None)
    if configured:
        return _absolute(configured, f"the Airflow Variable {LAKE_VARIABLE}")
    if os.environ.get("GEOSID_LAKE"):
        return _absolute(os.environ["GEOSID_LAKE"], "GEOSID_LAKE")
    raise InvalidRequestError(
        f"no lake is configured for this deployment: run `geosid airflow setup --lake /absolute/path` (sets the "
        f"Airflow Variable {LAKE_VARIABLE} and the pool {POOL}), or give the workers an absolute GEOSID_LAKE"
    )


def airflow_task(step: Callable, *args, **kwargs):
    """Run a pipeline step inside an Airflow task: a transient refusal raises as it is (the
    task is retried); another user error fails the task without retries, in one line."""
    from airflow.sdk.exceptions import AirflowFailException  # lazy: only inside a running Airflow task

    try:
        return step(*args, **kwargs)
    except TRANSIENT:
        raise
    except UserError as exc:
        raise AirflowFailException(" ".join(str(exc).split())) from None


@dataclass
class SetupReport:
    pool: str
    slots: int
    lake: str
    commands: list

    def summary(self) -> str:
        return (
            f"Airflow: pool {self.pool} ({self.slots} slot) for the writing tasks, Variable {LAKE_VARIABLE} = {self.lake}; "
            "unpause the DAGs when the lake's drops are in place"
        )


def airflow_setup(lake: str | Path, slots: int = 1, airflow: str | None = None) -> SetupReport:
    """Create (or update) the pool and the lake Variable in the Airflow that `airflow` (the
    CLI beside this Python, else on PATH) talks to."""
    lake = str(Path(lake).expanduser().resolve())
    if slots < 1:
        raise InvalidRequestError("the pool needs at least one slot")
    program = airflow or str(Path(sys.executable).parent / "airflow")
    if not Path(program).exists():
        program = shutil.which("airflow") or ""
    if not program:
        raise InvalidRequestError("no `airflow` command found beside this Python or on PATH: install geosid into Airflow's environment")
    commands = [
        [program, "pools", "set", POOL, str(slots), "geosid: the tasks that write the lake, one at a time"],
        [program, "variables", "set", LAKE_VARIABLE, lake],
    ]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise InvalidRequestError(f"`{' '.join(command[1:3])}` failed: {last[0][:300]}")
    return SetupReport(POOL, slots, lake, [" ".join(c[1:]) for c in commands])
