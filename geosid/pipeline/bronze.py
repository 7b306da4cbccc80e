"""Pipeline steps of the bronze layer: ingest a source's raw files, validate the days."""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass
from pathlib import Path

from geosid.errors import InvalidRequestError, NotArrivedError
from geosid.jobs import validate as validate_job
from geosid.jobs.ingest import run_ingest, scan_date_range
from geosid.lake import DateLike, as_date, date_bounds
from geosid.lake.lineage import record_inputs
from geosid.pipeline.context import Context, use
from geosid.pipeline.gates import GateReport
from geosid.sources.registry import get_source


@dataclass
class IngestOutcome:
    path: Path
    report: object  # geosid.jobs.ingest.IngestReport
    gate: GateReport | None
    inputs: object = None  # geosid.lake.lineage.InputChange: what the ingest changed of the recorded input days

    @property
    def passed(self) -> bool:
        return self.gate is None or self.gate.passed

    def to_dict(self) -> dict:
        return {
            **self.report.to_dict(),
            "path": str(self.path),
            "gate": self.gate.to_dict() if self.gate else None,
            "inputs": self.inputs.to_dict() if self.inputs else None,
        }


def not_arrived(spec, raw: Path, marker: str | None, day: dt_.date) -> str:
    """Why `day` has not arrived under `raw`, in one line."""
    through = spec.complete_through(raw)
    if through is not None:
        return f"{spec.name} {day} has not arrived: {raw} holds the days up to {through} only"
    return (
        f"the drop of {spec.name} for {day} has not arrived under {raw}: every feed's dt={day} folder needs its "
        f"{marker or 'folder'} (the producer writes it when the day is whole)"
    )


def resolve_range(ctx: Context, source: str, path: Path, first: DateLike | None, last: DateLike | None) -> tuple[dt_.date, dt_.date]:
    """The days to ingest: as given, else every day the raw files hold."""
    if first is not None and last is not None:
        return date_bounds((first, last))
    if first is not None or last is not None:
        raise InvalidRequestError("give both the first and the last day of the range (--from and --to), or --date")

    return scan_date_range(ctx.lake, source, path)


def ingest(
    source: str,
    first: DateLike | None = None,
    last: DateLike | None = None,
    path: str | Path | None = None,
    *,
    validate: bool = True,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> IngestOutcome:
    """Ingest `source` for [first, last] (default: every day of its raw files) from `path`
    (default: the registry's path for the source), record the input days it ingested
    (ops.input_days: their content digests, so a re-delivery that changes a day is
    noticed), then run the bronze gate. A single day whose drop has not arrived is refused
    (NotArrivedError); of a range, the days that have not arrived are left as they are."""

    with use(ctx, lake_root, writes=f"ingest {source}") as ctx:
        spec = get_source(source)
        raw = spec.raw_path(path, ctx.settings)
        first, last = resolve_range(ctx, source, raw, first, last)
        marker = ctx.settings.drop_marker
        if first == last and not spec.has_arrived(raw, marker, first):
            raise NotArrivedError(not_arrived(spec, raw, marker, first))
        with ctx.stage(f"ingest {source} {first} .. {last} from {raw}", timed="ingest"):
            report = run_ingest(ctx.lake, source, raw, first, last, progress=ctx.progress, marker=marker)
            arrived = spec.arrived(raw, marker) or {}
            inputs = record_inputs(ctx.lake, source, [f.name for f in spec.feeds], report.days, files={d: arrived.get(d) for d in report.days})
        ctx.log(report.summary())
        ctx.log(inputs.summary())
        gate = validate_bronze(first, last, ctx=ctx) if validate and report.days else None
        return IngestOutcome(raw, report, gate, inputs)


def validate_bronze(first: DateLike, last: DateLike | None = None, *, ctx: Context | None = None, lake_root: str | None = None) -> GateReport:
    """The bronze suites and the reject-rate gate for a day or range."""

    first = as_date(first)
    last = as_date(last) if last is not None else first
    with use(ctx, lake_root, writes="validate_bronze") as ctx:
        with ctx.stage("data quality (great-expectations)", timed="validate bronze"):
            gate = GateReport("bronze", first, last, validate_job.validate_bronze(ctx.lake, (first, last), ctx.settings.reject_rate_threshold))
        ctx.log(gate.summary())
        ctx.log(f"    results under {ctx.lake.root / '_quality'}")
        return gate
