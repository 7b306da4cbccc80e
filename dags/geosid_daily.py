"""geosid daily run: the logical date drives everything.

ingest -> validate_bronze -> geo -> embed -> assign_sids -> sequences -> validate

assign_sids gives the day's new items SIDs under the published codebook version (it
skips, saying so, until a version is published: see geosid_codebook_backfill).
sequences writes the day's corpus.cell_context and corpus.training_sequences,
continuing yesterday's history state (a new version's first run rebuilds from the
source's first day). validate gates on the silver, SID-map and corpus suites.

Wiring only: the work lives in geosid.pipeline, imported inside the task callables so
that parsing this file stays cheap. XCom carries dates, counts and table versions.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task


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
        "source": Param("tsmc2014", enum=["tsmc2014", "synthetic"], description="raw source to ingest"),
        "path": Param(None, type=["null", "string"], description="raw file or folder of drops (default: shipped NYC file)"),
        "lake": Param(None, type=["null", "string"], description="lake root (default: $GEOSID_LAKE or ./lake)"),
        "test_start": Param(None, type=["null", "string"], description="time split: targets from this day on are test"),
        "valid_start": Param(None, type=["null", "string"], description="time split: from this day on valid (until test)"),
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
    def validate_bronze(ingested: dict, params: dict | None = None) -> dict:
        from geosid.pipeline import validate_day

        return _gate(validate_day(ingested["dt"], lake=params.get("lake")), "bronze")

    @task
    def geo(validated: dict, params: dict | None = None) -> dict:
        from geosid.pipeline import geo_day

        return geo_day(validated["dt"], lake=params.get("lake"))

    @task
    def embed(geo_context: dict, params: dict | None = None) -> dict:
        from geosid.pipeline import embed_day

        report = embed_day(geo_context["dt"], lake=params.get("lake"))
        print(f"embedded {report['embedded']} of {report['items']} documents with {report['model_id']}")
        return report

    @task
    def assign_sids(embedded: dict, params: dict | None = None) -> dict:
        from geosid.pipeline import assign_day

        report = assign_day(embedded["dt"], lake=params.get("lake"))
        print(report.get("skipped") or f"{report['new_items']} new items tokenized under {report['version']}")
        return report

    @task
    def sequences(assigned: dict, params: dict | None = None) -> dict:
        from geosid.pipeline import corpus_day

        report = corpus_day(
            assigned["dt"], params["source"], version=assigned.get("version"), test_start=params.get("test_start"),
            valid_start=params.get("valid_start"), lake=params.get("lake"),
        )  # fmt: skip
        print(report.get("skipped") or f"{report['targets']} targets {report['splits']} ({report['mode']}) under {report['version']}")
        return report

    @task
    def validate(built: dict, params: dict | None = None) -> dict:
        from geosid.pipeline import validate_corpus_day, validate_silver_day

        silver = _gate(validate_silver_day(built["dt"], lake=params.get("lake")), "silver")
        corpus = _gate(validate_corpus_day(built["dt"], version=built.get("version"), lake=params.get("lake")), "corpus")
        return {"dt": built["dt"], "silver": silver["tables"], "corpus": corpus["tables"]}

    validate(sequences(assign_sids(embed(geo(validate_bronze(ingest()))))))

geosid_daily()
