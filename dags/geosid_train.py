"""geosid training: pretrain OneLoc on a pinned corpus snapshot, align it with DPO, and
evaluate both against the baselines. Triggered by hand or by a sensor after the daily
run; each run's record (lake/_models/<run>/run.json) pins the table versions it read.

Wiring only: the work lives in geosid.pipeline, imported inside the tasks.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task


def _config(params: dict):
    from geosid import pipeline

    return pipeline.train_config(
        size=params["size"], epochs=params["epochs"], batch_size=params["batch_size"], max_history=params["max_history"],
        eval_limit=params.get("eval_limit"), dpo_requests=params["dpo_requests"], dpo_lambda=params["dpo_lambda"],
        geo_max_km=params["max_km"],
    )  # fmt: skip


@dag(
    dag_id="geosid_train",
    schedule=None,
    start_date=pendulum.datetime(2012, 4, 3, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["geosid"],
    params={
        "lake": Param(None, type=["null", "string"]),
        "version": Param(None, type=["null", "string"], description="codebook version (default: the only one)"),
        "size": Param("tiny", enum=["tiny", "small", "paper"]),
        "epochs": Param(1, type="integer", minimum=1),
        "batch_size": Param(256, type="integer", minimum=1),
        "max_history": Param(50, type="integer", minimum=1),
        "eval_limit": Param(None, type=["null", "integer"]),
        "dpo_requests": Param(2000, type="integer", minimum=1),
        "dpo_lambda": Param(0.05, type="number"),
        "max_km": Param(5.0, type="number"),
    },
    doc_md=__doc__,
)
def geosid_train():
    @task
    def pretrain(params: dict | None = None) -> dict:
        from geosid import pipeline

        meta = pipeline.pretrain(_config(params), params.get("version"), lake_root=params.get("lake"))
        return {"run_id": meta["run_id"], "table_versions": meta["manifest"]["table_versions"], "eval": meta["metrics"]["eval"]["oneloc"]}

    @task
    def dpo(pretrained: dict, params: dict | None = None) -> dict:
        from geosid import pipeline

        meta = pipeline.dpo(pretrained["run_id"], lake_root=params.get("lake"))
        return {"run_id": meta["run_id"], "pairs": meta["metrics"]["pairs"]["pairs"], "eval": meta["metrics"]["eval"]["oneloc"]}

    @task
    def evaluate(pretrained: dict, aligned: dict) -> dict:
        before, after = pretrained["eval"], aligned["eval"]
        for name, m in (("pretrained", before), ("dpo", after)):
            print(name, {k: round(v, 4) for k, v in m.items()})
        return {"pretrain_run": pretrained["run_id"], "dpo_run": aligned["run_id"], "geo_reward@10": [before["geo_reward@10"], after["geo_reward@10"]]}

    pretrained = pretrain()
    evaluate(pretrained, dpo(pretrained))


geosid_train()
