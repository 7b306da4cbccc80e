"""Logical dates: every run is for an explicit day or inclusive day range."""

from __future__ import annotations

import datetime as dt_
from typing import Union

from geosid.errors import InvalidRequestError

DateLike = Union[dt_.date, str]
DateRange = tuple[DateLike, DateLike]


def as_date(value: DateLike) -> dt_.date:
    if isinstance(value, dt_.datetime):
        return value.date()
    if isinstance(value, dt_.date):
        return value
    try:
        return dt_.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidRequestError(f"not a date (YYYY-MM-DD): {value!r}") from None


def date_bounds(dt: DateLike | DateRange) -> tuple[dt_.date, dt_.date]:
    """A day or an inclusive (first, last) range, as two dates."""
    if isinstance(dt, tuple):
        first, last = as_date(dt[0]), as_date(dt[1])
    else:
        first = last = as_date(dt)
    if last < first:
        raise InvalidRequestError(f"empty date range: {first} .. {last} (the first day is after the last)")
    return first, last


def days_between(first: DateLike, last: DateLike) -> list[dt_.date]:
    """Every day of the inclusive range."""
    start, end = date_bounds((first, last))
    return [start + dt_.timedelta(days=i) for i in range((end - start).days + 1)]


def partition_predicate(column: str, dt: DateLike | DateRange) -> str:
    first, last = date_bounds(dt)
    if first == last:
        return f"{column} = DATE'{first.isoformat()}'"
    return f"{column} >= DATE'{first.isoformat()}' AND {column} <= DATE'{last.isoformat()}'"


def day_runs(days) -> list[tuple[dt_.date, dt_.date]]:
    """Days -> (first, last) of each run of consecutive days, in order."""
    runs: list[list[dt_.date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] == day - dt_.timedelta(days=1):
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return [(first, last) for first, last in runs]
