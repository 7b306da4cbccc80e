"""Codebook backfill: embed the range's items under a representation (a new template or
location encoder: only what is not embedded yet), fit a candidate version on them (or
take a given one), publish it through its gates, tokenize every day of a date range
under it (one mapped task per day), then rebuild the range's training corpus under it
from scratch and validate it. Old versions, their vectors, SID maps and corpora stay
readable.

Every task that writes takes the pool `geosid_lake` and the lake's writer lease, so the
backfill interleaves with daily runs step by step, never within a step.

Wiring only: the work lives in geosid.pipeline.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from geosid import pipeline

WRITES = {"pool": pipeline.POOL}


def _lake(params: dict) -> str:
    return pipeline.airflow_task(pipeline.deployment_lake, params.get("lake"))


@dag(
    dag_id="geosid_codebook_backfill",
    schedule=None,
    start_date=pendulum.datetime(2012, 4, 3, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=pipeline.task_defaults(),
    tags=["geosid"],
    params={
        "version": Param(None, type=["null", "string"], description="an existing version to backfill; none: fit a new one"),
        "method": Param("residual_kmeans", enum=list(pipeline.TOKENIZER_KINDS)),
        "capacity_aware": Param(True, type="boolean", description="last level by capacity-aware assignment"),
        "template": Param(None, type=["null", "string"], enum=[None, *pipeline.TEMPLATES], description="vectors' template (default: settings)"),
        "codes": Param(None, type=["null", "string"], description="codes per level, e.g. 64,64,64 (none: sized to the data)"),
        "publish": Param(True, type="boolean", description="publish the version (through its gates) before the backfill"),
        "gates": Param({}, type="object", description="Gates overrides: max_excess_conflict, min_exclusive_rate, min_code_usage"),
        "from": Param("2012-04-03", type="string", format="date"),
        "to": Param("2012-04-03", type="string", format="date"),
        "source": Param("tsmc2014", enum=pipeline.source_names(), description="whose corpus to rebuild"),
        "split": Param("time", enum=list(pipeline.PROTOCOLS), description="split protocol of the rebuilt corpus"),
        "test_start": Param(None, type=["null", "string"], description="time split: first test day"),
        "valid_start": Param(None, type=["null", "string"], description="time split: first valid day"),
        "lake": Param(None, type=["null", "string"], description="absolute lake root (default: the Variable geosid_lake, or GEOSID_LAKE)"),
    },
    doc_md=__doc__,
)
def geosid_codebook_backfill():
    @task(**WRITES)
    def embed(params: dict | None = None) -> dict:
        if params.get("version"):  # an existing version brings its vectors
            return {"skipped": "existing version"}
        return pipeline.airflow_task(pipeline.embed, params["to"], template=params.get("template"), lake_root=_lake(params)).to_dict()

    @task(**WRITES)
    def codebook(embedded: dict, params: dict | None = None) -> str:
        if params.get("version"):
            return params["version"]
        spec = pipeline.CodebookSpec(params["method"], pipeline.parse_codes(params.get("codes")), capacity_aware=params["capacity_aware"])
        fitted = pipeline.airflow_task(pipeline.fit_codebook, spec, params["to"], template=params.get("template"), lake_root=_lake(params))
        return fitted.codebook_version

    @task(**WRITES)
    def publish(version: str, params: dict | None = None) -> str:
        if params.get("publish"):
            pipeline.airflow_task(pipeline.publish_codebook, version, params["to"], gates=params.get("gates") or None, lake_root=_lake(params))
        return version

    @task
    def days(params: dict | None = None) -> list[str]:
        return [d.isoformat() for d in pipeline.days_between(params["from"], params["to"])]

    @task(max_active_tis_per_dag=1, **WRITES)
    def tokenize_day(day: str, version: str, params: dict | None = None) -> dict:
        return pipeline.airflow_task(pipeline.assign_day, day, version, lake_root=_lake(params)).to_dict()

    @task
    def summarize(reports: list[dict]) -> dict:
        total = sum(r.get("new_items", 0) for r in reports)
        print(f"backfill tokenized {total} items over {len(reports)} days")
        return {"days": len(reports), "new_items": total}

    @task(**WRITES)
    def rebuild_corpus(tokenized: dict, version: str, params: dict | None = None) -> dict:
        split = pipeline.split_config(params["split"], params["to"], params.get("test_start"), params.get("valid_start"))
        outcome = pipeline.airflow_task(
            pipeline.rebuild_corpus, version, params["from"], params["to"], params["source"], split, lake_root=_lake(params)
        )
        return {"codebook_version": version, "targets": outcome.sequences.targets, "table_versions": outcome.sequences.table_versions}

    @task(**WRITES)
    def validate_corpus(rebuilt: dict, params: dict | None = None) -> dict:
        gate = pipeline.airflow_task(
            pipeline.validate_corpus, params["from"], params["to"], rebuilt["codebook_version"], params["split"], lake_root=_lake(params)
        )
        return pipeline.airflow_task(pipeline.gate_outcome, gate)  # a failed gate fails the task, without retries

    version = publish(codebook(embed()))
    tokenized = summarize(tokenize_day.partial(version=version).expand(day=days()))
    validate_corpus(rebuild_corpus(tokenized, version))


geosid_codebook_backfill()
