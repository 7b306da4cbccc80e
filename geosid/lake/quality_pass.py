"""A suite in one pass: every check's metric from one engine aggregate, decided by GX.

great-expectations evaluates a suite metric by metric, each a query of its own (a dozen
checks: a few dozen engine jobs on a day's partition, most of a small day's run). Here
the engine computes, in one aggregate over the rows, what each expectation's `_validate`
reads (the row count, the column's nulls, the unexpected count, for multi-column checks
the rows not ignored), with the same row predicates as GX's Spark metrics (uniqueness by
a count over a window partitioned by the value); a second query fetches the sample of
unexpected values of a failing check only. GX still holds the suite, decides each
expectation (its `_validate`: `mostly`, vacuous truth on no rows), builds the
validation result and renders it as Data Docs. `tests/test_quality.py` runs every
failing fixture through both paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from geosid.schemas import Check

SAMPLE = 20  # GX's partial_unexpected_count in its default SUMMARY format
RESULT_FORMAT = {"result_format": "SUMMARY"}


@dataclass(frozen=True)
class Predicates:
    """A check's row predicates over the validated frame: `unexpected` (a row GX counts
    as unexpected), `nulls` (a column check's null rows) and `kept` (a multi-column
    check's rows not ignored, GX's filtered rows)."""

    unexpected: Column
    nulls: Column | None = None
    kept: Column | None = None
    sample: Column | None = None  # what a sample shows of an unexpected row


@dataclass(frozen=True)
class Measured:
    """What the engine measured of one check: the rows validated, the unexpected rows
    among them, a column check's nulls, a multi-column check's rows not ignored, a sample
    of unexpected values, and whether the check counts by a window (uniqueness)."""

    rows: int
    unexpected: int
    nulls: int | None
    kept: int | None
    sample: list
    windowed: bool


def predicates(check: Check) -> Predicates:
    """The row predicates of GX's Spark metric for the check's kind."""
    if check.kind == "compound_unique":
        columns = [F.col(c) for c in check.args["columns"]]
        kept = ~_all_null(columns)  # GX's default ignore_row_if: all_values_are_missing
        duplicated = F.count(F.lit(1)).over(Window.partitionBy(F.struct(*columns))) > 1
        return Predicates(kept & duplicated, kept=kept, sample=F.struct(*columns))
    column = F.col(check.column)
    present = column.isNotNull()
    if check.kind == "not_null":
        return Predicates(column.isNull(), sample=column)  # its map metric is the null count itself
    if check.kind == "between":
        low, high = check.args.get("min_value"), check.args.get("max_value")
        outside = F.lit(False)
        if low is not None:
            outside = outside | (column < F.lit(low))
        if high is not None:
            outside = outside | (column > F.lit(high))
        return Predicates(present & outside, nulls=~present, sample=column)
    if check.kind == "in_set":
        return Predicates(present & ~column.isin(list(check.args["values"])), nulls=~present, sample=column)
    if check.kind == "unique":
        duplicated = F.count(F.lit(1)).over(Window.partitionBy(column)) > 1
        return Predicates(present & duplicated, nulls=~present, sample=column)
    raise ValueError(f"unknown check kind {check.kind!r}")


def within(p: Predicates, scope: Column) -> Predicates:
    """The predicates restricted to the rows in `scope`."""
    return Predicates(
        p.unexpected & scope,
        nulls=None if p.nulls is None else p.nulls & scope,
        kept=None if p.kept is None else p.kept & scope,
        sample=p.sample,
    )


def _all_null(columns: list[Column]) -> Column:
    out = F.lit(True)
    for column in columns:
        out = out & column.isNull()
    return out


def _count(predicate: Column) -> Column:
    return F.sum(F.when(F.coalesce(predicate, F.lit(False)), 1).otherwise(0))


def suite_metrics(df: DataFrame, checks: tuple[Check, ...], scope: Column | None = None) -> list[Measured]:
    """Per check, what its expectation's `_validate` reads, from one aggregate over the rows with each check's unexpected
    flag (windows where a check counts duplicates), plus one sample query per check that
    has unexpected rows. `scope`: the rows validated (default: all); the others only
    count in the windows of the uniqueness checks."""
    preds = [predicates(c) for c in checks]
    if scope is not None:
        preds = [within(p, scope) for p in preds]
    flagged = df.select("*", *(F.coalesce(p.unexpected, F.lit(False)).alias(f"_unexpected_{i}") for i, p in enumerate(preds)))
    aggregates = [F.count(F.lit(1)).alias("rows") if scope is None else _count(scope).alias("rows")]
    for i, p in enumerate(preds):
        aggregates.append(F.sum(F.col(f"_unexpected_{i}").cast("long")).alias(f"u{i}"))
        if p.nulls is not None:
            aggregates.append(_count(p.nulls).alias(f"n{i}"))
        if p.kept is not None:
            aggregates.append(_count(p.kept).alias(f"k{i}"))
    row = flagged.agg(*aggregates).collect()[0]
    out = []
    for i, (check, p) in enumerate(zip(checks, preds)):
        unexpected = int(row[f"u{i}"] or 0)
        sample = []
        if unexpected:
            values = flagged.filter(F.col(f"_unexpected_{i}")).select(p.sample.alias("v")).limit(SAMPLE).collect()
            sample = [_plain(r["v"]) for r in values]
        out.append(
            Measured(
                rows=int(row["rows"] or 0),  # a sum over no rows is null
                unexpected=unexpected,
                nulls=int(row[f"n{i}"] or 0) if p.nulls is not None else None,
                kept=int(row[f"k{i}"] or 0) if p.kept is not None else None,
                sample=sample,
                windowed=check.kind in ("unique", "compound_unique"),
            )
        )
    return out


def _plain(value):
    return value.asDict(recursive=True) if hasattr(value, "asDict") else value


def gx_metrics(expectation, measured: Measured) -> dict:
    """The metric dictionary GX's `_validate` of `expectation` reads, from `measured`."""
    metric = expectation.map_metric
    out = {
        "table.row_count": measured.rows,
        # on no rows GX's own metric is no count at all, but 0 for the uniqueness checks (a window)
        f"{metric}.unexpected_count": measured.unexpected if measured.rows or measured.windowed else None,
        f"{metric}.unexpected_values": measured.sample,
        f"{metric}.unexpected_index_list": None,
        f"{metric}.unexpected_index_query": None,
    }
    if measured.nulls is not None:
        out["column_values.nonnull.unexpected_count"] = measured.nulls
    if measured.kept is not None:
        out[f"{metric}.filtered_row_count"] = measured.kept
    return out


def decide(expectations: list, measured: list[Measured], name: str):
    """GX's suite validation result: each expectation decided by its `_validate` on the
    measured metrics."""
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult  # lazy: heavy: validation only

    results = []
    for expectation, m in zip(expectations, measured):
        decided = expectation._validate(gx_metrics(expectation, m), runtime_configuration=RESULT_FORMAT)
        results.append(
            ExpectationValidationResult(success=bool(decided["success"]), expectation_config=expectation.configuration, result=decided["result"])
        )
    passed = sum(r.success for r in results)
    statistics = {
        "evaluated_expectations": len(results),
        "successful_expectations": passed,
        "unsuccessful_expectations": len(results) - passed,
        "success_percent": 100.0 * passed / len(results) if results else None,
    }
    return ExpectationSuiteValidationResult(success=passed == len(results), results=results, suite_name=name, statistics=statistics)
