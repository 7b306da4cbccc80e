"""The SID index on a small synthetic world: fit, publish, immutability, stable SIDs."""

import datetime as dt
import json

import numpy as np
import pytest
from pyspark.sql import functions as F

from geosid.errors import GateError, ImmutableVersionError
from geosid.jobs.embed import run_embed
from geosid.jobs.geo import run_geo
from geosid.jobs.index import (
    CodebookSpec,
    Gates,
    assign_sids,
    backfill,
    fit_candidate,
    publish,
    version_row,
)
from geosid.jobs.ingest import run_ingest
from geosid.lake import Lake
from geosid.quantization.metrics import sid_quality
from geosid.schemas import index
from geosid.sources.synthetic_world import WorldConfig, write_world

DAY1, DAY2 = "2024-03-01", "2024-03-02"
SPEC = CodebookSpec(method="residual_kmeans", codes=(8, 8, 8), niter=10)


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    """Day one ingested, with geo context and embeddings; day two's raw drop waiting."""
    root = tmp_path_factory.mktemp("index")
    write_world(
        root / "raw", WorldConfig(n_days=2, n_users=300, n_stores=60, n_brands=20, start_date=DAY1, new_video_fraction_per_day=0.1), progress=False
    )
    lake = Lake(root / "lake", spark)
    run_ingest(lake, "synthetic", root / "raw", DAY1, DAY1, progress=False)
    run_geo(lake, DAY1)
    run_embed(lake, DAY1, progress=False)
    return root, lake


def test_fit_writes_version_codebooks_sids_and_quality(spark, world):
    _, lake = world
    report = fit_candidate(lake, SPEC, DAY1)
    row = version_row(lake, report.codebook_version)
    assert row["status"] == "candidate" and row["method"] == "residual_kmeans"
    assert list(row["level_sizes"]) == [8, 8, 8]
    assert row["embeddings_version"] == lake.table_version("silver.item_embeddings")
    assert row["item_geo_version"] == lake.table_version("silver.item_geo")
    sid_map = lake.read(index.SID_MAP).filter(F.col("version") == report.codebook_version).toPandas()
    n_items = lake.read("silver.item_embeddings").count()
    assert len(sid_map) == n_items == report.n_items
    assert sid_map.sid.is_unique
    # sid = codes + disambiguation digit, digits 0..n-1 within each bucket
    for _, bucket in sid_map.groupby(sid_map.codes.map(tuple)):
        assert sorted(bucket.disambiguation) == list(range(len(bucket)))
    collisions = lake.read(index.SID_COLLISIONS).filter(F.col("version") == report.codebook_version).toPandas()
    assert collisions.n_items.sum() == n_items
    quality = lake.read(index.SID_QUALITY).filter(F.col("version") == report.codebook_version).collect()[0]
    expected = sid_quality(np.array(sid_map.codes.tolist()), (8, 8, 8))
    assert quality.conflict_rate == pytest.approx(expected["conflict_rate"])
    assert quality.exclusive_rate == pytest.approx(expected["exclusive_rate"])
    assert quality.largest_bucket == expected["largest_bucket"] == collisions.n_items.max()


def test_same_inputs_same_version_and_sids(spark, world):
    _, lake = world
    first = fit_candidate(lake, SPEC, DAY1)
    sids = lake.read(index.SID_MAP).filter(F.col("version") == first.codebook_version).select("item_id", "sid").toPandas()
    second = fit_candidate(lake, SPEC, DAY1)
    again = lake.read(index.SID_MAP).filter(F.col("version") == second.codebook_version).select("item_id", "sid").toPandas()
    assert second.codebook_version == first.codebook_version
    assert sids.sort_values("item_id").reset_index(drop=True).equals(again.sort_values("item_id").reset_index(drop=True))
    other = fit_candidate(lake, CodebookSpec(method="residual_kmeans", codes=(8, 8, 8), niter=10, seed=99), DAY1)
    assert other.codebook_version != first.codebook_version


def test_fsq_and_geo_prefix_fit(spark, world):
    _, lake = world
    for method in ("residual_kmeans_fsq", "geo_prefix"):
        report = fit_candidate(lake, CodebookSpec(method=method, codes=(8, 8, 8), niter=10, fsq_epochs=30), DAY1)
        assert report.level_sizes == (8, 8, 8)
        assert lake.read(index.SID_MAP).filter(F.col("version") == report.codebook_version).count() == report.n_items


def test_publish_gates_immutability_and_stable_sids_for_new_items(spark, world):
    root, lake = world
    report = fit_candidate(lake, SPEC, DAY1)
    with pytest.raises(GateError, match="exclusive rate"):
        publish(lake, report.codebook_version, DAY1, Gates(min_exclusive_rate=1.01))
    publish(lake, report.codebook_version, DAY1, Gates(max_excess_conflict=1.0, min_exclusive_rate=0.0, min_code_usage=0.0))
    assert version_row(lake, report.codebook_version)["status"] == "published"
    with pytest.raises(ImmutableVersionError, match="published"):
        fit_candidate(lake, SPEC, DAY1)
    before = lake.read(index.SID_MAP).filter(F.col("version") == report.codebook_version).select("item_id", "sid").toPandas()

    # day two: new videos arrive; old SIDs stay, new items get SIDs that collide with nothing
    run_ingest(lake, "synthetic", root / "raw", DAY2, DAY2, progress=False)
    run_geo(lake, DAY2)
    run_embed(lake, DAY2, progress=False)
    assigned = assign_sids(lake, report.codebook_version, DAY2)
    assert assigned.new_items > 0
    after = lake.read(index.SID_MAP).filter(F.col("version") == report.codebook_version).select("item_id", "sid").toPandas()
    merged = before.merge(after, on="item_id", suffixes=("_before", "_after"))
    assert len(merged) == len(before) and (merged.sid_before == merged.sid_after).all()
    assert len(after) == len(before) + assigned.new_items and after.sid.is_unique
    # a re-run adds nothing
    assert assign_sids(lake, report.codebook_version, DAY2).new_items == 0
    assert backfill(lake, report.codebook_version, DAY1, DAY2).days[-1].new_items == 0

    # analysts' query
    lake.register_views()
    top = spark.sql(f"SELECT sid, n_items FROM sid_collisions WHERE version = '{report.codebook_version}' ORDER BY n_items DESC LIMIT 10").collect()
    assert top and top[0].n_items >= top[-1].n_items
    metrics = json.loads(version_row(lake, report.codebook_version)["metrics"])
    assert 0.0 <= metrics["conflict_rate"] <= 1.0


def _sid_rows(spark):
    import datetime as dt

    t = dt.datetime(2024, 3, 1, 9)
    existing = spark.createDataFrame(
        [
            ("v", "s", "old1", [1, 2], 0, "1-2-0", t, 0.0, 0.0, dt.date(2024, 3, 1)),
            ("v", "s", "old2", [1, 2], 1, "1-2-1", t, 0.0, 0.0, dt.date(2024, 3, 1)),
        ],
        index.SID_MAP.schema,
    )
    new = spark.createDataFrame(
        [
            ("s", "b", t + dt.timedelta(hours=2), 0.0, 0.0, [1, 2]),
            ("s", "a", t + dt.timedelta(hours=2), 0.0, 0.0, [1, 2]),
            ("s", "z", t + dt.timedelta(hours=1), 0.0, 0.0, [1, 2]),
            ("s", "c", t, 0.0, 0.0, [7, 7]),
        ],
        "source string, item_id string, first_seen timestamp, lat double, lon double, codes array<int>",
    )
    return existing, new


def test_new_items_take_the_next_digits_of_their_bucket(spark):
    from geosid.jobs.index import with_disambiguation

    existing, new = _sid_rows(spark)
    got = {r.item_id: r.sid for r in with_disambiguation(new, existing).collect()}
    # bucket 1-2 holds digits 0 and 1: new items follow by first_seen, then item id
    assert got == {"z": "1-2-2", "a": "1-2-3", "b": "1-2-4", "c": "7-7-0"}


@pytest.mark.conformance
def test_index_transforms_conform(spark, jvm_spark):
    from pyspark.testing import assertDataFrameEqual

    from geosid.jobs.index import collisions, with_disambiguation

    for transform in (lambda s: with_disambiguation(*reversed(_sid_rows(s))), lambda s: collisions(_sid_rows(s)[0])):
        on_sail, on_jvm = transform(spark), transform(jvm_spark).collect()
        assert on_jvm
        assertDataFrameEqual(on_sail, on_jvm)


def test_capacity_aware_version_keeps_code_tuples_apart_through_the_engine(spark, world):
    """A capacity-aware fit: the SID map holds the codes the tokenizer gives the training
    set in one piece (candidates per partition, resolved on the driver, crowded prefixes
    widened), and new items of a later day avoid the tuples earlier items hold."""
    from geosid.jobs.index import load_tokenizer, load_training_set

    root, lake = world
    spec = CodebookSpec(method="residual_kmeans", codes=(4, 4, 8), niter=10, capacity_aware=True)
    report = fit_candidate(lake, spec, DAY1)
    assert report.method == "residual_kmeans+capacity"
    data = load_training_set(lake, dt.date.fromisoformat(DAY1))
    tokenizer = load_tokenizer(lake, report.codebook_version)
    assert tokenizer.capacity_aware
    expected = tokenizer.encode(data.x, lat=data.keys.lat.to_numpy(), lon=data.keys.lon.to_numpy())
    sid_map = lake.read(index.SID_MAP).filter(F.col("version") == report.codebook_version).toPandas().sort_values(["source", "item_id"])
    assert np.array_equal(np.array(sid_map.codes.tolist()), expected)
    # 16 prefixes x 8 codes for ~200 items: only prefixes holding more than 8 items share a tuple
    prefix = expected[:, 0] * 4 + expected[:, 1]
    per_prefix = np.bincount(prefix, minlength=16)
    buckets = sid_map.groupby(sid_map.codes.map(tuple)).size()
    shared = [c for c, n in buckets.items() if n > 1]
    assert all(per_prefix[c[0] * 4 + c[1]] > 8 for c in shared)
    assert report.metrics["conflict_rate"] == pytest.approx(1 - len(buckets) / len(sid_map))
