"""geosid training: pretrain OneLoc on a pinned corpus snapshot, align it with DPO, and
evaluate both against the baselines. Triggered by hand or by a sensor after the daily
run; each run's record (lake/_models/<run>/run.json) pins the table versions it read.

Training reads a pinned snapshot (pinned for the job's life, so maintenance keeps its
files) and takes no pool slot; DPO's preference pairs are one write under the lake's
writer lease.

Wiring only: the work lives in geosid.pipeline; the params' defaults are TrainConfig's.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from geosid import pipeline

TRAIN = pipeline.TRAIN_DEFAULTS
# The training options a run of this DAG may set (TrainConfig fields; defaults from it).
OPTIONS = ("size", "epochs", "batch_size", "max_history", "eval_limit", "dpo_requests", "dpo_lambda", "geo_max_km")


def _config(params: dict):
    return pipeline.train_config(**{name: params.get(name) for name in OPTIONS})


@dag(
    dag_id="geosid_train",
    schedule=None,
    start_date=pendulum.datetime(2012, 4, 3, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=pipeline.task_defaults(),
    tags=["geosid"],
    params={
        "lake": Param(None, type=["null", "string"], description="absolute lake root (default: the Variable geosid_lake, or GEOSID_LAKE)"),
        "version": Param(None, type=["null", "string"], description="codebook version (default: the only one)"),
        "size": Param(TRAIN.size, enum=list(pipeline.SIZE_NAMES)),
        "epochs": Param(TRAIN.epochs, type="integer", minimum=1),
        "batch_size": Param(TRAIN.batch_size, type="integer", minimum=1),
        "max_history": Param(TRAIN.max_history, type="integer", minimum=1),
        "eval_limit": Param(TRAIN.eval_limit, type=["null", "integer"]),
        "dpo_requests": Param(TRAIN.dpo_requests, type="integer", minimum=1),
        "dpo_lambda": Param(TRAIN.dpo_lambda, type="number"),
        "geo_max_km": Param(TRAIN.geo_max_km, type="number", description="geographic reward: 1/d within this distance"),
    },
    doc_md=__doc__,
)
def geosid_train():
    @task
    def pretrain(params: dict | None = None) -> dict:
        lake = pipeline.airflow_task(pipeline.deployment_lake, params.get("lake"))
        record = pipeline.airflow_task(pipeline.pretrain, _config(params), params.get("version"), lake_root=lake)
        return {"run_id": record.run_id, "table_versions": record.table_versions, "eval": record.evaluation("oneloc")}

    @task
    def dpo(pretrained: dict, params: dict | None = None) -> dict:
        lake = pipeline.airflow_task(pipeline.deployment_lake, params.get("lake"))
        record = pipeline.airflow_task(pipeline.dpo, pretrained["run_id"], lake_root=lake)
        return {"run_id": record.run_id, "pairs": record.metrics["pairs"]["pairs"], "eval": record.evaluation("oneloc")}

    @task
    def evaluate(pretrained: dict, aligned: dict) -> dict:
        before, after = pretrained["eval"], aligned["eval"]
        for name, m in (("pretrained", before), ("dpo", after)):
            print(name, {k: round(v, 4) for k, v in m.items()})
        return {
            "pretrain_run": pretrained["run_id"],
            "dpo_run": aligned["run_id"],
            "geo_reward@10": [before["geo_reward@10"], after["geo_reward@10"]],
        }

    pretrained = pretrain()
    evaluate(pretrained, dpo(pretrained))


geosid_train()
