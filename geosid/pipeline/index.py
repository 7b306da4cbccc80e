"""Pipeline steps of the SID index: fit, publish, assign, backfill, reports."""

from __future__ import annotations

import dataclasses
import datetime as dt_
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import functions as F

from geosid.errors import GateError, InvalidRequestError, NotFoundError
from geosid.jobs import index as index_job
from geosid.jobs.index import (
    CodebookSpec,
    FitReport,
    Gates,
    assign_sids,
    codebook_versions,
    fit_candidate,
    publish,
    published_version,
    quality_row,
    quality_table,
    rollback_sids,
    version_row,
)
from geosid.jobs.index.drift import DriftPolicy, RefitAdvice, drift_rows
from geosid.jobs.index.drift import refit_advice as drift_advice
from geosid.jobs.index.versions import compare_versions, stability_table, write_migration
from geosid.jobs.validate import validate_migration as validate_migration_suites
from geosid.lake import DateLike, as_date
from geosid.pipeline.context import Context, use
from geosid.pipeline.gates import GateReport, gate_outcome
from geosid.pipeline.records import is_stale, record, require_arrived
from geosid.pipeline.scopes import Stage, VersionScope
from geosid.pipeline.silver import representation
from geosid.schemas import corpus, index, silver


def latest_item_day(ctx: Context) -> dt_.date:
    """The latest logical date of silver.item_geo (the default day of a fit)."""

    if not ctx.lake.exists(silver.ITEM_GEO):
        raise NotFoundError("silver.item_geo does not exist yet: run geo (and embed) first")
    return ctx.lake.read(silver.ITEM_GEO).agg(F.max("dt")).collect()[0][0]


def fit_codebook(
    spec: CodebookSpec,
    day: DateLike | None = None,
    *,
    template: str | None = None,
    embeddings_version: int | None = None,
    item_geo_version: int | None = None,
    reuse_published: bool = False,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> FitReport:
    """Fit a candidate codebook version (`spec`: method, codes, iterations, seed) on the
    items of `day` (default: the latest day), embedded under `template` (default: the
    settings'), reading the latest silver table versions unless pinned."""
    with use(ctx, lake_root, writes="fit_codebook") as ctx:
        rep = representation(ctx, template)
        day = as_date(day) if day is not None else latest_item_day(ctx)
        with ctx.stage(f"codebook candidate: {spec.label} on {rep.template_id} as of {day}", timed=f"codebook {spec.label}"):
            report = fit_candidate(
                ctx.lake,
                spec,
                day,
                model_id=rep.model_id,
                template_id=rep.template_id,
                embeddings_version=embeddings_version,
                item_geo_version=item_geo_version,
                reuse_published=reuse_published,
            )
            record(
                ctx,
                Stage.CODEBOOKS,
                VersionScope(report.codebook_version),
                [day],
                {"method": spec.method, "template": rep.template_id},
                "range",
                report.codebook_version,
            )
            if not report.reused:  # the fit gave every item of the day its SID under the version
                record(ctx, Stage.SIDS, VersionScope(report.codebook_version), [day], {}, "day", report.codebook_version)
        ctx.log(report.summary())
        return report


def gates_from(values: dict | None) -> Gates:
    """Publish gates from overrides (a DAG's params, the CLI's options); unknown keys refused."""
    known = [f.name for f in dataclasses.fields(Gates)]
    unknown = sorted(set(values or {}) - set(known))
    if unknown:
        raise InvalidRequestError(f"unknown gate(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return Gates(**(values or {}))


def publish_codebook(
    codebook_version: str, day: DateLike | None = None, gates: dict | None = None, *, ctx: Context | None = None, lake_root: str | None = None
):
    """Publish a candidate as of `day` (default: the latest item day) after its gates
    (GateError says which failed)."""

    with use(ctx, lake_root, writes="publish_codebook") as ctx:
        day = as_date(day) if day is not None else latest_item_day(ctx)
        report = publish(ctx.lake, codebook_version, day, gates_from(gates))
        ctx.log(report.summary())
        if report.migration:  # the migration from the version it retired: validated at once
            results = validate_migration_suites(ctx.lake, report.migration["from_version"], codebook_version)
            gate_outcome(GateReport("migration", day, day, results), log=ctx.log)
        return report


@dataclass
class IndexOutcome:
    """The index stage: candidates of every method at one budget, the one published."""

    fits: list = field(default_factory=list)
    published: str | None = None
    comparison: str = ""
    report: str = ""
    refusals: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"candidates": [f.to_dict() for f in self.fits], "published": self.published, "refusals": self.refusals}


# The candidates an index build compares at one budget: OneMall's pair with nearest codes,
# the same two with the capacity-aware last level, and the geo-prefix baseline.
CANDIDATES = (
    ("residual_kmeans", False),
    ("residual_kmeans_fsq", False),
    ("residual_kmeans", True),
    ("residual_kmeans_fsq", True),
    ("geo_prefix", True),
)


def build_index(
    day: DateLike,
    codes: tuple[int, ...] | None = None,
    gates: dict | None = None,
    candidates: tuple[tuple[str, bool], ...] = CANDIDATES,
    template: str | None = None,
    *,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> IndexOutcome:
    """Fit every candidate tokenizer at one code budget, compare them, publish the one with
    the fewest conflicts that passes the gates. The gates refusing every candidate is an
    outcome (nothing published, said so), not a failure."""

    day = as_date(day)
    outcome = IndexOutcome()
    with use(ctx, lake_root, writes="build_index") as ctx:
        for method, capacity_aware in candidates:
            spec = CodebookSpec(method, codes=tuple(codes) if codes else None, capacity_aware=capacity_aware)
            outcome.fits.append(fit_codebook(spec, day, reuse_published=True, template=template, ctx=ctx))
        outcome.comparison = quality_table([quality_row(ctx.lake, r.codebook_version) for r in outcome.fits])
        ctx.log("\nSID quality at the same code budget (before disambiguation):\n")
        ctx.log(outcome.comparison + "\n")
        for fit in sorted(outcome.fits, key=lambda r: r.metrics["conflict_rate"]):
            version = fit.codebook_version
            if version_row(ctx.lake, version)["status"] == "published":
                ctx.log(f"{version} ({fit.method}) is already published: same inputs, same version, unchanged")
            else:
                try:
                    publish_codebook(version, day, gates, ctx=ctx)
                except GateError as exc:
                    outcome.refusals.append(str(exc))
                    ctx.log(f"    {exc}")
                    continue
            outcome.published = version
            outcome.report, _ = index_job.sid_report(ctx.lake, version, ctx.lake.reports_dir(version))
            ctx.log(outcome.report)
            return outcome
        ctx.log(
            "no candidate passed the publish gates: nothing published; the daily run assigns SIDs "
            "once a version is (geosid codebook publish --version V, with gates of your choosing)"
        )
        return outcome


@dataclass
class SkippedStep:
    """A step with nothing to do, and why (e.g. no codebook version in force yet)."""

    dt: dt_.date
    reason: str
    passed: bool = True  # nothing to check is no failure of a gate

    def summary(self) -> str:
        return f"{self.dt}: skipped: {self.reason}"

    def to_dict(self) -> dict:
        return {
            "dt": self.dt.isoformat(),
            "codebook_version": None,
            "skipped": self.reason,
            "passed": True,
            "tables": {},
            "summaries": [self.summary()],
        }


def version_in_force(ctx: Context, day: dt_.date, codebook_version: str | None) -> str | None:
    """The given version, else the one published as of `day` (a re-run of an old day uses
    the version of its day, not today's)."""

    if codebook_version:
        version_row(ctx.lake, codebook_version)  # UnknownNameError lists the known ones
        return codebook_version
    return published_version(ctx.lake, as_of=day)


def assign_day(day: DateLike, codebook_version: str | None = None, *, ctx: Context | None = None, lake_root: str | None = None):
    """SIDs for the day's items not yet tokenized under the version in force on the day."""
    day = as_date(day)
    with use(ctx, lake_root, writes=f"assign {day}") as ctx:
        version = version_in_force(ctx, day, codebook_version)
        if version is None:
            report = SkippedStep(day, f"no codebook version published as of {day}")
        else:
            require_arrived(ctx, day)
            with ctx.stage(f"assign SIDs under {version} as of {day}", timed="assign"):
                report = assign_day_under(ctx, version, day)
        ctx.log(report.summary())
        return report


def assign_day_under(ctx: Context, version: str, day: dt_.date, mode: str = "day"):
    """Assign the day's new items under `version` and record it. A day whose SIDs were
    given from inputs that have changed since takes them back first (with every later
    day's, which are stale too and rebuilt after it), so the day is assigned as a clean
    run would have."""

    if is_stale(ctx, Stage.SIDS, VersionScope(version), day):
        rollback_sids(ctx.lake, version, day)
    report = assign_sids(ctx.lake, version, day)
    record(ctx, Stage.SIDS, VersionScope(version), [day], {}, mode, version)
    return report


def backfill(codebook_version: str, first: DateLike, last: DateLike, *, ctx: Context | None = None, lake_root: str | None = None):
    """Give every item of [first, last] a SID under a version (existing SIDs stay)."""

    with use(ctx, lake_root, writes="backfill") as ctx:
        require_arrived(ctx, as_date(last))
        with ctx.stage(f"backfill {codebook_version} {as_date(first)} .. {as_date(last)}", timed="backfill"):
            report = index_job.backfill(ctx.lake, codebook_version, first, last)
            record(ctx, Stage.SIDS, VersionScope(codebook_version), [d.dt for d in report.days], {}, "day", codebook_version)
        for day in report.days:
            ctx.log(day.summary())
        ctx.log(report.summary())
        return report


CODEBOOK_COLUMNS = [
    "version",
    "method",
    "status",
    "level_sizes",
    "n_items",
    "embeddings_version",
    "item_geo_version",
    "created_dt",
    "published_dt",
    "retired_dt",
]


def list_codebooks(*, ctx: Context | None = None, lake_root: str | None = None) -> str:
    """index.codebook_versions as a text table."""

    with use(ctx, lake_root, reads="list_codebooks") as ctx:
        table = codebook_versions(ctx.lake)
        return table[CODEBOOK_COLUMNS].to_string(index=False) if len(table) else "no codebook versions yet"


def sid_report(
    codebook_version: str, out_dir: str | Path | None = None, *, ctx: Context | None = None, lake_root: str | None = None
) -> tuple[str, list[Path]]:
    """A version's quality numbers and plots (default folder: <lake>/_reports/<version>)."""

    with use(ctx, lake_root, reads="sid_report") as ctx:
        return index_job.sid_report(ctx.lake, codebook_version, Path(out_dir) if out_dir else ctx.lake.reports_dir(codebook_version))


def sid_compare(
    codebook_versions: list[str] | None = None, against: str | None = None, *, ctx: Context | None = None, lake_root: str | None = None
) -> str:
    """The quality table of several versions side by side (default: every version that
    has its SIDs assigned, oldest first), then their stability: each against `against`,
    or, when not given, each against the one before it in the list."""

    with use(ctx, lake_root, reads="sid_compare") as ctx:
        if not codebook_versions:
            if not ctx.lake.exists(index.SID_QUALITY):
                raise NotFoundError("no codebook version has SIDs yet: geosid codebook fit")
            rows = ctx.lake.read(index.SID_QUALITY).select("version").collect()
            order = {v: i for i, v in enumerate(index_job.codebook_versions(ctx.lake).sort_values(["created_dt", "version"]).version)}
            codebook_versions = sorted((r.version for r in rows), key=lambda v: (order.get(v, len(order)), v))
        text = quality_table([quality_row(ctx.lake, v) for v in codebook_versions])
        if against:
            version_row(ctx.lake, against)
            pairs = [(v, against) for v in codebook_versions if v != against]
        else:
            pairs = list(zip(codebook_versions[1:], codebook_versions[:-1]))
        if pairs:
            rows = [(v, ref, compare_versions(ctx.lake, ref, v)) for v, ref in pairs]
            text += "\n\nStability (over the items both versions give a SID):\n\n" + stability_table(rows)
        return text


@dataclass(frozen=True)
class RefitPlan:
    """What a codebook backfill run does: fit as of `last` (aligned to `align_to`, the
    version in force, or from scratch when None), tokenize [first, last] and rebuild the
    corpus of `source` over it."""

    first: dt_.date
    last: dt_.date
    align_to: str | None
    source: str

    def to_dict(self) -> dict:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(), "align_to": self.align_to, "source": self.source}


def corpus_first_day(ctx: Context, source: str, version: str | None) -> dt_.date | None:
    """The first day of the source's training corpus under a version (None: it has none)."""

    if version is None or not ctx.lake.exists(corpus.TRAINING_SEQUENCES):
        return None
    rows = ctx.lake.read(corpus.TRAINING_SEQUENCES).filter((F.col("codebook_version") == version) & (F.col("source") == source))
    return rows.agg(F.min("dt")).collect()[0][0]


def refit_plan(
    first: DateLike | None = None,
    last: DateLike | None = None,
    source: str = "tsmc2014",
    *,
    align: bool = True,
    ctx: Context | None = None,
    lake_root: str | None = None,
) -> RefitPlan:
    """The range of a re-fit and the version it aligns to (with `align`: the one in force
    on its last day, if any). By default it ends on the latest item day and starts where
    the source's corpus under the version in force starts (the range the new version
    takes over; the last day alone when there is none)."""

    with use(ctx, lake_root, reads="refit_plan") as ctx:
        last = as_date(last) if last else latest_item_day(ctx)
        in_force = published_version(ctx.lake, as_of=last)
        first = as_date(first) if first else min(corpus_first_day(ctx, source, in_force) or last, last)
        if first > last:
            raise InvalidRequestError(f"the range {first} .. {last} is empty: from is after to")
        return RefitPlan(first, last, in_force if align else None, source)


def refit_request(params: dict, advised: list[dict]) -> dict:
    """A codebook backfill run's params, completed from the re-fit advice that triggered
    it (`advised`: the extras of the triggering `geosid_refit_advised` events, oldest
    first): the latest advice's source, and its lake where the params name none. The
    range keeps the params' (by default the latest item day, whichever run advised)."""

    if not advised:
        return dict(params)
    latest = advised[-1]
    out = dict(params)
    out["source"] = latest.get("source") or params.get("source")
    out["lake"] = params.get("lake") or latest.get("lake")
    return out


@dataclass
class MigrationOutcome:
    """index.sid_migration into a version: the items per kind, and its suites."""

    to_version: str
    counts: dict | None
    results: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.success for r in self.results)

    def summary(self) -> str:
        if self.counts is None:
            return f"{self.to_version} took over from no version: no migration to write"
        kinds = ", ".join(f"{self.counts[k]:,} {k}" for k in index.MIGRATION_KINDS)
        return "\n".join([f"index.sid_migration {self.counts['from_version']} -> {self.to_version}: {kinds}", *(r.summary() for r in self.results)])

    def to_dict(self) -> dict:
        """For XCom, in the shape of a gate's outcome (`gate_outcome` fails a task on it)."""
        return {
            "what": "migration",
            "dt": self.to_version,
            "to_version": self.to_version,
            "counts": self.counts,
            "passed": self.passed,
            "tables": {r.table: {"success": r.success, "rows": r.rows, "failed": [c["check"] for c in r.failed]} for r in self.results},
            "summaries": [r.summary() for r in self.results],
        }


def migrate(
    codebook_version: str, from_version: str | None = None, *, validate: bool = True, ctx: Context | None = None, lake_root: str | None = None
) -> MigrationOutcome:
    """(Re)write index.sid_migration and index.sid_code_map into a published version from
    the one it retired (or `from_version`), and validate them: every item of both versions
    accounted for exactly once."""

    with use(ctx, lake_root, writes=f"migrate {codebook_version}") as ctx:
        version_row(ctx.lake, codebook_version)
        with ctx.stage(f"SID migration into {codebook_version}", timed="migration"):
            counts = write_migration(ctx.lake, codebook_version, from_version)
            outcome = MigrationOutcome(codebook_version, counts)
            if counts is not None and validate:
                outcome.results = validate_migration_suites(ctx.lake, counts["from_version"], codebook_version)
        ctx.log(outcome.summary())
        return outcome


def refit_advice(*, ctx: Context | None = None, lake_root: str | None = None) -> RefitAdvice | None:
    """Whether the drift of the version in force advises a re-fit (None: no version yet)."""

    with use(ctx, lake_root, reads="refit_advice") as ctx:
        version = published_version(ctx.lake)
        if version is None:
            return None
        s = ctx.settings
        policy = DriftPolicy(s.drift_max_error_ratio, s.drift_max_collision_excess, s.drift_days)
        return drift_advice(drift_rows(ctx.lake, version), version, policy)
