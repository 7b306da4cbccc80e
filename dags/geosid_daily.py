"""geosid daily run: the logical date drives everything.

ingest -> validate_bronze -> geo -> embed -> assign_sids -> sequences -> validate

assign_sids gives the day's new items SIDs under the codebook version in force on the
day (published on or before it; it skips, saying so, until one is: see
geosid_codebook_backfill). sequences writes the day's corpus.cell_context and
corpus.training_sequences under that same version (passed on by XCom), continuing
yesterday's history state (a new version's first run rebuilds from the source's first
day). validate gates on the silver, SID-map and corpus suites. A re-run of an old date
reads only what existed for that date, so it reproduces that date's tables.

Wiring only: the work lives in geosid.pipeline, imported inside the task callables so
that parsing this file stays cheap. XCom carries dates, counts and table versions.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from geosid.sources.registry import source_names


def _gate(outcome: dict, what: str) -> dict:
    from airflow.exceptions import AirflowFailException

    for summary in outcome.pop("summaries"):
        print(summary)
    if not outcome["passed"]:
        raise AirflowFailException(f"{what} data-quality gate failed for {outcome['dt']}: {outcome['tables']}")
    return outcome


@dag(
    dag_id="geosid_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2012, 4, 3, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["geosid"],
    params={
        "source": Param("tsmc2014", enum=source_names(), description="raw source to ingest"),
        "path": Param(None, type=["null", "string"], description="raw file or folder of drops (default: the source's path)"),
        "lake": Param(None, type=["null", "string"], description="lake root (default: $GEOSID_LAKE or ./lake)"),
        "test_start": Param(None, type=["null", "string"], description="time split: targets from this day on are test"),
        "valid_start": Param(None, type=["null", "string"], description="time split: from this day on valid (until test)"),
    },
    doc_md=__doc__,
)
def geosid_daily():
    @task
    def ingest(ds: str | None = None, params: dict | None = None) -> dict:
        from geosid import pipeline

        outcome = pipeline.ingest(params["source"], ds, ds, params.get("path"), validate=False, lake_root=params.get("lake"))
        report = outcome.report
        return {"dt": ds, "table_versions": report.table_versions, "rejects": report.rejects, "events": report.events}

    @task
    def validate_bronze(ingested: dict, params: dict | None = None) -> dict:
        from geosid import pipeline

        return _gate(pipeline.validate_bronze(ingested["dt"], lake_root=params.get("lake")).to_dict(), "bronze")

    @task
    def geo(validated: dict, params: dict | None = None) -> dict:
        from geosid import pipeline

        return pipeline.geo(validated["dt"], lake_root=params.get("lake")).to_dict()

    @task
    def embed(geo_context: dict, params: dict | None = None) -> dict:
        from geosid import pipeline

        return pipeline.embed(geo_context["dt"], lake_root=params.get("lake")).to_dict()

    @task
    def assign_sids(embedded: dict, params: dict | None = None) -> dict:
        from geosid import pipeline

        return pipeline.assign_day(embedded["dt"], lake_root=params.get("lake")).to_dict()

    @task
    def sequences(assigned: dict, params: dict | None = None) -> dict:
        from geosid import pipeline

        return pipeline.corpus_day(
            assigned["dt"], params["source"], assigned.get("codebook_version"), params.get("test_start"),
            params.get("valid_start"), lake_root=params.get("lake"),
        ).to_dict()  # fmt: skip

    @task
    def validate(built: dict, params: dict | None = None) -> dict:
        from geosid import pipeline

        silver = _gate(pipeline.validate_silver(built["dt"], lake_root=params.get("lake")).to_dict(), "silver")
        corpus = pipeline.validate_corpus(built["dt"], built["dt"], built.get("codebook_version"), lake_root=params.get("lake"))
        return {"dt": built["dt"], "silver": silver["tables"], "corpus": _gate(corpus.to_dict(), "corpus")["tables"]}

    validate(sequences(assign_sids(embed(geo(validate_bronze(ingest()))))))


geosid_daily()
