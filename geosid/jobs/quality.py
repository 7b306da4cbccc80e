"""Data quality: the suites declared beside each table's schema, run by great-expectations.

Suites run on Spark DataFrames (any engine) through an ephemeral GX context. Each run
writes its result as JSON plus a readable summary under `<lake>/_quality/` and returns
pass/fail, so a DAG task or the CLI can gate on it.
"""

from __future__ import annotations

import datetime as dt_
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, functions as F

from geosid.jobs.lake import DateLike, DateRange, Lake, date_bounds
from geosid.schemas import Check, TableSpec, bronze, corpus, index, silver

log = logging.getLogger(__name__)


@dataclass
class QualityResult:
    table: str
    first: dt_.date | None
    last: dt_.date | None
    success: bool
    rows: int
    checks: list[dict] = field(default_factory=list)
    result_path: Path | None = None

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.checks if not c["success"]]

    def summary(self) -> str:
        span = "" if self.first is None else (f" {self.first}" if self.first == self.last else f" {self.first} .. {self.last}")
        head = f"{'PASS' if self.success else 'FAIL'} {self.table}{span}: {len(self.checks) - len(self.failed)}/{len(self.checks)} checks passed on {self.rows:,} rows"
        lines = [head]
        for check in self.checks:
            mark = "ok  " if check["success"] else "FAIL"
            extra = ""
            if not check["success"]:
                extra = f"  unexpected={check.get('unexpected_count')} sample={check.get('sample')}"
            lines.append(f"  {mark} {check['check']}{extra}")
        return "\n".join(lines)


class _Gx:
    """One ephemeral GX context per process, with a Spark dataframe asset."""

    _instance: "_Gx | None" = None

    def __init__(self):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX logs its set-up at INFO on every context; keep the job's output readable.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = self.context.data_sources.add_spark(name="geosid_spark")
        asset = source.add_dataframe_asset(name="geosid_frames")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")

    @classmethod
    def get(cls) -> "_Gx":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def expectation(self, check: Check, index: int):
        """The GX expectation for `check`; `meta.check_index` maps its result back."""
        E = self.gx.expectations
        meta = {"check_index": index}
        if check.kind == "not_null":
            return E.ExpectColumnValuesToNotBeNull(column=check.column, meta=meta)
        if check.kind == "between":
            return E.ExpectColumnValuesToBeBetween(
                column=check.column,
                min_value=check.args.get("min_value"),
                max_value=check.args.get("max_value"),
                meta=meta,
            )
        if check.kind == "in_set":
            return E.ExpectColumnValuesToBeInSet(column=check.column, value_set=list(check.args["values"]), meta=meta)
        if check.kind == "unique":
            return E.ExpectColumnValuesToBeUnique(column=check.column, meta=meta)
        if check.kind == "compound_unique":
            return E.ExpectCompoundColumnsToBeUnique(column_list=list(check.args["columns"]), meta=meta)
        raise ValueError(f"unknown check kind {check.kind!r}")


def run_checks(df: DataFrame, checks: tuple[Check, ...] | list[Check], name: str) -> tuple[bool, int, list[dict]]:
    """Validate `df` against `checks`; returns (success, row count, per-check results)."""
    gx_ = _Gx.get()
    for check in checks:
        if check.sql:
            df = df.withColumn(check.column, F.expr(check.sql))
    suite = gx_.gx.ExpectationSuite(name=name, expectations=[gx_.expectation(c, i) for i, c in enumerate(checks)])
    batch = gx_.batch_definition.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(suite)
    # GX does not keep the suite's order in its results: map them back by meta.
    by_index = {res.expectation_config.meta["check_index"]: res for res in result.results}
    if sorted(by_index) != list(range(len(checks))):
        raise RuntimeError(f"great-expectations returned results for checks {sorted(by_index)} of {len(checks)}")
    outcomes = []
    for position, check in enumerate(checks):
        res = by_index[position]
        detail = res.result or {}
        outcomes.append(
            {
                "check": check.describe(),
                "success": bool(res.success),
                "element_count": detail.get("element_count"),
                "unexpected_count": detail.get("unexpected_count"),
                "sample": [str(v) for v in (detail.get("partial_unexpected_list") or [])[:5]],
                "exception": (res.exception_info or {}).get("exception_message") if not res.success else None,
            }
        )
    rows = next((o["element_count"] for o in outcomes if o["element_count"] is not None), None)
    if rows is None:
        rows = df.count()
    return bool(result.success), int(rows), outcomes


def _write_result(lake: Lake, result: QualityResult) -> Path:
    if result.first is None:
        folder = lake.root / "_quality" / result.table
    elif result.first == result.last:
        folder = lake.root / "_quality" / result.table / f"dt={result.first}"
    else:
        folder = lake.root / "_quality" / result.table / f"dt={result.first}_{result.last}"
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "table": result.table,
        "first": result.first.isoformat() if result.first else None,
        "last": result.last.isoformat() if result.last else None,
        "success": result.success,
        "rows": result.rows,
        "checks": result.checks,
    }
    (folder / "result.json").write_text(json.dumps(payload, indent=2, default=str))
    (folder / "summary.txt").write_text(result.summary() + "\n")
    return folder / "result.json"


def validate_table(
    lake: Lake,
    table: str | TableSpec,
    dt: DateLike | DateRange | None = None,
    extra_checks: tuple[Check, ...] = (),
    where: str | None = None,
) -> QualityResult:
    """Run the table's declared suite on a day / day range (or the whole table), on the
    rows matching the SQL `where` if given."""
    spec = lake.spec(table)
    first, last = date_bounds(dt) if dt is not None else (None, None)
    df = lake.read(spec, dt=dt)
    if where:
        df = df.filter(where)
    checks = (*spec.checks, *extra_checks)
    lambdas = [c for c in checks if c.sql and "->" in c.sql]
    run = f"quality-{spec.name}"
    if lambdas:
        # Sail cannot yet bind a lambda (aggregate(vector, ...)) inside the filters GX
        # generates: compute such derived columns once, materialized, then validate.
        for check in lambdas:
            df = df.withColumn(check.column, F.expr(check.sql))
        df = lake.checkpoint(df, run)
        checks = tuple(Check(c.kind, c.column, None, c.args) if c in lambdas else c for c in checks)
    try:
        success, rows, outcomes = run_checks(df, checks, name=f"{spec.name}")
    finally:
        lake.drop_checkpoints(run)
    result = QualityResult(spec.name, first, last, success, rows, outcomes)
    result.result_path = _write_result(lake, result)
    return result


def reject_rates(events: DataFrame, rejects: DataFrame) -> DataFrame:
    """Per day: accepted events, rejected lines and the reject rate (rejected / all lines)."""
    accepted = events.groupBy("dt").agg(F.count(F.lit(1)).alias("n_events"))
    rejected = rejects.groupBy("dt").agg(F.count(F.lit(1)).alias("n_rejects"))
    joined = accepted.join(rejected, "dt", "full_outer").na.fill(0, ["n_events", "n_rejects"])
    return joined.withColumn(
        "reject_rate", F.col("n_rejects") / F.greatest(F.col("n_events") + F.col("n_rejects"), F.lit(1))
    )


def validate_reject_rate(lake: Lake, dt: DateLike | DateRange, threshold: float) -> QualityResult:
    """Gate: for every day in `dt`, rejected lines / all lines <= threshold."""
    first, last = date_bounds(dt)
    rates = reject_rates(lake.read(bronze.EVENTS, dt=dt), lake.read(bronze.REJECTS, dt=dt))
    check = Check("between", "reject_rate", args={"min_value": 0.0, "max_value": threshold})
    success, rows, outcomes = run_checks(rates, [check], name="bronze.reject_rate")
    result = QualityResult("bronze.reject_rate", first, last, success, rows, outcomes)
    result.result_path = _write_result(lake, result)
    return result


def validate_bronze(lake: Lake, dt: DateLike | DateRange, reject_rate_threshold: float) -> list[QualityResult]:
    """All bronze suites for a day or range, plus the reject-rate gate."""
    results = [validate_table(lake, spec, dt=dt) for spec in bronze.TABLES]
    results.append(validate_reject_rate(lake, dt, reject_rate_threshold))
    return results


def validate_silver(lake: Lake, dt: DateLike) -> list[QualityResult]:
    """The geo context suites for a day; the embeddings and SID map suites over the tables."""
    results = [validate_table(lake, spec, dt=dt) for spec in (silver.GEO_CELLS, silver.ITEM_GEO)]
    results.append(validate_table(lake, silver.ITEM_EMBEDDINGS))
    if lake.exists(index.SID_MAP):
        results.append(validate_table(lake, index.SID_MAP))
    return results


def cell_id_pattern(cell_system: str) -> str:
    """A regex every valid cell id of the named system matches (geohash<P> / h3r<R>)."""
    if cell_system.startswith("geohash"):
        return f"^[0123456789bcdefghjkmnpqrstuvwxyz]{{{int(cell_system[len('geohash'):])}}}$"
    if cell_system.startswith("h3r"):
        return "^8[0-9a-f]{14}$"
    raise ValueError(f"unknown cell system {cell_system!r}")


def _codes_ok(codes: str, sizes: tuple[int, ...]) -> str:
    """SQL: `codes` has one code per level, each in [0, level size). (CASE keeps the
    element reads from running on a short array.)"""
    levels = " AND ".join(f"{codes}[{j}] BETWEEN 0 AND {int(s) - 1}" for j, s in enumerate(sizes))
    return f"(CASE WHEN size({codes}) = {len(sizes)} THEN {levels} ELSE false END)"


def corpus_checks(level_sizes: tuple[int, ...], cell_system: str) -> tuple[Check, ...]:
    """The suite parts that depend on the codebook version and the cell system: SID codes
    within the codebook's level sizes, every cell id valid."""
    pattern = cell_id_pattern(cell_system)
    valid = lambda c: f"{c} RLIKE '{pattern}'"  # noqa: E731
    return (
        Check("in_set", "target_codes_in_codebook", sql=_codes_ok("target_codes", level_sizes), args={"values": [True]}),
        Check(
            "in_set",
            "history_codes_in_codebook",
            sql=f"forall(histories, h -> forall(h.events, e -> {_codes_ok('e.codes', level_sizes)}))",
            args={"values": [True]},
        ),
        Check(
            "in_set",
            "cells_valid",
            sql=(
                f"{valid('user_cell_id')} AND {valid('target_cell_id')} AND "
                f"forall(neighbour_cell_ids, c -> {valid('c')}) AND "
                f"forall(histories, h -> forall(h.events, e -> {valid('e.cell_id')}))"
            ),
            args={"values": [True]},
        ),
    )


def validate_corpus(
    lake: Lake, dt: DateLike | DateRange, version: str, level_sizes: tuple[int, ...], cell_system: str
) -> list[QualityResult]:
    """The corpus suites of a day or range under one codebook version (sequences, the
    latest history state in the range, cell context)."""
    first, last = date_bounds(dt)
    scope = f"codebook_version = '{version}'"
    results = [
        validate_table(
            lake, corpus.TRAINING_SEQUENCES, dt=(first, last), where=scope,
            extra_checks=corpus_checks(level_sizes, cell_system),
        ),  # fmt: skip
        validate_table(lake, corpus.USER_HISTORY_STATE, dt=(first, last), where=scope),
    ]
    if lake.exists(corpus.CELL_CONTEXT):
        pattern = cell_id_pattern(cell_system)
        cells_valid = Check(
            "in_set",
            "cells_valid",
            sql=f"cell_id RLIKE '{pattern}' AND forall(neighbour_ids, c -> c RLIKE '{pattern}')",
            args={"values": [True]},
        )
        results.append(
            validate_table(
                lake, corpus.CELL_CONTEXT, dt=(first, last), where=f"cell_system = '{cell_system}'",
                extra_checks=(cells_valid,),
            )  # fmt: skip
        )
    return results
