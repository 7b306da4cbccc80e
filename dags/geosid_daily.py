"""geosid daily run: the logical date drives everything.

wait_for_drop -> ingest -> validate_bronze -> catch_up -> geo -> embed -> assign_sids
-> sequences -> validate -> repair_later

wait_for_drop is a sensor: the day's drop is complete in every feed (its `_SUCCESS`
marker), or the day was closed as missing (`geosid days close`); it waits (reschedule
mode) up to `drop_wait_hours`, then fails saying which drop has not arrived. ingest
takes the day's drop and every earlier one that arrived late or was re-delivered since
(a re-delivery with the same content changes nothing). catch_up repairs the stale earlier
days (from the nearest state checkpoint) and builds the earlier days never built (runs
that went ahead of a late drop, or out of order in a backfill), refusing while an
earlier input day has not arrived. The next five tasks build the day: assign_sids gives
its new items SIDs under the codebook version in force on the day (none yet: skipped,
see geosid_codebook_backfill); sequences writes its cell context and training sequences
under that version, continuing yesterday's history state. validate gates on the silver,
SID-map and corpus suites. repair_later rebuilds the later days that a re-run of an old
day (its input changed) made stale. So runs in any order, late drops, re-deliveries and
re-runs end with the tables of a clean run (bench/year_of_operations.py).

Wiring only: the work lives in geosid.pipeline (the only geosid module a DAG imports; it
keeps torch out of parsing). A failed data-quality gate fails its task. XCom carries
dates, counts and table versions.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from geosid import pipeline



def _split(params: dict):
    """The time split the params ask for (ISO dates or null)."""
    return pipeline.SplitConfig(test_start=params.get("test_start"), valid_start=params.get("valid_start"))


@dag(
    dag_id="geosid_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2012, 4, 3, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["geosid"],
    params={
        "source": Param("tsmc2014", enum=pipeline.source_names(), description="raw source to ingest"),
        "path": Param(None, type=["null", "string"], description="raw file or folder of drops (default: the source's path)"),
        "lake": Param(None, type=["null", "string"], description="lake root (default: $GEOSID_LAKE or ./lake)"),
        "test_start": Param(None, type=["null", "string"], description="time split: targets from this day on are test"),
        "valid_start": Param(None, type=["null", "string"], description="time split: from this day on valid (until test)"),
        "drop_wait_hours": Param(48, type="number", description="how long the sensor waits for the day's drop"),
    },
    doc_md=__doc__,
)
def geosid_daily():
    @task.sensor(poke_interval=600, timeout=14 * 24 * 3600, mode="reschedule")
    def wait_for_drop(ds: str | None = None, params: dict | None = None, data_interval_end=None) -> bool:
        import datetime

        from airflow.exceptions import AirflowFailException

        if pipeline.drop_arrived(params["source"], ds, params.get("path"), lake_root=params.get("lake")):
            return True
        now = datetime.datetime.now(datetime.timezone.utc)
        waited = (now - data_interval_end).total_seconds() / 3600 if data_interval_end else 0.0
        if waited > float(params["drop_wait_hours"]):
            raise AirflowFailException(
                f"the drop of {params['source']} for {ds} has not arrived after {waited:.0f} h; later days wait for it. "
                f"When it comes, clear this run; if it never will: geosid days close --date {ds} --source {params['source']} --reason ..."
            )
        return False

    @task
    def ingest(ds: str | None = None, params: dict | None = None) -> dict:
        outcomes = pipeline.ingest_arrivals(params["source"], ds, params.get("path"), lake_root=params.get("lake"))
        days = sorted({d.isoformat() for o in outcomes for d in o.report.days})
        changed = sorted({d.isoformat() for o in outcomes if o.inputs for d in o.inputs.changed})
        return {"dt": ds, "days": days, "changed": changed, "events": sum(o.report.events for o in outcomes)}

    @task
    def validate_bronze(ingested: dict, params: dict | None = None) -> dict:
        if not ingested["days"]:  # a day closed as missing: nothing ingested
            return {"dt": ingested["dt"], "days": []}
        first, last = min(ingested["days"]), max(ingested["days"])
        gate = pipeline.gate_outcome(pipeline.validate_bronze(first, last, lake_root=params.get("lake")))
        return {"dt": ingested["dt"], "days": ingested["days"], "tables": gate["tables"]}

    @task
    def catch_up(validated: dict, params: dict | None = None) -> dict:
        repaired, pending = pipeline.catch_up(validated["dt"], params["source"], _split(params), lake_root=params.get("lake"))
        return {"dt": validated["dt"], "repaired": repaired.to_dict(), "pending": [d.isoformat() for d in pending]}

    @task
    def geo(caught_up: dict, params: dict | None = None) -> dict:
        return pipeline.geo(caught_up["dt"], lake_root=params.get("lake")).to_dict()

    @task
    def embed(geo_context: dict, params: dict | None = None) -> dict:
        return pipeline.embed(geo_context["dt"], lake_root=params.get("lake")).to_dict()

    @task
    def assign_sids(embedded: dict, params: dict | None = None) -> dict:
        return pipeline.assign_day(embedded["dt"], lake_root=params.get("lake")).to_dict()

    @task
    def sequences(assigned: dict, params: dict | None = None) -> dict:
        return pipeline.corpus_day(
            assigned["dt"], params["source"], assigned.get("codebook_version"), _split(params), lake_root=params.get("lake"),
        ).to_dict()  # fmt: skip

    @task
    def validate(built: dict, params: dict | None = None) -> dict:
        silver = pipeline.gate_outcome(pipeline.validate_silver(built["dt"], lake_root=params.get("lake")))
        corpus = pipeline.validate_corpus(built["dt"], built["dt"], built.get("codebook_version"), lake_root=params.get("lake"))
        return {"dt": built["dt"], "silver": silver["tables"], "corpus": pipeline.gate_outcome(corpus)["tables"]}

    @task
    def repair_later(validated: dict, params: dict | None = None) -> dict:
        return pipeline.repair(after=validated["dt"], lake_root=params.get("lake")).to_dict()

    ingested = ingest()
    wait_for_drop() >> ingested
    built = sequences(assign_sids(embed(geo(catch_up(validate_bronze(ingested))))))
    repair_later(validate(built))


geosid_daily()
