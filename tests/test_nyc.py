"""Acceptance on the whole shipped NYC file: every line accounted for, re-runs change nothing."""

import pytest

from geosid.jobs.ingest import run_ingest, scan_date_range
from geosid.schemas import bronze

NYC_LINES = 182_811


@pytest.mark.slow
def test_whole_file_events_plus_rejects_equal_lines_and_rerun_is_identical(spark, lake, nyc_file):
    first, last = scan_date_range(lake, "tsmc2014", nyc_file)
    report = run_ingest(lake, "tsmc2014", nyc_file, first, last, progress=False)
    assert report.lines_landed == NYC_LINES
    assert lake.to_arrow(bronze.EVENTS).num_rows + lake.to_arrow(bronze.REJECTS).num_rows == NYC_LINES
    assert set(report.rejects_by_reason) == {"duplicate"}

    before = {spec.name: lake.to_arrow(spec) for spec in bronze.TABLES}
    run_ingest(lake, "tsmc2014", nyc_file, first, last, progress=False)
    for spec in bronze.TABLES:
        keys = [(k, "ascending") for k in spec.keys]
        assert lake.to_arrow(spec).sort_by(keys).equals(before[spec.name].sort_by(keys)), spec.name
    # the engine and deltalake alone see the same table
    assert lake.read(bronze.EVENTS).count() == before["bronze.events"].num_rows
