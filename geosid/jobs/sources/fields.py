"""Column helpers shared by the raw-line parsers (pure Spark expressions)."""

from __future__ import annotations

from pyspark.sql import Column, functions as F

# Spellings of "no value" found in exported text files.
NULL_TOKENS = ("", "null", "NULL", "None", "\\N", "NaN", "nan")


def split_fields(raw: str = "raw", sep: str = "\t") -> Column:
    # limit -1 keeps trailing empty fields, so "a\tb\t" has 3 fields, as in the file.
    return F.split(F.col(raw), sep, -1)


def field(fields: Column, index: int) -> Column:
    """The index-th (0-based) field, trimmed; null when the line is too short (ANSI-safe)."""
    return F.trim(F.try_element_at(fields, F.lit(index + 1)))


def is_missing(value: Column) -> Column:
    return value.isNull() | value.isin(*NULL_TOKENS)


def try_double(value: Column) -> Column:
    # NaN and infinities parse as doubles but are never valid measurements here.
    parsed = value.try_cast("double")
    return F.when(F.isnan(parsed) | (F.abs(parsed) == float("inf")), F.lit(None)).otherwise(parsed)


def outside(value: Column, low: float, high: float) -> Column:
    return (value < F.lit(low)) | (value > F.lit(high))


def first_failure(checks: list[tuple[Column, str, Column]]) -> tuple[Column, Column]:
    """(reason, detail) of the first check whose condition holds; both null when none does.

    `checks` is ordered: (condition, reason code, detail text).
    """
    reason = F.lit(None).cast("string")
    detail = F.lit(None).cast("string")
    for condition, code, text in reversed(checks):
        reason = F.when(condition, F.lit(code)).otherwise(reason)
        detail = F.when(condition, text).otherwise(detail)
    return reason, detail


def quoted(value: Column) -> Column:
    return F.concat(F.lit("'"), F.coalesce(value, F.lit("")), F.lit("'"))
