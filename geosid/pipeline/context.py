"""The context every pipeline step runs in: settings, an engine session, the lake, where
progress lines go, and the stage timings.

A step called without a context (a DAG task, a script) opens its own for the duration
of the call; the CLI and the demo open one and pass it to every step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.errors.exceptions.base import PySparkException

from geosid.config import Settings
from geosid.errors import InvalidRequestError
from geosid.lake import Lake, spark_session
from geosid.lake.lease import LeaseSettings


def _quiet(_: str) -> None:
    pass


@dataclass
class Context:
    settings: Settings
    spark: object
    lake: Lake
    log: Callable[[str], None] = _quiet
    progress: bool = False  # progress bars (terminals); plain lines otherwise
    timings: list[tuple[str, float]] = field(default_factory=list)
    _depth: int = 0

    @property
    def lake_root(self):
        return self.lake.root

    @contextmanager
    def stage(self, label: str, timed: str | None = None) -> Iterator[None]:
        """Log `==> label`, run the block, log its time and record it under `timed`
        (default: the label) for the run's timing summary. A stage inside another is
        logged (indented) but only the outer one is timed, so the summary adds up."""
        indent = "    " * self._depth
        self.log(f"{indent}==> {label}")
        started = time.perf_counter()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            seconds = time.perf_counter() - started
            if self._depth == 0:
                self.timings.append((timed or label, seconds))
            self.log(f"{indent}    done in {seconds:.1f}s")

    def timing_summary(self) -> str:
        total = sum(s for _, s in self.timings)
        width = max([len(label) for label, _ in self.timings] + [5])
        lines = [f"{label:<{width}}  {seconds:8.1f}s" for label, seconds in self.timings]
        lines.append(f"{'total':<{width}}  {total:8.1f}s")
        return "\n".join(lines)


def engine_errors() -> tuple[type[BaseException], ...]:
    """What the engine raises when it refuses or fails a job: the CLI reports these in one
    line (the step and the engine's first line), the traceback only with --debug."""
    return (PySparkException,)


def lease_settings(settings: Settings) -> LeaseSettings:
    return LeaseSettings(wait_s=settings.lease_wait_seconds, timeout_s=settings.lease_timeout_seconds)


def require_lake_root(root: Path) -> None:
    """The lake's folder exists or can be made, and can be written: else one line that
    says so (a mistyped --lake), not an engine's traceback at the first write."""

    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidRequestError(f"lake root {root} cannot be created ({exc.strerror}): pass --lake (or GEOSID_LAKE) a writable folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise InvalidRequestError(f"lake root {root} is not writable: pass --lake (or GEOSID_LAKE) a writable folder")


@contextmanager
def open_context(settings: Settings | None = None, log: Callable[[str], None] | None = None, *, progress: bool = False) -> Iterator[Context]:
    """An engine session on the settings' engine and the lake under its root."""

    settings = settings or Settings.from_env()
    require_lake_root(settings.lake_root)
    with spark_session(settings) as spark:
        lake = Lake(
            settings.lake_root,
            spark,
            committer=settings.committer(),
            reader=settings.reader(),
            lease=lease_settings(settings),
            quality_evaluator=settings.quality_evaluator,
        )
        yield Context(settings, spark, lake, log or _quiet, progress)


@contextmanager
def _access(ctx: Context, writes: str | None, reads: str | None) -> Iterator[Context]:
    if writes is not None:
        ctx.lake.log = ctx.log
        with ctx.lake.writing(writes):
            yield ctx
    elif reads is not None:
        with ctx.lake.reading(reads):
            yield ctx
    else:
        yield ctx


@contextmanager
def use(
    ctx: Context | None,
    lake_root: str | None = None,
    log: Callable[[str], None] | None = None,
    *,
    writes: str | None = None,
    reads: str | None = None,
) -> Iterator[Context]:
    """`ctx` itself, or (a DAG task) a context of its own on the lake at `lake_root`.

    `writes`: the step holds the lake's writer lease throughout (what it reads to decide
    and what it writes cannot interleave with another writer's; re-entrant, so a step
    calling steps holds it once). `reads`: the step reads one consistent, pinned set of
    table versions (geosid.lake.lease)."""
    if ctx is not None:
        with _access(ctx, writes, reads):
            yield ctx
        return
    with open_context(Settings.from_env(lake_root=lake_root), log=log or print) as own, _access(own, writes, reads):
        yield own
