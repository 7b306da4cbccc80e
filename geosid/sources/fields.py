"""Column helpers shared by the raw-line parsers (pure Spark expressions)."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

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


def line_checks(fields: Column, expected: int) -> list[tuple[Column, str, Column]]:
    """The checks every line gets first: it decoded, and it has the expected field count."""
    n_fields = F.size(fields)
    return [
        (F.col("decode_error").isNotNull(), "bad_encoding", F.col("decode_error")),
        (
            n_fields != expected,
            "wrong_column_count",
            F.format_string(f"expected {expected} tab-separated fields, got %d", n_fields),
        ),
    ]


def number_checks(**numbers: tuple[Column, Column]) -> list[tuple[Column, str, Column]]:
    """bad_number checks for `label=(raw text, parsed value)` pairs, in the given order."""
    return [
        (parsed.isNull(), "bad_number", F.concat(F.lit(f"{label.replace('_', ' ')} is not a number: "), quoted(raw)))
        for label, (raw, parsed) in numbers.items()
    ]


def coordinate_checks(lat_raw: Column, lat: Column, lon_raw: Column, lon: Column) -> list[tuple[Column, str, Column]]:
    return [
        (outside(lat, -90, 90), "bad_coordinate", F.format_string("latitude %s outside [-90, 90]", lat_raw)),
        (outside(lon, -180, 180), "bad_coordinate", F.format_string("longitude %s outside [-180, 180]", lon_raw)),
    ]
