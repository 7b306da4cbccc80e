"""The daily DAG: imports cleanly, and `airflow dags test` runs one day of the shipped data."""

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geosid import pipeline
from geosid.lake.engine import LOCAL_JVM_ENV
from geosid.trainer.runs import list_runs

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = Path(sys.executable).parent / "airflow"


def _airflow_env(home: Path) -> dict:
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "geosid" / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        RUST_LOG="error",
    )
    # Connect sessions of this process (the JVM one's auth token above all) must not
    # leak into the child's engine set-up.
    for name in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", *LOCAL_JVM_ENV):
        env.pop(name, None)
    return env


def test_dagbag_imports_without_errors(tmp_path):
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=%r)\n"
        "import json; print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()}, "
        "'dags': sorted(bag.dags), 'tasks': sorted(t.task_id for t in bag.dags['geosid_daily'].tasks), "
        "'backfill_tasks': sorted(t.task_id for t in bag.dags['geosid_codebook_backfill'].tasks), "
        "'train_tasks': sorted(t.task_id for t in bag.dags['geosid_train'].tasks), "
        "'maintenance_tasks': sorted(t.task_id for t in bag.dags['geosid_maintenance'].tasks), "
        "'maintenance_schedule': str(bag.dags['geosid_maintenance'].schedule), "
        "'schedule': str(bag.dags['geosid_daily'].schedule), "
        "'outlets': [o.name for o in bag.dags['geosid_daily'].get_task('refit_advised').outlets], "
        "'backfill_timetable': type(bag.dags['geosid_codebook_backfill'].timetable).__name__}))\n"
    ) % str(REPO / "geosid" / "dags")
    out = subprocess.run([sys.executable, "-c", code], env=_airflow_env(tmp_path / "home"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["dags"] == ["geosid_codebook_backfill", "geosid_daily", "geosid_maintenance", "geosid_train"]
    assert info["tasks"] == sorted(
        ["wait_for_drop", "ingest", "validate_bronze", "build", "validate", "repair_later", "check_drift", "refit_advised"]
    )
    assert (info["maintenance_tasks"], info["maintenance_schedule"]) == (["maintain"], "@weekly")
    assert info["backfill_tasks"] == [
        "codebook",
        "days",
        "embed",
        "migrate",
        "plan",
        "publish",
        "rebuild_corpus",
        "summarize",
        "tokenize_day",
        "validate_corpus",
    ]
    assert info["train_tasks"] == ["dpo", "evaluate", "pretrain"]
    assert info["schedule"] == "@daily"
    # drift that advises a re-fit updates the asset the codebook backfill is scheduled on
    assert info["outlets"] == ["geosid_refit_advised"] and info["backfill_timetable"] == "AssetTriggeredTimetable"


@pytest.mark.slow
def test_dags_test_runs_one_day_of_the_shipped_data(tmp_path, nyc_file):
    from deltalake import DeltaTable

    day = dt.date(2012, 4, 10)
    env = _airflow_env(tmp_path / "home")
    migrate = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    lake = tmp_path / "lake"
    run = subprocess.run(
        [str(AIRFLOW), "dags", "test", "geosid_daily", day.isoformat(), "-c", json.dumps({"lake": str(lake)})],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log, log[-5000:]

    # expected from the raw file, independently of geosid: that day's distinct lines
    lines = set()
    with gzip.open(nyc_file, "rt", encoding="latin-1") as handle:
        for line in handle:
            stamp = line.rstrip("\n").split("\t")[7]
            if dt.datetime.strptime(stamp[4:], "%b %d %H:%M:%S %z %Y").date() == day:
                lines.add(line)
    events = DeltaTable(str(lake / "bronze" / "events")).to_pyarrow_table()
    assert events.num_rows == len(lines)
    assert set(events.column("dt").to_pylist()) == {day}
    assert (lake / "_quality" / "bronze.events" / f"dt={day}" / "result.json").exists()
    # geo context and embeddings of the day's items
    item_geo = DeltaTable(str(lake / "silver" / "item_geo")).to_pyarrow_table()
    embeddings = DeltaTable(str(lake / "silver" / "item_embeddings")).to_pyarrow_table()
    assert item_geo.num_rows == len({line.split("\t")[1] for line in lines})
    templates = embeddings.column("template_id").to_pylist()
    # the settings' template (geo-doc-v2) and the geo-doc-v1 text it reuses: one vector per item each
    assert templates.count("geo-doc-v2") == templates.count("geo-doc-v1") == item_geo.num_rows
    assert (lake / "_quality" / "silver.item_embeddings" / f"dt={day}" / "result.json").exists()  # the rows the day added

    # then the codebook backfill DAG on that lake: fit, publish, one mapped day
    conf = {
        "lake": str(lake),
        "method": "residual_kmeans",
        "codes": "16,16,16",
        "from": day.isoformat(),
        "to": day.isoformat(),
        "gates": {"max_excess_conflict": 1.0, "min_exclusive_rate": 0.0, "min_code_usage": 0.0},
    }
    run = subprocess.run(
        [str(AIRFLOW), "dags", "test", "geosid_codebook_backfill", day.isoformat(), "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "state=success" in log, log[-5000:]
    versions = DeltaTable(str(lake / "index" / "codebook_versions")).to_pyarrow_table().to_pylist()
    assert [v["status"] for v in versions] == ["published"]
    sid_map = DeltaTable(str(lake / "index" / "sid_map")).to_pyarrow_table()
    assert sid_map.num_rows == item_geo.num_rows
    assert len(set(sid_map.column("sid").to_pylist())) == sid_map.num_rows

    # the backfill rebuilt that day's corpus under the version and validated it
    sequences = DeltaTable(str(lake / "corpus" / "training_sequences")).to_pyarrow_table()
    assert set(sequences.column("dt").to_pylist()) == {day} and sequences.num_rows > 100
    assert set(sequences.column("codebook_version").to_pylist()) == {versions[0]["version"]}
    assert (lake / "_quality" / "corpus.training_sequences" / f"dt={day}" / "result.json").exists()

    # the next day's daily run continues the corpus from the backfill's history state
    next_day = day + dt.timedelta(days=1)
    run = subprocess.run(
        [str(AIRFLOW), "dags", "test", "geosid_daily", next_day.isoformat(), "-c", json.dumps({"lake": str(lake)})],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "state=success" in log, log[-5000:]
    assert " (day): " in log, log[-5000:]  # incremental, not a rebuild
    sequences = DeltaTable(str(lake / "corpus" / "training_sequences")).to_pyarrow_table()
    assert set(sequences.column("dt").to_pylist()) == {day, next_day}
    assert (lake / "_quality" / "corpus.training_sequences" / f"dt={next_day}" / "result.json").exists()
    # what a re-fit the drift advised would take over: the corpus's range under the version in force
    plan = pipeline.refit_plan(source="tsmc2014", lake_root=str(lake))
    assert plan == pipeline.RefitPlan(day, next_day, versions[0]["version"], "tsmc2014")

    # and the training DAG on that corpus: pretrain -> dpo -> evaluate, each run pinned
    conf = {"lake": str(lake), "epochs": 1, "batch_size": 64, "max_history": 10, "dpo_requests": 64}
    run = subprocess.run(
        [str(AIRFLOW), "dags", "test", "geosid_train", next_day.isoformat(), "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "state=success" in log, log[-5000:]
    records = list_runs(lake)
    assert sorted(r.kind for r in records) == ["dpo", "pretrain"]
    assert all(r.table_versions["corpus.training_sequences"] >= 1 for r in records)


RUN_DAYS = """
import json, sys, time
import pendulum
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).dags["geosid_daily"]
states = []
for day in sys.argv[4:]:
    run = dag.test(logical_date=pendulum.parse(day), run_conf={"source": "synthetic", "path": sys.argv[3], "lake": sys.argv[2]})
    states.append(str(run.state))
print(json.dumps(states))
"""


@pytest.mark.slow
def test_daily_runs_in_any_order_end_with_the_tables_of_runs_in_order(spark, tmp_path):
    """DAG runs out of order (the last day first: it takes the earlier drop and builds it;
    the earlier day's run then rebuilds what is there) end with the tables of the same
    days run in order, as `geosid daily` runs them."""
    import shutil

    from geosid import pipeline
    from geosid.config import Settings
    from geosid.lake import Lake
    from geosid.pipeline.context import Context
    from geosid.sources.synthetic_world import WorldConfig, write_world

    days = [dt.date(2024, 6, 1) + dt.timedelta(days=k) for k in range(3)]
    raw = tmp_path / "raw"
    write_world(raw, WorldConfig(n_days=3, n_users=80, n_stores=20, n_brands=6, start_date=days[0].isoformat()), progress=False)
    in_order, shuffled = tmp_path / "in_order", tmp_path / "shuffled"
    ctx = Context(Settings(lake_root=in_order), spark, Lake(in_order, spark))
    # the first day and a codebook (what the backfill DAG does), then a copy of the lake
    pipeline.daily(days[0], "synthetic", raw, validate=False, ctx=ctx)
    fit = pipeline.fit_codebook(pipeline.CodebookSpec("residual_kmeans", codes=(8, 8, 8), niter=5), days[0], ctx=ctx)
    pipeline.publish_codebook(fit.codebook_version, days[0], {"max_excess_conflict": 1.0, "min_exclusive_rate": 0.0, "min_code_usage": 0.0}, ctx=ctx)
    pipeline.backfill(fit.codebook_version, days[0], days[0], ctx=ctx)
    pipeline.rebuild_corpus(fit.codebook_version, days[0], days[0], "synthetic", ctx=ctx)
    shutil.copytree(in_order, shuffled)
    for day in days[1:]:
        report = pipeline.daily(day, "synthetic", raw, ctx=ctx)
    # the report says where the day's time went: each stage once, inside the run's time
    assert {"ingest", "validate bronze", "geo", "assign", "cell context", "sequences", "validate silver", "validate corpus"} <= set(report.stages)
    assert 0 < sum(report.stages.values()) <= report.seconds and report.to_dict()["stages"].keys() == report.stages.keys()

    env = _airflow_env(tmp_path / "home")
    migrate = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    order = [days[2], days[1]]
    run = subprocess.run(
        [sys.executable, "-c", RUN_DAYS, str(REPO / "geosid" / "dags"), str(shuffled), str(raw), *[d.isoformat() for d in order]],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == ["success"] * 2, (run.stdout + run.stderr)[-5000:]
    got, want = Lake(shuffled, spark), Lake(in_order, spark)
    tables = [spec for spec in want.existing_tables()]
    assert {"corpus.training_sequences", "silver.item_embeddings", "index.sid_map", "ops.builds"} <= {s.name for s in tables}
    for spec in tables:
        assert got.digest(spec, content=True) == want.digest(spec, content=True), spec.name


def test_a_dag_run_writes_only_an_absolute_configured_lake(tmp_path):
    from geosid import pipeline
    from geosid.errors import InvalidRequestError, NotArrivedError, QualityGateError
    from geosid.lake.lease import LakeBusyError

    assert pipeline.deployment_lake(str(tmp_path)) == str(tmp_path)
    with pytest.raises(InvalidRequestError, match="must be an absolute path, got 'lake'"):
        pipeline.deployment_lake("lake")
    # refusals that pass are retried (raised as they are); a user's mistake fails the task for good
    from airflow.sdk.exceptions import AirflowFailException

    for transient in (LakeBusyError("busy"), NotArrivedError("later")):
        with pytest.raises(type(transient)):
            pipeline.airflow_task(lambda e=transient: (_ for _ in ()).throw(e))
    with pytest.raises(AirflowFailException, match="gate did not hold"):
        pipeline.airflow_task(lambda: (_ for _ in ()).throw(QualityGateError("the corpus gate did not hold")))
    defaults = pipeline.task_defaults()
    assert defaults["retries"] >= 1 and defaults["retry_exponential_backoff"]
