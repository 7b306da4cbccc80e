"""The daily DAG: imports cleanly, and `airflow dags test` runs one day of the shipped data."""

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geosid.lake.engine import LOCAL_JVM_ENV

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = Path(sys.executable).parent / "airflow"


def _airflow_env(home: Path) -> dict:
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
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
        "'schedule': str(bag.dags['geosid_daily'].schedule)}))\n"
    ) % str(REPO / "dags")
    out = subprocess.run([sys.executable, "-c", code], env=_airflow_env(tmp_path / "home"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["dags"] == ["geosid_codebook_backfill", "geosid_daily", "geosid_train"]
    assert info["tasks"] == ["assign_sids", "embed", "geo", "ingest", "sequences", "validate", "validate_bronze"]
    assert info["backfill_tasks"] == [
        "codebook", "days", "embed", "publish", "rebuild_corpus", "summarize", "tokenize_day", "validate_corpus",
    ]  # fmt: skip
    assert info["train_tasks"] == ["dpo", "evaluate", "pretrain"]
    assert info["schedule"] == "@daily"


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
    assert (lake / "_quality" / "silver.item_embeddings" / "result.json").exists()

    # then the codebook backfill DAG on that lake: fit, publish, one mapped day
    conf = {
        "lake": str(lake), "method": "residual_kmeans", "codes": "16,16,16", "from": day.isoformat(), "to": day.isoformat(),
        "gates": {"max_excess_conflict": 1.0, "min_exclusive_rate": 0.0, "min_code_usage": 0.0},
    }
    run = subprocess.run(
        [str(AIRFLOW), "dags", "test", "geosid_codebook_backfill", day.isoformat(), "-c", json.dumps(conf)],
        env=env, capture_output=True, text=True, timeout=600,
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
        env=env, capture_output=True, text=True, timeout=600,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "state=success" in log, log[-5000:]
    assert " (day): " in log, log[-5000:]  # incremental, not a rebuild
    sequences = DeltaTable(str(lake / "corpus" / "training_sequences")).to_pyarrow_table()
    assert set(sequences.column("dt").to_pylist()) == {day, next_day}
    assert (lake / "_quality" / "corpus.training_sequences" / f"dt={next_day}" / "result.json").exists()

    # and the training DAG on that corpus: pretrain -> dpo -> evaluate, each run pinned
    conf = {"lake": str(lake), "epochs": 1, "batch_size": 64, "max_history": 10, "dpo_requests": 64}
    run = subprocess.run(
        [str(AIRFLOW), "dags", "test", "geosid_train", next_day.isoformat(), "-c", json.dumps(conf)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "state=success" in log, log[-5000:]
    records = [json.loads(p.read_text()) for p in (lake / "_models").glob("*/run.json")]
    assert sorted(r["kind"] for r in records) == ["dpo", "pretrain"]
    assert all(r["manifest"]["table_versions"]["corpus.training_sequences"] >= 1 for r in records)
