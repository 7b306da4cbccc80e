"""geosid weekly maintenance: compact small files, vacuum replaced ones after the
retention (default: the settings', 7 days), checkpoint and trim the Delta logs, for every
table of the lake. Files that recorded training snapshots (`_models/*/run.json`) still
pin are kept unless `force`. Prints bytes and files before and after per table.

Maintenance writes (compaction commits, vacuum deletes): it takes the pool `geosid_lake`
and the lake's writer lease like every writer, and never removes a file that the
published state or a live reader (a training job, a report) still reads, whatever the
retention.

Wiring only: the work lives in geosid.pipeline.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from geosid import pipeline


@dag(
    dag_id="geosid_maintenance",
    schedule="@weekly",
    start_date=pendulum.datetime(2012, 4, 3, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=pipeline.task_defaults(),
    tags=["geosid"],
    params={
        "lake": Param(None, type=["null", "string"], description="absolute lake root (default: the Variable geosid_lake, or GEOSID_LAKE)"),
        "retention_hours": Param(None, type=["null", "number"], description="vacuum retention (default: settings, 168 h)"),
        "force": Param(False, type="boolean", description="also delete files that pinned training snapshots need"),
    },
    doc_md=__doc__,
)
def geosid_maintenance():
    @task(pool=pipeline.POOL)
    def maintain(params: dict | None = None) -> dict:
        lake = pipeline.airflow_task(pipeline.deployment_lake, params.get("lake"))
        report = pipeline.airflow_task(pipeline.maintain, params.get("retention_hours"), force=params["force"], lake_root=lake)
        return {"bytes_before": report.bytes_before, "bytes_after": report.bytes_after, "tables": len(report.tables)}

    maintain()


geosid_maintenance()
