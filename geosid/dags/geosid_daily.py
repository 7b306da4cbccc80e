"""geosid daily run: the logical date drives everything.

wait_for_drop -> ingest -> validate_bronze -> build -> validate -> repair_later
                                                           validate -> check_drift -> refit_advised

wait_for_drop is a sensor: the day's drop is complete in every feed (its `_SUCCESS`
marker; of a whole-history file, the file holds the days up to its last one), or the
day was closed as missing (`geosid days close`); it waits (reschedule mode, no pool
slot) up to `drop_wait_hours` counted from when the run started, then fails saying
which drop has not arrived. ingest takes the day's drop and every earlier one that
arrived late, was re-delivered since or (a whole-history file) was never ingested.
build is one step under the lake's writer lease: repair the stale earlier days (from
the nearest state checkpoint), build the earlier days never built (runs that went ahead
of a late drop, or a backfill run in any order), then the day: geo context, embeddings,
SIDs under the codebook version in force (none yet: skipped, see
geosid_codebook_backfill), cell context and training sequences. validate gates on the
silver, SID-map and corpus suites; repair_later rebuilds the later days that a re-run of
an old day (its input changed) made stale. check_drift reads the drift of the codebook
version in force (its new items' quantization error and collisions against the fit's,
`index.sid_drift`); when a sustained excess advises a re-fit, refit_advised runs and
updates the asset `geosid_refit_advised`, on which geosid_codebook_backfill is scheduled
(otherwise it is skipped). So runs in any order, several at once, late
drops, re-deliveries and re-runs end with the tables of runs in order.

Deployment (docs/deployment.md): every task that writes takes the pool `geosid_lake`
(one slot; `geosid airflow setup` creates it and the lake Variable); a refusal that
passes (the lake busy, an input not there yet) is retried, a user's mistake or a failed
gate fails the task at once. catchup is off: unpausing starts the run of the latest
interval only, whose sensor waits for that day's drop; history is loaded with
`airflow backfill create`.

Wiring only: the work lives in geosid.pipeline (the only geosid module a DAG imports; it
keeps torch out of parsing). XCom carries dates, counts and table versions.
"""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from geosid import pipeline

WRITES = {"pool": pipeline.POOL}
WAIT_HOURS, POKE_SECONDS = pipeline.drop_wait()
REFIT_ADVISED = Asset(**pipeline.REFIT_ASSET)


def _split(params: dict):
    """The time split the params ask for (ISO dates or null)."""
    return pipeline.SplitConfig(test_start=params.get("test_start"), valid_start=params.get("valid_start"))


def _lake(params: dict) -> str:
    return pipeline.airflow_task(pipeline.deployment_lake, params.get("lake"))


@dag(
    dag_id="geosid_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2012, 4, 3, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=pipeline.task_defaults(),
    tags=["geosid"],
    params={
        "source": Param("tsmc2014", enum=pipeline.source_names(), description="raw source to ingest"),
        "path": Param(None, type=["null", "string"], description="raw file or folder of drops (default: the source's path)"),
        "lake": Param(None, type=["null", "string"], description="absolute lake root (default: the Variable geosid_lake, or GEOSID_LAKE)"),
        "test_start": Param(None, type=["null", "string"], description="time split: targets from this day on are test"),
        "valid_start": Param(None, type=["null", "string"], description="time split: from this day on valid (until test)"),
        "drop_wait_hours": Param(WAIT_HOURS, type="number", description="how long the sensor waits for the day's drop, from the run's start"),
    },
    doc_md=__doc__,
)
def geosid_daily():
    @task.sensor(poke_interval=POKE_SECONDS, timeout=14 * 24 * 3600, mode="reschedule", retries=0)
    def wait_for_drop(ds: str | None = None, params: dict | None = None, dag_run=None) -> bool:
        lake = _lake(params)
        if pipeline.airflow_task(pipeline.drop_arrived, params["source"], ds, params.get("path"), lake_root=lake):
            return True
        started = dag_run.start_date if dag_run is not None and dag_run.start_date else None
        waited = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 3600 if started else 0.0
        if waited > float(params["drop_wait_hours"]):
            raise AirflowFailException(
                f"the drop of {params['source']} for {ds} has not arrived after {waited:.1f} h; later days wait for it. "
                f"When it comes, clear this run; if it never will: geosid days close --date {ds} --source {params['source']} --reason ..."
            )
        return False

    @task(**WRITES)
    def ingest(ds: str | None = None, params: dict | None = None) -> dict:
        outcomes = pipeline.airflow_task(pipeline.ingest_arrivals, params["source"], ds, params.get("path"), lake_root=_lake(params))
        days = sorted({d.isoformat() for o in outcomes for d in o.report.days})
        changed = sorted({d.isoformat() for o in outcomes if o.inputs for d in o.inputs.changed})
        return {"dt": ds, "days": days, "changed": changed, "events": sum(o.report.events for o in outcomes)}

    @task(**WRITES)
    def validate_bronze(ingested: dict, params: dict | None = None) -> dict:
        if not ingested["days"]:  # a day closed as missing: nothing ingested
            return {"dt": ingested["dt"], "days": []}
        first, last = min(ingested["days"]), max(ingested["days"])
        gate = pipeline.airflow_task(pipeline.validate_bronze, first, last, lake_root=_lake(params))
        return {"dt": ingested["dt"], "days": ingested["days"], "tables": pipeline.airflow_task(pipeline.gate_outcome, gate)["tables"]}

    @task(**WRITES)
    def build(validated: dict, params: dict | None = None) -> dict:
        report = pipeline.airflow_task(pipeline.build_with_catch_up, validated["dt"], params["source"], _split(params), lake_root=_lake(params))
        return report.to_dict()

    @task(**WRITES)
    def validate(built: dict, params: dict | None = None) -> dict:
        lake = _lake(params)
        silver = pipeline.airflow_task(pipeline.validate_silver, built["dt"], lake_root=lake)
        corpus = pipeline.airflow_task(pipeline.validate_corpus, built["dt"], built["dt"], built.get("codebook_version"), lake_root=lake)
        outcomes = {name: pipeline.airflow_task(pipeline.gate_outcome, gate)["tables"] for name, gate in (("silver", silver), ("corpus", corpus))}
        return {"dt": built["dt"], **outcomes}

    @task(**WRITES)
    def repair_later(validated: dict, params: dict | None = None) -> dict:
        return pipeline.airflow_task(pipeline.repair, after=validated["dt"], lake_root=_lake(params)).to_dict()

    @task.short_circuit
    def check_drift(validated: dict, params: dict | None = None) -> bool:
        advice = pipeline.airflow_task(pipeline.refit_advice, lake_root=_lake(params))
        print(advice.summary() if advice else "no codebook version in force: no drift to measure")
        return bool(advice and advice.advised)

    @task(outlets=[REFIT_ADVISED])
    def refit_advised(ds: str | None = None, params: dict | None = None, outlet_events=None) -> str:
        # what the codebook backfill run it triggers needs: whose corpus, which lake
        outlet_events[REFIT_ADVISED].extra = {"dt": ds, "source": params["source"], "lake": _lake(params)}
        return ds

    ingested = ingest()
    wait_for_drop() >> ingested
    validated = validate(build(validate_bronze(ingested)))
    repair_later(validated)
    check_drift(validated) >> refit_advised()


geosid_daily()
