import datetime as dt
import json
import re

from pyspark.sql.types import StructField, StructType

from geosid.jobs.validate import validate_bronze, validate_reject_rate
from geosid.lake.quality import run_checks, validate_table
from geosid.schemas import REGISTRY, Check, bronze

DAY = dt.date(2024, 1, 1)
TS = dt.datetime(2024, 1, 1, 12, 0)


def _event(event_id, user_id="u1", lat=40.7, ts=TS, action="watch", gmv=None):
    return (event_id, "synthetic", user_id, "v1", action, ts, None, lat, -73.9, "r1", gmv, "f", 1, DAY)


def _nullable(schema: StructType) -> StructType:
    """The same columns, all nullable: lets a test write the bad rows the suites must catch."""
    return StructType([StructField(f.name, f.dataType, True) for f in schema.fields])


def _write_events(spark, lake, rows):
    df = spark.createDataFrame(rows, _nullable(bronze.EVENTS.schema))
    lake.write(df, bronze.EVENTS, dt=DAY)


def test_clean_partition_passes_and_writes_results(spark, lake):
    _write_events(spark, lake, [_event("e1"), _event("e2", action="pay", gmv=12.5)])
    result = validate_table(lake, bronze.EVENTS, dt=DAY)
    assert result.success, result.summary()
    assert result.rows == 2
    payload = json.loads(result.result_path.read_text())
    assert payload["success"] is True and payload["table"] == "bronze.events"
    assert (result.result_path.parent / "summary.txt").read_text().startswith("PASS bronze.events")
    assert result.result_path.parent.name == f"dt={DAY}"


def test_bad_rows_fail_the_checks_that_name_them(spark, lake):
    rows = [
        _event("e1"),
        _event("e1"),  # duplicate key
        _event("e3", user_id=None),
        _event("e4", lat=91.0),
        _event("e5", ts=dt.datetime(2024, 1, 2, 1, 0)),  # event date != partition
        _event("e6", action="teleport"),
        _event("e7", action="pay", gmv=-3.0),
    ]
    _write_events(spark, lake, rows)
    result = validate_table(lake, bronze.EVENTS, dt=DAY)
    assert not result.success
    failed = {c["check"].split(" ")[0] for c in result.failed}
    assert failed == {
        "unique(event_id)",
        "not_null(user_id)",
        "between(user_lat)",
        "in_set(dt_matches_event_date)",
        "in_set(action)",
        "between(gmv)",
    }
    assert "FAIL" in result.summary()
    # GX's own Data Docs page of this result: offline, naming the failing rows' values
    page = lake.root / "_quality" / "docs" / json.loads(result.result_path.read_text())["docs"]
    html = page.read_text()
    assert page.name == f"dt={DAY}.html" and "teleport" in html and "set" in html
    remote = re.findall(r"""<(?:script|link|img)\b[^>]*(?:src|href)=["']https?://""", html)
    assert not remote, f"a Data Docs page must not load anything remote: {remote}"
    index = (lake.root / "_quality" / "docs" / "index.html").read_text()
    assert "FAIL" in index and 'href="validations/bronze.events/dt=2024-01-01.html"' in index


def test_reject_rate_gate(spark, lake):
    _write_events(spark, lake, [_event(f"e{i}") for i in range(9)])
    rejects = spark.createDataFrame([("synthetic.events", "f", 99, "bad_time", "x", "raw", DAY)], bronze.REJECTS.schema)
    lake.write(rejects, bronze.REJECTS, dt=DAY)
    assert validate_reject_rate(lake, DAY, threshold=0.2).success  # 1 / 10
    assert not validate_reject_rate(lake, DAY, threshold=0.05).success


def test_validate_bronze_runs_every_suite(spark, lake):
    _write_events(spark, lake, [_event("e1")])
    for spec in (bronze.ITEMS, bronze.REJECTS):
        lake.write(spark.createDataFrame([], spec.schema), spec, dt=DAY)
    results = validate_bronze(lake, DAY, reject_rate_threshold=0.05)
    assert [r.table for r in results] == ["bronze.events", "bronze.items", "bronze.rejects", "bronze.reject_rate"]
    assert all(r.success for r in results), [r.summary() for r in results]


# one pass (the engine measures, GX decides) against GX computing every metric itself


def _both_paths(df, checks, name):
    fast = run_checks(df, checks, name, one_pass=True)
    slow = run_checks(df, checks, name, one_pass=False)
    keep = ("check", "success", "element_count", "unexpected_count")
    assert fast[:2] == slow[:2], (fast[:2], slow[:2])
    assert [{k: o[k] for k in keep} for o in fast[2]] == [{k: o[k] for k in keep} for o in slow[2]]
    # the samples: as many unexpected values (which ones: whatever order the engine reads them in)
    assert [len(o["sample"]) for o in fast[2]] == [len(o["sample"]) for o in slow[2]]
    return fast


EDGES = (
    Check("not_null", "a"),
    Check("between", "x", args={"min_value": 0, "max_value": 10}),
    Check("between", "x", args={"min_value": 0}),
    Check("between", "x", args={"max_value": 5}),
    Check("in_set", "s", args={"values": ["p", "q"]}),
    Check("in_set", "flag", sql="x > 2", args={"values": [True]}),
    Check("unique", "a"),
    Check("compound_unique", args={"columns": ["a", "s"]}),
    Check("compound_unique", args={"columns": ["s", "x"]}),
)


def test_one_pass_decides_every_check_kind_as_gx_does(spark):
    rows = [("k1", 1.0, "p"), ("k1", 3.0, "p"), (None, -2.0, "q"), (None, None, None), ("k4", 11.0, "r"), ("k5", 12.0, None), ("k6", 4.0, "q")]
    df = spark.createDataFrame(rows, "a string, x double, s string")
    success, count, outcomes, _ = _both_paths(df, EDGES, "edges")
    assert not success and count == len(rows)
    assert [o["unexpected_count"] for o in outcomes] == [2, 3, 1, 2, 1, 2, 2, 2, 0]
    assert all(o["success"] for o in _both_paths(df.limit(0), EDGES, "empty")[2])  # no rows: vacuously true
    clean = spark.createDataFrame([("k1", 1.0, "p"), ("k2", 4.0, "q")], "a string, x double, s string")
    assert _both_paths(clean, EDGES[:2] + EDGES[4:5] + EDGES[6:], "clean")[0]


def test_one_pass_fails_the_fixtures_gx_fails(spark, lake):
    # the bad events of the test above, and the derived (sql) checks of the bronze suite
    rows = [_event("e1"), _event("e1"), _event("e3", user_id=None), _event("e4", lat=91.0), _event("e6", action="teleport")]
    rows += [_event("e5", ts=dt.datetime(2024, 1, 2, 1, 0)), _event("e7", action="pay", gmv=-3.0)]
    events = spark.createDataFrame(rows, _nullable(bronze.EVENTS.schema))
    assert not _both_paths(events, bronze.EVENTS.checks, "bronze.events")[0]
    # every table's declared suite on rows of its schema that break it: nulls everywhere, keys repeated
    for spec in REGISTRY:
        if not spec.checks:
            continue
        bad = spark.createDataFrame([tuple(None for _ in spec.columns)] * 2, _nullable(spec.schema))
        _both_paths(bad, spec.checks, spec.name)


def test_a_validation_over_the_same_files_is_not_run_again(spark, lake, monkeypatch):
    from geosid.lake import quality

    _write_events(spark, lake, [_event("e1"), _event("e2")])
    first = validate_table(lake, bronze.EVENTS, dt=DAY)
    calls = []
    real = quality.run_checks
    monkeypatch.setattr(quality, "run_checks", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = validate_table(lake, bronze.EVENTS, dt=DAY)
    assert again.cached and not calls and (again.success, again.rows, again.checks) == (first.success, first.rows, first.checks)
    assert not validate_table(lake, bronze.EVENTS, dt=DAY, where="user_id = 'u1'").cached  # another filter
    _write_events(spark, lake, [_event("e1"), _event("e1")])  # the day rewritten: new files, a duplicate
    rewritten = validate_table(lake, bronze.EVENTS, dt=DAY)
    assert not rewritten.cached and not rewritten.success and calls


def test_the_rows_a_day_added_are_checked_and_their_keys_against_the_whole_table(spark, lake):
    day2 = DAY + dt.timedelta(days=1)
    ts2 = dt.datetime(2024, 1, 2, 12, 0)
    earlier = [_event("e1"), _event("e2", lat=91.0), _event("e2")]  # day 1 holds a bad latitude and a duplicate
    later = [
        (*_event("e1", ts=ts2)[:-1], day2),  # a key day 1 holds
        (*_event("e9", ts=ts2, action="teleport")[:-1], day2),
        (*_event(None, ts=ts2)[:-1], day2),
    ]
    spark_rows = spark.createDataFrame(earlier + later, _nullable(bronze.EVENTS.schema))
    lake.write(spark_rows, bronze.EVENTS, dt=(DAY, day2))
    result = validate_table(lake, bronze.EVENTS, added=("dt", day2))
    assert (result.first, result.last, result.rows) == (day2, day2, 3) and result.result_path.parent.name == f"dt={day2}"
    failed = {c["check"].split(" ")[0]: c["unexpected_count"] for c in result.failed}
    # the day's rows: its teleport, its null key, and its e1 that day 1 holds (day 1's own rows: not counted)
    assert failed == {"unique(event_id)": 1, "in_set(action)": 1, "not_null(event_id)": 1}, failed
    nothing = validate_table(lake, bronze.EVENTS, added=("dt", day2 + dt.timedelta(days=1)))  # a day that added no rows
    assert nothing.success and nothing.rows == 0
    whole = validate_table(lake, bronze.EVENTS, one_pass=False)  # GX over the whole table counts every duplicate
    assert {c["check"].split(" ")[0]: c["unexpected_count"] for c in whole.failed}["unique(event_id)"] == 4
