"""Validate: which data-quality suites each stage's output gets, and the gates.

The suites themselves are declared beside the schemas (`geosid.schemas`); the runner is
`geosid.lake.quality`. Here: bronze (with the reject-rate gate), silver and the SID map,
and the corpus (with the checks that depend on the codebook version and cell system).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from geosid.geo.geometry import cells_from_name
from geosid.lake.dates import DateLike, DateRange, date_bounds
from geosid.lake.quality import QualityResult, run_checks, validate_table, write_result
from geosid.lake.table import Lake
from geosid.schemas import Check, bronze, corpus, index, silver
from geosid.schemas.corpus import protocol_predicate


def reject_rates(events: DataFrame, rejects: DataFrame) -> DataFrame:
    """Per day: accepted events, rejected lines and the reject rate (rejected / all lines)."""
    accepted = events.groupBy("dt").agg(F.count(F.lit(1)).alias("n_events"))
    rejected = rejects.groupBy("dt").agg(F.count(F.lit(1)).alias("n_rejects"))
    joined = accepted.join(rejected, "dt", "full_outer").na.fill(0, ["n_events", "n_rejects"])
    return joined.withColumn("reject_rate", F.col("n_rejects") / F.greatest(F.col("n_events") + F.col("n_rejects"), F.lit(1)))


def validate_reject_rate(lake: Lake, dt: DateLike | DateRange, threshold: float) -> QualityResult:
    """Gate: for every day in `dt`, rejected lines / all lines <= threshold."""
    first, last = date_bounds(dt)
    rates = reject_rates(lake.read(bronze.EVENTS, dt=dt), lake.read(bronze.REJECTS, dt=dt))
    check = Check("between", "reject_rate", args={"min_value": 0.0, "max_value": threshold})
    success, rows, outcomes, gx_result = run_checks(rates, [check], name="bronze.reject_rate", one_pass=lake.quality_evaluator == "one_pass")
    result = QualityResult("bronze.reject_rate", first, last, success, rows, outcomes, gx_result=gx_result)
    result.result_path = write_result(lake, result)
    return result


def validate_bronze(lake: Lake, dt: DateLike | DateRange, reject_rate_threshold: float) -> list[QualityResult]:
    """All bronze suites for a day or range, plus the reject-rate gate."""
    results = [validate_table(lake, spec, dt=dt) for spec in bronze.TABLES]
    results.append(validate_reject_rate(lake, dt, reject_rate_threshold))
    return results


def validate_silver(lake: Lake, dt: DateLike) -> list[QualityResult]:
    """The geo context suites for a day; the embeddings and SID map suites on the rows
    the day added (their keys unique across the tables)."""
    results = [validate_table(lake, spec, dt=dt) for spec in (silver.GEO_CELLS, silver.ITEM_GEO)]
    results.append(validate_table(lake, silver.ITEM_EMBEDDINGS, added=("embedded_dt", dt)))
    if lake.exists(index.SID_MAP):
        results.append(validate_table(lake, index.SID_MAP, added=("assigned_dt", dt)))
    return results


def cell_id_pattern(cell_system: str) -> str:
    """A regex every valid cell id of the named system (geohash<P> / h3r<R>) matches."""
    return cells_from_name(cell_system).id_pattern()


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
    lake: Lake,
    dt: DateLike | DateRange,
    codebook_version: str,
    level_sizes: tuple[int, ...],
    cell_system: str,
    protocol: str = "time",
) -> list[QualityResult]:
    """The corpus suites of a day or range under one codebook version and split protocol
    (sequences; the latest history state in the range, for the time protocol; cell context)."""

    first, last = date_bounds(dt)
    scope = f"codebook_version = '{codebook_version}'"
    results = [
        validate_table(
            lake,
            corpus.TRAINING_SEQUENCES,
            dt=(first, last),
            where=f"{scope} AND {protocol_predicate(protocol)}",
            extra_checks=corpus_checks(level_sizes, cell_system),
        ),
    ]
    if protocol == "time":
        days = f"dt >= DATE'{first.isoformat()}' AND dt <= DATE'{last.isoformat()}'"
        results.append(validate_table(lake, corpus.USER_HISTORY_STATE, where=f"{scope} AND {days}"))
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
                lake,
                corpus.CELL_CONTEXT,
                dt=(first, last),
                where=f"cell_system = '{cell_system}'",
                extra_checks=(cells_valid,),
            )
        )
    return results


def migration_accounting(lake: Lake, from_version: str, to_version: str) -> DataFrame:
    """One row per item of either version's SID map, or of the migration rows, with
    `accounted`: the item has exactly one migration row, whose SIDs are the maps' own and
    whose kind says which maps hold it."""
    maps = lake.read(index.SID_MAP)
    old = maps.filter(F.col("version") == from_version).select("source", "item_id", F.col("sid").alias("map_old"))
    new = maps.filter(F.col("version") == to_version).select("source", "item_id", F.col("sid").alias("map_new"))
    rows = (
        lake.read(index.SID_MIGRATION)
        .filter(F.col("to_version") == to_version)
        .groupBy("source", "item_id")
        .agg(F.count(F.lit(1)).alias("rows"), F.first("old_sid").alias("old_sid"), F.first("new_sid").alias("new_sid"), F.first("kind").alias("kind"))
    )
    same = lambda a, b: F.coalesce(F.col(a) == F.col(b), F.col(a).isNull() & F.col(b).isNull())  # noqa: E731
    accounted = (F.coalesce(F.col("rows"), F.lit(0)) == 1) & same("old_sid", "map_old") & same("new_sid", "map_new")
    return (
        old.join(new, ["source", "item_id"], "full_outer")
        .join(rows, ["source", "item_id"], "full_outer")
        .select("source", "item_id", accounted.alias("accounted"))
    )


def validate_migration(lake: Lake, from_version: str, to_version: str) -> list[QualityResult]:
    """The migration's suites: its own checks (one row per item, kinds, SIDs that fit the
    kind), the per-level code map's, and that every item of both versions is accounted for
    exactly once with its SIDs."""
    where = f"to_version = '{to_version}'"
    results = [validate_table(lake, index.SID_MIGRATION, where=where), validate_table(lake, index.SID_CODE_MAP, where=where)]
    name = f"{index.SID_MIGRATION.name}.accounting"
    checks = (Check("in_set", "accounted", args={"values": [True]}), Check("compound_unique", args={"columns": ["source", "item_id"]}))
    frame = migration_accounting(lake, from_version, to_version)
    success, rows, outcomes, gx_result = run_checks(frame, checks, name=name, one_pass=lake.quality_evaluator == "one_pass")
    result = QualityResult(name, None, None, success, rows, outcomes, gx_result=gx_result)
    result.result_path = write_result(lake, result)
    results.append(result)
    return results
