"""Codebook backfill: embed the range's items under a representation (a new template or
location encoder: only what is not embedded yet), fit a candidate version on them (or
take a given one; with `align`, aligned to the version in force: its code ids, and
items' codes kept where they cost little more), publish it through its gates (the
stability gates among them), tokenize every day of a date range under it (one mapped
task per day), write and validate the SID migration from the version it retired
(`index.sid_migration`, `index.sid_code_map`), then rebuild the range's training corpus
under it from scratch and validate it. Old versions, their vectors, SID maps and
corpora stay readable.

Scheduled on the asset `geosid_refit_advised` (the daily DAG updates it when drift
advises a re-fit): such a run takes the defaults completed by the advice (its source and
lake): an aligned re-fit as of the latest item day over the range of the source's
corpus under the version in force. Triggered by hand, it takes the params.

Every task that writes takes the pool `geosid_lake` and the lake's writer lease, so the
backfill interleaves with daily runs step by step, never within a step.

Wiring only: the work lives in geosid.pipeline.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from geosid import pipeline

WRITES = {"pool": pipeline.POOL}
REFIT_ADVISED = Asset(**pipeline.REFIT_ASSET)


def _lake(params: dict) -> str:
    return pipeline.airflow_task(pipeline.deployment_lake, params.get("lake"))


@dag(
    dag_id="geosid_codebook_backfill",
    schedule=[REFIT_ADVISED],
    start_date=pendulum.datetime(2012, 4, 3, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=pipeline.task_defaults(),
    tags=["geosid"],
    params={
        "version": Param(None, type=["null", "string"], description="an existing version to backfill; none: fit a new one"),
        "method": Param("residual_kmeans", enum=list(pipeline.TOKENIZER_KINDS)),
        "capacity_aware": Param(True, type="boolean", description="last level by capacity-aware assignment"),
        "align": Param(True, type="boolean", description="align the new version to the one in force (keep its code ids and items' codes)"),
        "template": Param(None, type=["null", "string"], enum=[None, *pipeline.TEMPLATES], description="vectors' template (default: settings)"),
        "codes": Param(None, type=["null", "string"], description="codes per level, e.g. 64,64,64 (none: sized to the data)"),
        "publish": Param(True, type="boolean", description="publish the version (through its gates) before the backfill"),
        "gates": Param(
            {},
            type="object",
            description="Gates overrides: max_excess_conflict, min_exclusive_rate, min_code_usage, min_first_level_retention, min_sid_retention",
        ),
        "from": Param(
            None,
            type=["null", "string"],
            format="date",
            description="first day to tokenize (default: where the source's corpus under the version in force starts, else to)",
        ),
        "to": Param(
            None, type=["null", "string"], format="date", description="the fit's day and the last to tokenize (default: the latest item day)"
        ),
        "source": Param("tsmc2014", enum=pipeline.source_names(), description="whose corpus to rebuild"),
        "split": Param("time", enum=list(pipeline.PROTOCOLS), description="split protocol of the rebuilt corpus"),
        "test_start": Param(None, type=["null", "string"], description="time split: first test day"),
        "valid_start": Param(None, type=["null", "string"], description="time split: first valid day"),
        "lake": Param(None, type=["null", "string"], description="absolute lake root (default: the Variable geosid_lake, or GEOSID_LAKE)"),
    },
    doc_md=__doc__,
)
def geosid_codebook_backfill():
    @task
    def plan(params: dict | None = None, triggering_asset_events=None) -> dict:
        advised = [e.extra for e in (triggering_asset_events or {}).get(REFIT_ADVISED, [])]
        request = pipeline.refit_request(params, advised)
        align = bool(request.get("align")) and not request.get("version")
        lake = _lake(request)
        planned = pipeline.airflow_task(pipeline.refit_plan, request.get("from"), request.get("to"), request["source"], align=align, lake_root=lake)
        return {**planned.to_dict(), "lake": lake}

    @task(**WRITES)
    def embed(planned: dict, params: dict | None = None) -> dict:
        if params.get("version"):  # an existing version brings its vectors
            return {**planned, "skipped": "existing version"}
        pipeline.airflow_task(pipeline.embed, planned["to"], template=params.get("template"), lake_root=planned["lake"])
        return planned

    @task(**WRITES)
    def codebook(planned: dict, params: dict | None = None) -> str:
        if params.get("version"):
            return params["version"]
        aligned = {"align_to": planned["align_to"]} if planned.get("align_to") else {}
        spec = pipeline.CodebookSpec(params["method"], pipeline.parse_codes(params.get("codes")), capacity_aware=params["capacity_aware"], **aligned)
        fitted = pipeline.airflow_task(pipeline.fit_codebook, spec, planned["to"], template=params.get("template"), lake_root=planned["lake"])
        return fitted.codebook_version

    @task(**WRITES)
    def publish(version: str, planned: dict, params: dict | None = None) -> str:
        if params.get("publish"):
            pipeline.airflow_task(pipeline.publish_codebook, version, planned["to"], gates=params.get("gates") or None, lake_root=planned["lake"])
        return version

    @task
    def days(planned: dict) -> list[str]:
        return [d.isoformat() for d in pipeline.days_between(planned["from"], planned["to"])]

    @task(max_active_tis_per_dag=1, **WRITES)
    def tokenize_day(day: str, version: str, planned: dict) -> dict:
        return pipeline.airflow_task(pipeline.assign_day, day, version, lake_root=planned["lake"]).to_dict()

    @task
    def summarize(reports: list[dict]) -> dict:
        total = sum(r.get("new_items", 0) for r in reports)
        print(f"backfill tokenized {total} items over {len(reports)} days")
        return {"days": len(reports), "new_items": total}

    @task(**WRITES)
    def migrate(tokenized: dict, version: str, planned: dict) -> dict:
        outcome = pipeline.airflow_task(pipeline.migrate, version, lake_root=planned["lake"])
        pipeline.airflow_task(pipeline.gate_outcome, outcome)  # a failed suite fails the task, without retries
        return {**tokenized, "migration": outcome.counts}

    @task(**WRITES)
    def rebuild_corpus(migrated: dict, version: str, planned: dict, params: dict | None = None) -> dict:
        split = pipeline.split_config(params["split"], planned["to"], params.get("test_start"), params.get("valid_start"))
        outcome = pipeline.airflow_task(
            pipeline.rebuild_corpus, version, planned["from"], planned["to"], planned["source"], split, lake_root=planned["lake"]
        )
        return {"codebook_version": version, "targets": outcome.sequences.targets, "table_versions": outcome.sequences.table_versions}

    @task(**WRITES)
    def validate_corpus(rebuilt: dict, planned: dict, params: dict | None = None) -> dict:
        gate = pipeline.airflow_task(
            pipeline.validate_corpus, planned["from"], planned["to"], rebuilt["codebook_version"], params["split"], lake_root=planned["lake"]
        )
        return pipeline.airflow_task(pipeline.gate_outcome, gate)  # a failed gate fails the task, without retries

    planned = plan()
    version = publish(codebook(embed(planned)), planned)
    tokenized = summarize(tokenize_day.partial(version=version, planned=planned).expand(day=days(planned)))
    validate_corpus(rebuild_corpus(migrate(tokenized, version, planned), version, planned), planned)


geosid_codebook_backfill()
