import collections
import datetime as dt
import gzip

import pytest
from badlines import bad_tsmc_lines
from pyspark.sql import functions as F

from geosid.jobs.ingest import run_ingest
from geosid.schemas import bronze


def _day_of(line: bytes) -> dt.date:
    return dt.datetime.strptime(line.rstrip(b"\n").split(b"\t")[7].decode()[4:], "%b %d %H:%M:%S %z %Y").date()


@pytest.fixture
def corpus(tmp_path, nyc_lines):
    """Real lines of three days with the bad-line corpus inserted in the middle of day two."""
    days = sorted({_day_of(line) for line in nyc_lines})
    assert len(days) >= 3
    day_two = [i for i, line in enumerate(nyc_lines) if _day_of(line) == days[1]]
    at = day_two[len(day_two) // 2]
    bad = bad_tsmc_lines(nyc_lines[at].rstrip(b"\n"))
    lines = nyc_lines[:at] + [b + b"\n" for _, b in bad] + nyc_lines[at:]
    path = tmp_path / "dataset_TSMC2014_NYC.txt.gz"
    with gzip.open(path, "wb") as handle:
        handle.writelines(lines)
    expected = collections.Counter(reason for reason, _ in bad)
    # the real file already holds exact duplicates of its own; count them in
    seen = set()
    for line in nyc_lines:
        if line in seen:
            expected["duplicate"] += 1
        seen.add(line)
    return path, lines, days, expected


def test_every_line_is_an_event_or_a_reject(spark, lake, corpus):
    path, lines, days, expected = corpus
    first, last = days[0], _day_of(lines[-1])
    report = run_ingest(lake, "tsmc2014", path, first, last, progress=False)
    assert report.lines_landed == len(lines)
    assert report.events + report.rejects == len(lines)
    assert report.rejects_by_reason == dict(expected)
    rejects = lake.read(bronze.REJECTS).collect()
    assert collections.Counter(r.reason for r in rejects) == expected
    # broken lines are dated like the real line before them: day two
    assert {r.dt for r in rejects if r.reason != "duplicate"} == {days[1]}
    assert all(r.raw is not None and r.source_file == path.name for r in rejects)
    assert lake.read(bronze.EVENTS).count() == report.events


def test_rerun_of_the_range_leaves_tables_identical(spark, lake, corpus):
    path, lines, days, _ = corpus
    last = _day_of(lines[-1])
    run_ingest(lake, "tsmc2014", path, days[0], last, progress=False)
    before = {spec.name: lake.to_arrow(spec) for spec in bronze.TABLES}
    run_ingest(lake, "tsmc2014", path, days[0], last, progress=False)
    for spec in bronze.TABLES:
        after = lake.to_arrow(spec)
        keys = [(k, "ascending") for k in spec.keys]
        assert after.num_rows == before[spec.name].num_rows
        assert after.sort_by(keys).equals(before[spec.name].sort_by(keys)), spec.name


def test_a_daily_run_takes_only_its_day(spark, lake, corpus):
    path, lines, days, _ = corpus
    report = run_ingest(lake, "tsmc2014", path, days[1], days[1], progress=False)
    events = lake.read(bronze.EVENTS)
    assert {r.dt for r in events.select("dt").distinct().collect()} == {days[1]}
    in_day = sum(1 for line in lines if line.count(b"\t") == 7 and _safe_day(line) == days[1])
    assert report.lines_in_range >= in_day
    assert report.lines_out_of_range == len(lines) - report.lines_in_range
    # the run for day one afterwards leaves day two alone
    run_ingest(lake, "tsmc2014", path, days[0], days[0], progress=False)
    assert lake.read(bronze.EVENTS, dt=days[1]).count() == report.events


def _safe_day(line):
    try:
        return _day_of(line)
    except (ValueError, IndexError):
        return None


def test_event_fields_are_typed_from_the_real_line(spark, lake, corpus, nyc_lines):
    path, lines, days, _ = corpus
    run_ingest(lake, "tsmc2014", path, days[0], days[0], progress=False)
    first = nyc_lines[0].rstrip(b"\n").decode("latin-1").split("\t")
    row = lake.read(bronze.EVENTS).filter(F.col("line_no") == 1).collect()[0]
    assert row.user_id == first[0] and row.item_id == first[1]
    assert row.user_lat == pytest.approx(float(first[4])) and row.user_lon == pytest.approx(float(first[5]))
    assert row.tz_offset_min == int(first[6])
    assert row.event_ts == dt.datetime.strptime(first[7][4:], "%b %d %H:%M:%S %z %Y").replace(tzinfo=None)
    assert row.action == "checkin" and row.dt == days[0]


def test_items_take_the_median_location_and_decode_latin1(spark, lake, tmp_path):
    base = "{u}\t4b0588c0f964a5209cd622e3\t4bf58dd8d48988d1e0931735\tCaf\xe9\t{lat}\t-73.98\t-240\tTue Apr 03 18:0{m}:00 +0000 2012\n"
    text = "".join(base.format(u=u, lat=lat, m=m) for u, lat, m in [(1, 40.70, 1), (2, 40.71, 2), (3, 45.00, 3)])
    path = tmp_path / "venue.txt"
    path.write_bytes(text.encode("latin-1"))
    run_ingest(lake, "tsmc2014", path, "2012-04-03", "2012-04-03", progress=False)
    item = lake.read(bronze.ITEMS).collect()
    assert len(item) == 1
    assert item[0].category == "Caf\u00e9" and item[0].content == "Caf\u00e9"
    assert item[0].lat == pytest.approx(40.71)  # the far-off fix does not move it
    assert item[0].n_obs == 3
    assert item[0].first_seen == dt.datetime(2012, 4, 3, 18, 1)


def test_a_large_range_is_ingested_in_passes_of_whole_days_with_the_same_tables(spark, tmp_path):
    from geosid.jobs.ingest import _Landed, pass_windows
    from geosid.lake import Lake
    from geosid.sources.synthetic_world import WorldConfig, write_world

    day = dt.date(2024, 1, 1)
    landed = [_Landed("events", tmp_path, day + dt.timedelta(days=k), n) for k, n in enumerate([5, 3, 9, 1, 1])]
    assert pass_windows(landed, day, day + dt.timedelta(days=5), 8) == [
        (day, day + dt.timedelta(days=1)),
        (day + dt.timedelta(days=2), day + dt.timedelta(days=2)),
        (day + dt.timedelta(days=3), day + dt.timedelta(days=5)),
    ]
    assert pass_windows([*landed, _Landed("events", tmp_path, None, 1)], day, day, 8) == [(day, day)]  # an undated file: one pass

    config = WorldConfig(n_days=4, n_users=60, n_stores=20, n_brands=5, corrupt_rate=0.02)
    write_world(tmp_path / "raw", config, progress=False)
    first, last = config.days()[0], config.days()[-1]
    whole, passes = Lake(tmp_path / "whole", spark), Lake(tmp_path / "passes", spark)
    one = run_ingest(whole, "synthetic", tmp_path / "raw", first, last, progress=False)
    many = run_ingest(passes, "synthetic", tmp_path / "raw", first, last, progress=False, max_lines_per_pass=1)
    assert (one.passes, many.passes) == (1, 4) and many.rejects_by_reason == one.rejects_by_reason and one.rejects
    for spec in bronze.TABLES:
        assert passes.digest(spec) == whole.digest(spec), spec.name


def test_a_whole_history_file_holds_the_days_up_to_its_last_and_a_later_run_brings_the_earlier_ones(spark, tmp_path, nyc_lines):
    """A whole-history file has arrived for every day up to its last, never for a later one
    (what the sensor asks, no engine); a daily run of a day whose earlier days it holds but
    the lake never ingested (a backfill run backwards) ingests them with it."""
    from geosid import pipeline
    from geosid.config import Settings
    from geosid.errors import NotArrivedError
    from geosid.lake import Lake, lineage
    from geosid.pipeline.context import Context

    path = tmp_path / "dataset_TSMC2014_NYC.txt.gz"
    with gzip.open(path, "wb") as handle:
        handle.writelines(nyc_lines)
    days = sorted({_day_of(line) for line in nyc_lines})
    first, last = days[0], days[-1]
    ctx = Context(Settings(lake_root=tmp_path / "lake"), spark, Lake(tmp_path / "lake", spark))
    assert pipeline.drop_arrived("tsmc2014", last, path, ctx=ctx)
    assert not pipeline.drop_arrived("tsmc2014", last + dt.timedelta(days=1), path, ctx=ctx)
    with pytest.raises(NotArrivedError, match=f"holds the days up to {last} only"):
        pipeline.ingest_arrivals("tsmc2014", last + dt.timedelta(days=1), path, ctx=ctx)
    pipeline.ingest_arrivals("tsmc2014", first, path, ctx=ctx)
    outcomes = pipeline.ingest_arrivals("tsmc2014", last, path, ctx=ctx)  # the days between come with it
    assert [(o.report.first, o.report.last) for o in outcomes] == [(days[1], last - dt.timedelta(days=1)), (last, last)]
    known = lineage.input_days(ctx.lake)
    assert sorted(known.dt) == days and set(known.status) == {"complete"}
    assert pipeline.ingest_arrivals("tsmc2014", days[2], path, ctx=ctx)[-1].inputs.unchanged == [days[2]]  # a re-run: nothing new
