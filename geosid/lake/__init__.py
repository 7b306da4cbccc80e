"""The lake: Delta tables under one root (`Lake`), the engine that reads and writes them
(`spark_session`), logical dates, and the data-quality runner.

Nothing here knows a pipeline stage; jobs, the trainer and the pipeline build on it.
"""

from geosid.lake.dates import DateLike, DateRange, as_date, date_bounds, day_runs, days_between, partition_predicate
from geosid.lake.engine import spark_session
from geosid.lake.table import Lake

__all__ = ["DateLike", "DateRange", "Lake", "as_date", "date_bounds", "day_runs", "days_between", "partition_predicate", "spark_session"]
