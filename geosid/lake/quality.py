"""Data quality: runs the suites declared beside each table's schema with great-expectations.

Suites run on Spark DataFrames (any engine) through an ephemeral GX context. Each run
writes its result as JSON plus a readable summary under `<lake>/_quality/`, renders it as
GX Data Docs under `<lake>/_quality/docs/` (see `geosid.lake.data_docs`) and returns
pass/fail, so a DAG task or the CLI can gate on it. Which suites a stage's output gets
is the stage's business (`geosid.jobs.validate`).
"""

from __future__ import annotations

import datetime as dt_
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from geosid.lake.data_docs import write_index, write_validation_page
from geosid.lake.dates import DateLike, DateRange, as_date, date_bounds
from geosid.lake.quality_pass import decide, suite_metrics
from geosid.lake.table import Lake
from geosid.schemas import Check, TableSpec

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
    gx_result: object | None = None  # GX's ExpectationSuiteValidationResult, rendered as Data Docs
    input_key: str | None = None  # the suite, filter and data files it was made over (input_key)
    cached: bool = False  # the stored result of the same validation over the same files

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
        import great_expectations as gx  # lazy: heavy (seconds to import): only validation steps need it

        # lazy: heavy (seconds to import): only validation steps need it
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


def run_checks(
    df: DataFrame, checks: tuple[Check, ...] | list[Check], name: str, *, one_pass: bool = True, scope: str | None = None
) -> tuple[bool, int, list[dict], object]:
    """Validate `df` against `checks`; returns (success, row count, per-check results, GX's
    result). `one_pass`: the engine measures every check in one aggregate and GX decides
    (geosid.lake.quality_pass); otherwise GX computes each metric itself. `scope`: a
    boolean column of `df`, the rows validated (one pass only; the other rows count for
    the uniqueness checks' windows alone)."""
    gx_ = _Gx.get()
    checks = tuple(checks)
    for check in checks:
        if check.sql:
            df = df.withColumn(check.column, F.expr(check.sql))
    expectations = [gx_.expectation(c, i) for i, c in enumerate(checks)]
    if one_pass:
        result = decide(expectations, suite_metrics(df, checks, scope=F.col(scope) if scope else None), name)
    else:
        suite = gx_.gx.ExpectationSuite(name=name, expectations=expectations)
        result = gx_.batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(suite)
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
    return bool(result.success), int(rows), outcomes, result


def write_result(lake: Lake, result: QualityResult) -> Path:
    """result.json and summary.txt under `_quality/<table>/<days>/`, the Data Docs page when
    GX's result is at hand, and the Data Docs index; returns the JSON's path."""
    folder = result_folder(lake, result.table, result.first, result.last)
    span = "whole" if result.first is None else folder.name
    folder.mkdir(parents=True, exist_ok=True)
    docs = None
    if result.gx_result is not None:
        page = write_validation_page(lake.root, result.table, span, result.gx_result)
        docs = page.relative_to(lake.root / "_quality" / "docs").as_posix()
    payload = {
        "table": result.table,
        "first": result.first.isoformat() if result.first else None,
        "last": result.last.isoformat() if result.last else None,
        "success": result.success,
        "rows": result.rows,
        "checks": result.checks,
        "docs": docs,  # relative to _quality/docs/
        "input_key": result.input_key,
    }
    (folder / "result.json").write_text(json.dumps(payload, indent=2, default=str))
    (folder / "summary.txt").write_text(result.summary() + "\n")
    write_index(lake.root)
    return folder / "result.json"


def validate_table(
    lake: Lake,
    table: str | TableSpec,
    dt: DateLike | DateRange | None = None,
    extra_checks: tuple[Check, ...] = (),
    where: str | None = None,
    *,
    added: tuple[str, DateLike] | None = None,
    one_pass: bool | None = None,
) -> QualityResult:
    """Run the table's declared suite on a day / day range (or the whole table), on the
    rows matching the SQL `where` if given. `added` (a date column, a day): of a table
    validated whole, the rows that day added, every check on them and the uniqueness
    checks against the whole table (a day that adds a key the table holds fails; what
    earlier days added was validated on their day); the result is stored as that day's.
    `one_pass`: see `run_checks` (default: the lake's `quality_evaluator`; GX's own
    metrics validate the whole table). A validation over the same files, filter and
    suite as the stored result is not run again (`stored_result`)."""
    spec = lake.spec(table)
    one_pass = lake.quality_evaluator == "one_pass" if one_pass is None else one_pass
    added = (added[0], as_date(added[1])) if added is not None and one_pass else None
    first, last = date_bounds(dt) if dt is not None else (None, None)
    checks = (*spec.checks, *extra_checks)
    key = input_key(lake, spec, first, last, where, checks, added)
    label = (added[1], added[1]) if added else (first, last)
    cached = stored_result(lake, spec.name, *label, key)
    if cached is not None:
        return cached
    df = lake.read(spec, dt=dt)
    if where:
        df = df.filter(where)
    scope = None
    if added:
        df, scope = rows_added(df, F.col(added[0]) == F.lit(added[1]), checks), ADDED
    lambdas = [c for c in checks if c.sql and "->" in c.sql]
    run = f"quality-{spec.name}"
    if lambdas:
        # Sail cannot yet bind a lambda (aggregate(vector, ...)) inside GX's filters nor
        # beside a window in one aggregate: compute such derived columns once,
        # materialized, then validate.
        for check in lambdas:
            df = df.withColumn(check.column, F.expr(check.sql))
        df = lake.checkpoint(df, run)
        checks = tuple(Check(c.kind, c.column, None, c.args) if c in lambdas else c for c in checks)
    try:
        success, rows, outcomes, gx_result = run_checks(df, checks, name=f"{spec.name}", one_pass=one_pass, scope=scope)
    finally:
        lake.drop_checkpoints(run)
    result = QualityResult(spec.name, *label, success, rows, outcomes, gx_result=gx_result, input_key=key)
    result.result_path = write_result(lake, result)
    return result


ADDED = "_geosid_added"  # the flag of the rows a day added (validate_table's `added`)


def rows_added(df: DataFrame, added: Column, checks: tuple[Check, ...]) -> DataFrame:
    """The rows `added` selects, flagged, with every other row that shares a key of a
    uniqueness check with one of them (null-safe, as GX's windows group nulls): what the
    checks of the added rows need, however large the table."""
    flagged = df.withColumn(ADDED, F.coalesce(added, F.lit(False)))
    new = flagged.filter(F.col(ADDED))
    keep = F.col(ADDED)
    for i, check in enumerate(c for c in checks if c.kind in ("unique", "compound_unique")):
        columns = [check.column] if check.kind == "unique" else list(check.args["columns"])
        keys = new.select(*(F.col(c).alias(f"_k{i}_{j}") for j, c in enumerate(columns))).distinct().withColumn(f"_m{i}", F.lit(True))
        on = [flagged[c].eqNullSafe(keys[f"_k{i}_{j}"]) for j, c in enumerate(columns)]
        flagged = flagged.join(keys, on, "left").drop(*(f"_k{i}_{j}" for j in range(len(columns))))
        keep = keep | F.coalesce(F.col(f"_m{i}"), F.lit(False))
    return flagged.filter(keep)


def input_key(
    lake: Lake, spec: TableSpec, first: dt_.date | None, last: dt_.date | None, where: str | None, checks: tuple, added: tuple | None = None
) -> str | None:
    """What a validation's result depends on: the suite, the rows' filter and the data
    files holding them (Delta files never change: the same files, the same rows). None
    where the table does not exist."""
    if not lake.exists(spec):
        return None
    files = lake.pinned_files(spec)
    part = spec.partition_by[0] if spec.partition_by else None
    paths = [
        p
        for p, values in zip(files.paths, files.partitions)
        if first is None or part != "dt" or first.isoformat() <= str(values.get("dt")) <= last.isoformat()
    ]
    suite = [(c.kind, c.column, c.sql, json.dumps(c.args, sort_keys=True, default=str)) for c in checks]
    payload = json.dumps([spec.name, str(first), str(last), where, suite, added, sorted(paths)], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def result_folder(lake: Lake, table: str, first: dt_.date | None, last: dt_.date | None) -> Path:
    if first is None:
        return lake.root / "_quality" / table
    span = f"dt={first}" if first == last else f"dt={first}_{last}"
    return lake.root / "_quality" / table / span


def stored_result(lake: Lake, table: str, first: dt_.date | None, last: dt_.date | None, key: str | None) -> QualityResult | None:
    """The stored result of the same validation over the same files (None: none, or made
    over other files, another filter or another suite): a re-run does not re-validate."""
    path = result_folder(lake, table, first, last) / "result.json"
    if key is None or not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if payload.get("input_key") != key:
        return None
    return QualityResult(table, first, last, bool(payload["success"]), int(payload["rows"]), payload["checks"], path, input_key=key, cached=True)
