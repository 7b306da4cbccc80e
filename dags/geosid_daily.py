"""geosid daily run: the logical date drives everything. ingest -> validate (for now).

Wiring only: the work lives in geosid.pipeline, imported inside the task callables so
that parsing this file stays cheap. XCom carries dates, counts and table versions.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    dag_id="geosid_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2012, 4, 3, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["geosid"],
    params={
        "source": Param("tsmc2014", enum=["tsmc2014", "synthetic"], description="raw source to ingest"),
        "path": Param(None, type=["null", "string"], description="raw file or folder of drops (default: shipped NYC file)"),
        "lake": Param(None, type=["null", "string"], description="lake root (default: $GEOSID_LAKE or ./lake)"),
    },
    doc_md=__doc__,
)
def geosid_daily():
    @task
    def ingest(ds: str | None = None, params: dict | None = None) -> dict:
        from geosid.pipeline import ingest_day

        report = ingest_day(params["source"], ds, path=params.get("path"), lake=params.get("lake"))
        print(
            f"ingested {report['events']} events, {report['items']} items, "
            f"{report['rejects']} rejects {report['rejects_by_reason']} for {ds}"
        )
        return {"dt": ds, "versions": report["versions"], "rejects": report["rejects"], "events": report["events"]}

    @task
    def validate(ingested: dict, params: dict | None = None) -> dict:
        from airflow.exceptions import AirflowFailException

        from geosid.pipeline import validate_day

        outcome = validate_day(ingested["dt"], lake=params.get("lake"))
        for summary in outcome.pop("summaries"):
            print(summary)
        if not outcome["passed"]:
            raise AirflowFailException(f"data quality gate failed for {ingested['dt']}: {outcome['tables']}")
        return outcome

    validate(ingest())


geosid_daily()
