"""Shared fixtures: one embedded engine session for the whole run; each test writes under tmp_path."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from geosid.config import Settings  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    """The embedded default engine (Sail), shared by every test."""
    from geosid.lake.engine import spark_session

    with spark_session(Settings(engine="sail")) as session:
        yield session


@pytest.fixture(scope="session")
def jvm_spark(spark):
    """pyspark's own JVM Spark, for conformance tests only (started on first use)."""
    from geosid.lake.engine import spark_session

    with spark_session(Settings(engine="spark-local", spark_local_master="local[2]", spark_local_driver_memory="1g")) as session:
        yield session


@pytest.fixture
def lake(spark, tmp_path):
    from geosid.lake import Lake

    return Lake(tmp_path / "lake", spark)


@pytest.fixture(scope="session")
def nyc_file() -> Path:
    from geosid.sources.registry import SHIPPED_TSMC_FILE

    if not SHIPPED_TSMC_FILE.exists():
        pytest.skip(f"shipped TSMC2014 file not found at {SHIPPED_TSMC_FILE}")
    return SHIPPED_TSMC_FILE


@pytest.fixture(scope="session")
def nyc_lines(nyc_file) -> list[bytes]:
    """The first 3,000 raw lines of the real NYC file (three days of check-ins), as bytes."""
    lines = []
    with gzip.open(nyc_file, "rb") as handle:
        for line in handle:
            lines.append(line)
            if len(lines) == 3_000:
                break
    return lines
