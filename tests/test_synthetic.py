import gzip
import json

import pyarrow as pa
import pyarrow.csv as pacsv
from pyspark.sql import functions as F

from geosid.geo import haversine_km
from geosid.jobs.ingest import run_ingest
from geosid.schemas import bronze
from geosid.sources.synthetic_world import WorldConfig, write_world

SMALL = dict(n_days=3, n_users=400, n_stores=80, n_brands=30, start_date="2024-03-01")


def _read_tsv(path, names):
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    return pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
    )


def test_same_seed_same_bytes(tmp_path):
    write_world(tmp_path / "a", WorldConfig(**SMALL), progress=False)
    write_world(tmp_path / "b", WorldConfig(**SMALL), progress=False)
    write_world(tmp_path / "c", WorldConfig(**SMALL, seed=8), progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.gz"))
    assert len(files) == 6
    for rel in files:
        assert gzip.open(tmp_path / "a" / rel).read() == gzip.open(tmp_path / "b" / rel).read()
    assert gzip.open(tmp_path / "a" / files[0]).read() != gzip.open(tmp_path / "c" / files[0]).read()


def test_funnel_narrows_and_falls_with_distance(tmp_path):
    config = WorldConfig(n_days=2, n_users=3000, n_stores=400, start_date="2024-03-01")
    write_world(tmp_path, config, progress=False)
    events = _read_tsv(
        tmp_path / "events" / "dt=2024-03-01" / "events.tsv.gz",
        ["request_id", "user_id", "item_id", "action", "event_time", "user_lat", "user_lon", "gmv"],
    ).to_pandas()
    items = _read_tsv(
        tmp_path / "items" / "dt=2024-03-01" / "items.tsv.gz",
        ["item_id", "store_id", "brand", "category", "price", "lat", "lon", "title", "tags", "created_at"],
    ).to_pandas()
    counts = events["action"].value_counts()
    assert counts["watch"] > counts["click"] > counts["pay"] > 0
    # every pay has a positive GMV, nothing else has one
    assert (events.loc[events.action == "pay", "gmv"] > 0).all()
    assert events.loc[events.action != "pay", "gmv"].isna().all()
    watches = events[events.action == "watch"].merge(items[["item_id", "lat", "lon"]], on="item_id")
    clicks = set(zip(events.loc[events.action == "click", "request_id"], events.loc[events.action == "click", "item_id"]))
    watches["clicked"] = [(r, i) in clicks for r, i in zip(watches.request_id, watches.item_id)]
    watches["km"] = haversine_km(watches.user_lat, watches.user_lon, watches.lat, watches.lon)
    near = watches.loc[watches.km < 1.0, "clicked"].mean()
    far = watches.loc[watches.km > 4.0, "clicked"].mean()
    assert near > 2 * far, (near, far)
    # the user's location is a real-time one: the same user appears at several places
    per_user = events.groupby("user_id")[["user_lat", "user_lon"]].nunique()
    assert (per_user.user_lat > 1).mean() > 0.3


def test_injected_bad_lines_land_in_rejects_by_reason(spark, lake, tmp_path):
    manifest = write_world(tmp_path / "raw", WorldConfig(**SMALL, corrupt_rate=0.03), progress=False)
    assert set(manifest["corrupted"]) == {
        "wrong_column_count",
        "null_id",
        "bad_number",
        "bad_time",
        "bad_coordinate",
        "bad_value",
        "future_event",
        "late_event",
        "duplicate",
        "bad_encoding",
    }
    report = run_ingest(lake, "synthetic", tmp_path / "raw", "2024-03-01", "2024-03-03", progress=False)
    assert report.rejects_by_reason == manifest["corrupted"]
    n_item_lines = manifest["totals"]["items"]
    assert report.lines_landed == manifest["totals"]["event_lines"] + n_item_lines
    assert report.events + report.rejects + n_item_lines == report.lines_landed
    assert report.items == n_item_lines
    rejects = lake.read(bronze.REJECTS)
    by_source = {r["source"]: r["count"] for r in rejects.groupBy("source").count().collect()}
    assert by_source == {"synthetic.events": report.rejects}
    pays = lake.read(bronze.EVENTS).filter(F.col("action") == "pay")
    assert pays.filter(F.col("gmv").isNull() | (F.col("gmv") <= 0)).count() == 0


def test_manifest_counts_match_the_files(tmp_path):
    manifest = write_world(tmp_path, WorldConfig(**SMALL), progress=False)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    for day, info in manifest["days"].items():
        lines = gzip.open(tmp_path / "events" / f"dt={day}" / "events.tsv.gz").read().count(b"\n")
        assert lines == info["events"] == sum(info["actions"].values())
