"""The pipeline on a real multi-process Spark cluster (deploy/cluster.sh: a standalone
master, two worker JVMs, a Spark Connect server) equals the embedded default, table by
table. Runs in `make test-cluster` (`-m cluster`); `GEOSID_TEST_CLUSTER=sc://...` uses a
cluster that is already up instead of starting one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "cluster.sh"


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory):
    given = os.environ.get("GEOSID_TEST_CLUSTER")
    if given:
        yield given
        return
    env = {
        **os.environ,
        "GEOSID_CLUSTER_DIR": str(tmp_path_factory.mktemp("cluster")),
        "GEOSID_CLUSTER_CONNECT_PORT": "15013",
        "GEOSID_CLUSTER_MASTER_PORT": "7088",
    }
    try:
        subprocess.run([str(SCRIPT), "up"], env=env, check=True, timeout=300)
        yield "sc://127.0.0.1:15013"
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, check=False, timeout=120)


@pytest.mark.cluster
def test_the_pipeline_on_a_standalone_cluster_gives_the_tables_of_the_embedded_engine(spark, cluster_url, tmp_path):
    from engine_flow import run_flow, table_digests, write_small_world

    from geosid.config import Settings
    from geosid.lake.engine import spark_session

    raw = write_small_world(tmp_path / "raw")
    expected = table_digests(spark, run_flow(spark, Settings(lake_root=tmp_path / "sail", engine="sail"), raw))
    remote = Settings(lake_root=tmp_path / "cluster", engine="remote", spark_remote=cluster_url, lake_committer="delta-rs")
    assert remote.reader() == "files"
    with spark_session(remote) as session:
        # Python runs in the executors' processes, not here: nothing leans on this process
        pids = session.range(0, 4, 1, 2).mapInPandas(lambda frames: (f.assign(id=os.getpid()) for f in frames), "id long").collect()
        assert {row.id for row in pids} and os.getpid() not in {row.id for row in pids}
        root = run_flow(session, remote, raw)
    assert table_digests(spark, root) == expected
