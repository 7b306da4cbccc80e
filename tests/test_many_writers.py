"""Many writers, one lake (bench/many_writers.py, short): three processes fire random
daily runs, repairs, maintenance with retention 0, codebook fits, a day closed and its
late arrival, and reads (SQL, status, snapshots, the report) at one lake for 90 seconds;
then every table equals runs in order, nothing is stale, no operation ended in a
traceback. (`--unguarded`, the same writers without the lease, ends with tracebacks and
tables that differ: the bench can fail.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import many_writers  # noqa: E402


@pytest.mark.slow
def test_writers_at_once_end_with_the_tables_of_runs_in_order(tmp_path):
    results = many_writers.run(workers=3, minutes=1.5, days_n=10, work=tmp_path / "work", log=lambda _: None)
    assert results["exit_codes"] == [0, 0, 0, 0]  # three writers and the reference
    assert results["tracebacks"] == 0, results["traceback_samples"]
    assert results["tables_different"] == [] and results["stale_after"] == 0
    ops = results["by_operation"]
    assert ops["daily"]["ok"] >= 5 and ops["maintain"]["ok"] + ops["repair"]["ok"] >= 1, ops  # it did write at once
    assert results["lease_acquisitions"] > results["operations"] / 2
