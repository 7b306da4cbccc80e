"""Every pure transform gives the same rows on Sail and on JVM Spark."""

import datetime as dt

import pyarrow.parquet as pq
import pytest
from badlines import bad_tsmc_lines
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from geosid.jobs import ingest
from geosid.jobs.validate import reject_rates
from geosid.sources import synthetic, synthetic_world, tsmc2014
from geosid.sources.landing import discover, land

pytestmark = pytest.mark.conformance

FIRST, LAST = dt.date(2012, 4, 3), dt.date(2012, 4, 30)  # covers every landed line


@pytest.fixture(scope="module")
def tsmc_landed(tmp_path_factory, nyc_lines):
    folder = tmp_path_factory.mktemp("tsmc")
    bad = [b + b"\n" for _, b in bad_tsmc_lines(nyc_lines[500].rstrip(b"\n"))]
    raw = folder / "dataset_TSMC2014_NYC.txt"
    raw.write_bytes(b"".join(nyc_lines[:1000] + bad + nyc_lines[1000:]))
    out, _ = land(discover(raw), "tsmc2014", tsmc2014.ENCODING, folder / "landed", progress=False)
    return pq.read_table(out)


@pytest.fixture(scope="module")
def synthetic_landed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    config = synthetic_world.WorldConfig(n_days=2, n_users=150, n_stores=40, n_brands=10, start_date="2012-04-03", corrupt_rate=0.05)
    synthetic_world.write_world(folder / "raw", config, progress=False)
    landed = {}
    for feed, kind in ((synthetic.EVENTS_FEED, "events"), (synthetic.ITEMS_FEED, "items")):
        out, _ = land(discover(folder / "raw" / kind), feed, synthetic.ENCODING, folder / kind, progress=False)
        landed[kind] = pq.read_table(out)
    return landed


def both(spark, jvm_spark, arrow, transform):
    """Run `transform` on the same input on both engines: (sail result, jvm rows)."""
    on_sail = transform(spark.createDataFrame(arrow))
    on_jvm = transform(jvm_spark.createDataFrame(arrow)).collect()
    return on_sail, on_jvm


def classified(df, parse):
    return df.transform(parse).transform(ingest.classify, first=FIRST, last=LAST)


def test_tsmc_parse_and_classify(spark, jvm_spark, tsmc_landed):
    on_sail, on_jvm = both(spark, jvm_spark, tsmc_landed, lambda df: classified(df, tsmc2014.parse))
    assert len(on_jvm) == tsmc_landed.num_rows
    assertDataFrameEqual(on_sail, on_jvm)
    reasons = {r.reason for r in on_jvm}
    assert {"bad_encoding", "wrong_column_count", "null_id", "bad_number", "bad_time", "bad_coordinate", "duplicate", None} <= reasons


def test_tsmc_events_rejects_items(spark, jvm_spark, tsmc_landed):
    def events(df):
        return classified(df, tsmc2014.parse).transform(ingest.to_events, dataset="tsmc2014")

    def rejects(df):
        return classified(df, tsmc2014.parse).transform(ingest.to_rejects)

    def items(df):
        valid = classified(df, tsmc2014.parse).filter(F.col("reason").isNull())
        return tsmc2014.items_from_checkins(valid)

    for transform in (events, rejects, items):
        on_sail, on_jvm = both(spark, jvm_spark, tsmc_landed, transform)
        assert on_jvm, transform.__name__
        assertDataFrameEqual(on_sail, on_jvm)


def test_synthetic_events_and_items(spark, jvm_spark, synthetic_landed):
    def events(df):
        return classified(df, synthetic.parse_events).transform(ingest.to_events, dataset="synthetic")

    def event_rejects(df):
        return classified(df, synthetic.parse_events).transform(ingest.to_rejects)

    def items(df):
        valid = classified(df, synthetic.parse_items).filter(F.col("reason").isNull())
        return synthetic.items_from_catalog(valid)

    for arrow, transform in ((synthetic_landed["events"], events), (synthetic_landed["events"], event_rejects), (synthetic_landed["items"], items)):
        on_sail, on_jvm = both(spark, jvm_spark, arrow, transform)
        assert on_jvm, transform.__name__
        assertDataFrameEqual(on_sail, on_jvm)


def test_reject_rates(spark, jvm_spark):
    events = [(dt.date(2024, 1, 1),)] * 3 + [(dt.date(2024, 1, 2),)]
    rejects = [(dt.date(2024, 1, 1),), (dt.date(2024, 1, 3),)]

    def run(session):
        return reject_rates(session.createDataFrame(events, "dt date"), session.createDataFrame(rejects, "dt date"))

    on_sail, on_jvm = run(spark), run(jvm_spark).collect()
    assertDataFrameEqual(on_sail, on_jvm)
    rates = {r.dt: r.reject_rate for r in on_jvm}
    assert rates == {dt.date(2024, 1, 1): 0.25, dt.date(2024, 1, 2): 0.0, dt.date(2024, 1, 3): 1.0}


def test_geo_context_and_documents(spark, jvm_spark, tmp_path):
    """geo_cells, item_geo and documents on the tiny city, on both engines."""
    import pyarrow as pa
    from test_geo import D, write_city

    from geosid.embedding.documents import documents
    from geosid.geo import GeohashCells
    from geosid.jobs import geo
    from geosid.lake import Lake
    from geosid.schemas import bronze

    lake = Lake(tmp_path / "lake", spark)
    write_city(spark, lake)
    items_arrow: pa.Table = lake.to_arrow(bronze.ITEMS)
    events_arrow: pa.Table = lake.to_arrow(bronze.EVENTS)
    cells = GeohashCells(6)

    def run(session) -> list[pa.Table]:
        """geo_cells, item_geo and documents; each stage's rows are collected once and
        fed to the next (JVM Spark would compute geo_cells again for every later stage)."""
        items = geo.item_states(session.createDataFrame(items_arrow), D, D).transform(geo.with_cells, cells=cells)
        events = session.createDataFrame(events_arrow).transform(geo.with_cells, cells=cells, lat="user_lat", lon="user_lon")
        cells_rows = geo.geo_cells(items, events, cells, D, D, 28, 5).toArrow()
        item_rows = geo.item_geo(items.drop("dt"), session.createDataFrame(cells_rows), cells, D).toArrow()
        return [cells_rows, item_rows, documents(session.createDataFrame(item_rows)).toArrow()]

    for stage, on_sail, on_jvm in zip(("cells", "items", "documents"), run(spark), run(jvm_spark)):
        assert on_jvm.num_rows, stage
        assertDataFrameEqual(spark.createDataFrame(on_sail), spark.createDataFrame(on_jvm))


@pytest.mark.conformance
@pytest.mark.slow
def test_the_pipeline_on_jvm_spark_gives_the_tables_of_the_embedded_engine(spark, jvm_spark, tmp_path):
    """Ingest -> geo -> embed -> codebook -> assign -> corpus on a small synthetic world, once
    on Sail and once on JVM Spark (no delta-spark: delta-rs commits, the snapshot's files
    are read as Parquet); every table's digest must agree."""
    from engine_flow import run_flow, table_digests, write_small_world

    from geosid.config import Settings

    raw = write_small_world(tmp_path / "raw")
    on_sail = run_flow(spark, Settings(lake_root=tmp_path / "sail", engine="sail"), raw)
    jvm = Settings(lake_root=tmp_path / "jvm", engine="spark-local")
    assert jvm.reader() == "files"
    on_jvm = run_flow(jvm_spark, jvm, raw)
    expected = table_digests(spark, on_sail)
    assert {"silver.item_embeddings", "index.sid_map", "corpus.user_history_state"} <= set(expected)
    assert table_digests(spark, on_jvm) == expected
    # JVM Spark's staged Parquet (microsecond timestamps) is committed as written, not rewritten
    from deltalake import DeltaTable

    events = DeltaTable(str(on_jvm / "bronze" / "events")).history()
    assert any(entry.get("geosid.operation") == "replace" for entry in events)


@pytest.mark.conformance
def test_six_decimals_are_the_same_text_on_both_engines(spark, jvm_spark):
    """The location line of geo documents: format_string rounded differently on the two
    engines (one NYC venue in 34k); fixed6 is integer arithmetic on the same double."""
    import math

    from pyspark.sql import functions as F

    from geosid.embedding.documents import fixed6

    values = [-73.9774375, -73.97743749999999, 40.7843505, 5e-07, -4e-07, 179.9999995, 12.3456785, 0.0, None]

    def reference(v):
        if v is None:
            return None
        micro = math.floor(abs(v) * 1e6 + 0.5)
        return f"{'-' if v < 0 else ''}{micro // 10**6}.{micro % 10**6:06d}"

    for session in (spark, jvm_spark):
        frame = session.createDataFrame(list(enumerate(values)), "k long, v double")
        got = [r.s for r in frame.select("k", fixed6(F.col("v")).alias("s")).orderBy("k").collect()]
        assert got == [reference(v) for v in values]
