import datetime as dt

import pytest
from pyspark.sql.types import ArrayType, DateType, DoubleType, LongType, StringType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from geosid.errors import SchemaMismatchError
from geosid.lake import Lake
from geosid.schemas import Registry, TableSpec

D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)

VISITS = TableSpec(
    name="test.visits",
    schema=StructType(
        [
            StructField("visit_id", LongType()),
            StructField("source", StringType()),
            StructField("tags", ArrayType(StringType())),
            StructField("dt", DateType()),
        ]
    ),
    partition_by=("dt",),
    keys=("visit_id",),
)
FLAT = TableSpec(
    name="test.flat",
    schema=StructType([StructField("k", LongType()), StructField("dt", DateType())]),
    partition_by=("dt",),
)
REGISTRY = Registry([VISITS, FLAT])
SCHEMA = "visit_id long, source string, tags array<string>, dt date"


@pytest.fixture(params=["delta-rs", "spark"])
def committer(request):
    return request.param


@pytest.fixture
def test_lake(spark, tmp_path):
    return Lake(tmp_path / "lake", spark, registry=REGISTRY)


def rows(spark, data):
    return spark.createDataFrame(data, SCHEMA)


def test_write_replaces_exactly_one_day(spark, test_lake):
    test_lake.write(rows(spark, [(1, "a", ["x"], D1), (2, "a", ["y"], D2)]), "test.visits", dt=(D1, D2))
    test_lake.write(rows(spark, [(3, "a", ["z"], D2)]), "test.visits", dt=D2)
    got = test_lake.read("test.visits").orderBy("visit_id")
    assertDataFrameEqual(got, rows(spark, [(1, "a", ["x"], D1), (3, "a", ["z"], D2)]))
    assert [r.visit_id for r in test_lake.read("test.visits", dt=D1).collect()] == [1]


def test_rerun_gives_identical_content_and_new_version(spark, test_lake):
    data = [(1, "a", ["x"], D1), (2, "b", [], D1)]
    v1 = test_lake.write(rows(spark, data), "test.visits", dt=D1)
    first = test_lake.to_arrow("test.visits").sort_by("visit_id")
    v2 = test_lake.write(rows(spark, data), "test.visits", dt=D1)
    assert v2 == v1 + 1
    assert test_lake.to_arrow("test.visits").sort_by("visit_id").equals(first)
    # time travel: the table as of the first write
    assertDataFrameEqual(test_lake.read("test.visits", version=v1), rows(spark, data))


def test_where_narrows_the_replace_to_one_source(spark, test_lake):
    test_lake.write(rows(spark, [(1, "a", ["x"], D1), (2, "b", ["y"], D1)]), "test.visits", dt=D1)
    test_lake.write(rows(spark, [(3, "a", ["z"], D1)]), "test.visits", dt=D1, where="source = 'a'")
    assert sorted(r.visit_id for r in test_lake.read("test.visits").collect()) == [2, 3]


def test_empty_write_clears_the_day(spark, test_lake):
    test_lake.write(rows(spark, [(1, "a", ["x"], D1), (2, "a", ["y"], D2)]), "test.visits", dt=(D1, D2))
    test_lake.write(rows(spark, []), "test.visits", dt=D1)
    assert [r.visit_id for r in test_lake.read("test.visits").collect()] == [2]


def test_row_outside_the_day_fails_atomically(spark, tmp_path, committer):
    lake = Lake(tmp_path / committer, spark, registry=REGISTRY, committer=committer)
    flat = "k long, dt date"
    lake.write(spark.createDataFrame([(1, D1)], flat), "test.flat", dt=D1)
    version = lake.table_version("test.flat")
    with pytest.raises(Exception, match="outside the replaced rows"):
        lake.write(spark.createDataFrame([(2, D1), (3, D3)], flat), "test.flat", dt=D1)
    assert lake.table_version("test.flat") == version
    assert [r.k for r in lake.read("test.flat").collect()] == [1]


def test_both_committers_write_the_same_table(spark, tmp_path, committer):
    lake = Lake(tmp_path / committer, spark, registry=REGISTRY, committer=committer)
    flat = "k long, dt date"
    lake.write(spark.createDataFrame([(1, D1), (2, D2)], flat), "test.flat", dt=(D1, D2))
    lake.write(spark.createDataFrame([(5, D2)], flat), "test.flat", dt=D2)
    assert sorted(lake.to_arrow("test.flat").column("k").to_pylist()) == [1, 5]


@pytest.mark.parametrize(
    "schema, data, message",
    [
        ("visit_id long, source string, dt date", [(1, "a", D1)], "column 'tags' is missing"),
        ("visit_id int, source string, tags array<string>, dt date", [(1, "a", [], D1)], "column 'visit_id' has type int, table expects bigint"),
        (
            "visit_id long, source string, tags array<string>, dt date, extra string",
            [(1, "a", [], D1, "x")],
            "column 'extra' is not in the table's schema",
        ),
    ],
)
def test_schema_mismatch_names_the_column(spark, test_lake, schema, data, message):
    with pytest.raises(SchemaMismatchError, match=message):
        test_lake.write(spark.createDataFrame(data, schema), "test.visits", dt=D1)
    assert not test_lake.exists("test.visits") or test_lake.to_arrow("test.visits").num_rows == 0


def test_partitioned_write_needs_a_date(spark, test_lake):
    with pytest.raises(ValueError, match="pass dt="):
        test_lake.write(rows(spark, [(1, "a", [], D1)]), "test.visits")


def test_history_and_version(spark, test_lake):
    test_lake.write(rows(spark, [(1, "a", ["x"], D1)]), "test.visits", dt=D1)
    test_lake.write(rows(spark, [(2, "a", ["x"], D2)]), "test.visits", dt=D2)
    history = test_lake.history("test.visits")
    assert test_lake.table_version("test.visits") == 2
    assert [h["operation"] for h in history] == ["WRITE", "WRITE", "CREATE TABLE"]
    assert "2024-01-02" in history[0]["operationParameters"]["predicate"]


def test_outside_clients_read_what_geosid_wrote(spark, test_lake):
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    data = [(1, "a", ["x", "y"], D1), (2, "b", [], D2), (3, "c", None, D2)]
    test_lake.write(rows(spark, data), "test.visits", dt=(D1, D2))
    expected = sorted((r[0], r[1], r[2], r[3]) for r in data)
    path = test_lake.path("test.visits")

    by_deltalake = DeltaTable(path).to_pyarrow_table().to_pylist()
    assert sorted((r["visit_id"], r["source"], r["tags"], r["dt"]) for r in by_deltalake) == expected

    by_polars = pl.read_delta(path).sort("visit_id").rows()
    assert sorted(by_polars) == expected

    con = duckdb.connect()
    arrow = DeltaTable(path).to_pyarrow_dataset()  # noqa: F841  (duckdb scans it by name)
    by_duckdb = con.execute("SELECT visit_id, source, tags, dt FROM arrow ORDER BY visit_id").fetchall()
    assert by_duckdb == expected


def test_a_column_added_to_the_registry_reads_as_null_then_is_written(spark, tmp_path):
    """Additive schema evolution: a lake written before a column was registered keeps
    working; old rows read the new column as null, the next write adds it."""
    old = Lake(tmp_path / "lake", spark, registry=REGISTRY)
    old.write(rows(spark, [(1, "a", ["x"], D1)]), "test.visits", dt=D1)
    fields = [*VISITS.schema.fields[:-1], StructField("score", DoubleType()), VISITS.schema.fields[-1]]
    newer = TableSpec(name="test.visits", schema=StructType(fields), partition_by=("dt",), keys=("visit_id",))
    lake = Lake(tmp_path / "lake", spark, registry=Registry([newer, FLAT]))
    assert [r.score for r in lake.read("test.visits").collect()] == [None]
    lake.write(
        spark.createDataFrame([(2, "a", [], 0.5, D2)], "visit_id long, source string, tags array<string>, score double, dt date"),
        "test.visits",
        dt=D2,
    )
    assert sorted((r.visit_id, r.score) for r in lake.read("test.visits").collect()) == [(1, None), (2, 0.5)]
    assert "score" in lake.to_arrow("test.visits").column_names


# ---- direct commits: the engine's staged files committed as they are -----------------


def test_predicates_parse_into_clauses_and_decide_files_from_their_facts():
    from geosid.lake.predicate import ALL, NONE, SOME, Atom, ColumnFacts, parse, verdict

    clauses = parse("(dt >= DATE'2024-01-01' AND dt <= DATE'2024-01-03') AND (source = 'a' AND (protocol = 'time' OR protocol IS NULL))")
    assert clauses == [
        [Atom("dt", ">=", ("2024-01-01",))],
        [Atom("dt", "<=", ("2024-01-03",))],
        [Atom("source", "=", ("a",))],
        [Atom("protocol", "=", ("time",)), Atom("protocol", "is_null")],
    ]
    assert parse("source IN ('a', 'b')") == [[Atom("source", "in", ("a", "b"))]]
    assert parse(None) == [] and parse("lower(source) = 'a'") is None and parse("n > 3") is None
    facts = lambda source, protocol=("time", "time", 0): {
        "dt": ColumnFacts.constant("2024-01-02", 10),
        "source": ColumnFacts(source[0], source[1], source[2], 10),
        "protocol": ColumnFacts(*protocol, 10),
    }
    assert verdict(clauses, facts(("a", "a", 0))) == ALL
    assert verdict(clauses, facts(("b", "c", 0))) == NONE  # another source
    assert verdict(clauses, facts(("a", "b", 0))) == SOME  # both sources in one file
    assert verdict(clauses, facts(("a", "a", 1))) == SOME  # a null source
    assert verdict(clauses, facts(("a", "a", 0), (None, None, 10))) == ALL  # protocol IS NULL on every row
    assert verdict(clauses, {**facts(("a", "a", 0)), "dt": ColumnFacts.constant("2024-01-04", 10)}) == NONE
    assert verdict(clauses, {"dt": ColumnFacts.constant("2024-01-02", 10)}) == SOME  # no statistics: unknown
    numbers = parse("user_bucket IN (3, 11)")  # integers: decided only on a one-valued column
    assert [verdict(numbers, {"user_bucket": ColumnFacts.constant(v, 10)}) for v in ("11", "1", "3")] == [ALL, NONE, ALL]
    assert verdict(numbers, {"user_bucket": ColumnFacts("1", "4", 0, 10)}) == SOME  # "11" sorts inside as text
    long = "x" * 40  # a long string statistic may be truncated by the writer: never trusted for ALL
    assert verdict(parse(f"source = '{long}'"), {"source": ColumnFacts(long, long, 0, 10)}) == SOME


def test_a_write_commits_the_engines_files_without_rewriting_them(spark, test_lake, monkeypatch):
    import deltalake

    test_lake.write(rows(spark, [(1, "a", ["x"], D1), (2, "a", ["y"], D2)]), "test.visits", dt=(D1, D2), where="source = 'a'")
    test_lake.write(rows(spark, [(5, "b", ["q"], D1)]), "test.visits", dt=D1, where="source = 'b'")

    def no_rewrite(*args, **kwargs):
        raise AssertionError("the staged rows were read back and rewritten")

    monkeypatch.setattr(deltalake, "write_deltalake", no_rewrite)
    version = test_lake.write(rows(spark, [(3, "a", ["z"], D1)]), "test.visits", dt=D1, where="source = 'a'")
    got = test_lake.to_arrow("test.visits").sort_by("visit_id")
    assert got["visit_id"].to_pylist() == [2, 3, 5]  # a's D1 file replaced, b's kept, D2 untouched
    entry = test_lake.history("test.visits")[0]
    assert entry["version"] == version and "source = 'a'" in entry["operationParameters"]["predicate"]
    stats = pa_add_actions(test_lake.path("test.visits"))
    assert all(n is not None for n in stats["num_records"]) and sorted(stats["min.source"]) == ["a", "a", "b"]
    with pytest.raises(ValueError, match="outside the replaced rows"):  # still refused, through the rewrite
        monkeypatch.undo()
        test_lake.write(rows(spark, [(4, "c", [], D1)]), "test.visits", dt=D1, where="source = 'a'")
    assert test_lake.to_arrow("test.visits")["visit_id"].to_pylist() != [] and test_lake.table_version("test.visits") == version


def pa_add_actions(path):
    import pyarrow as pa
    from deltalake import DeltaTable

    return pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pydict()


def test_a_file_mixing_replaced_and_kept_rows_falls_back_to_the_rewrite(spark, test_lake):
    import pyarrow as pa

    mixed = pa.table({"visit_id": [1, 2], "source": ["a", "b"], "tags": [["x"], []], "dt": [D1, D1]})
    test_lake.write_arrow(mixed, "test.visits", dt=D1)  # one file holding two sources
    direct = Lake(test_lake.root, spark, registry=REGISTRY)
    direct.write(rows(spark, [(3, "a", ["z"], D1)]), "test.visits", dt=D1, where="source = 'a'")
    assert sorted(test_lake.to_arrow("test.visits")["visit_id"].to_pylist()) == [2, 3]
    assert "geosid.predicate" not in test_lake.history("test.visits")[0]  # delta-rs rewrote the mixed file
