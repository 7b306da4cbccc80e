"""The only orchestrator: one function per pipeline step, each for an explicit logical
date (or range), each returning a small report (with `to_dict()` for XCom and
`summary()` for people). The CLI and the DAGs call these and nothing else; what their
options and params need (names, kinds, defaults) is re-exported here too.

A step takes `ctx=` (a Context: engine session, lake, where progress goes) to run
inside a caller's session, or `lake_root=` to open its own (a DAG task).
"""

import importlib

from geosid.config import Settings
from geosid.embedding.templates import TEMPLATES
from geosid.errors import InvalidRequestError, user_errors
from geosid.jobs.corpus import SplitConfig
from geosid.jobs.index import CodebookSpec, FitReport, Gates, parse_codes
from geosid.lake.dates import days_between
from geosid.pipeline.bronze import IngestOutcome, ingest, validate_bronze
from geosid.pipeline.context import Context, engine_errors, open_context, use
from geosid.pipeline.corpus import (
    CorpusOutcome,
    cell_context,
    context_snapshots,
    corpus_build,
    corpus_day,
    rebuild_corpus,
    source_days,
    split_config,
    validate_corpus,
)
from geosid.pipeline.daily_run import (
    BuildReport,
    DailyReport,
    build_day,
    build_with_catch_up,
    catch_up,
    close_day,
    daily,
    drop_arrived,
    ingest_arrivals,
)
from geosid.pipeline.deployment import (
    POOL,
    REFIT_ASSET,
    SetupReport,
    airflow_setup,
    airflow_task,
    dags_folder,
    deployment_lake,
    drop_wait,
    task_defaults,
)
from geosid.pipeline.gates import GateReport, gate_outcome
from geosid.pipeline.index import (
    IndexOutcome,
    MigrationOutcome,
    RefitPlan,
    SkippedStep,
    assign_day,
    backfill,
    build_index,
    fit_codebook,
    list_codebooks,
    migrate,
    publish_codebook,
    refit_advice,
    refit_plan,
    refit_request,
    sid_compare,
    sid_report,
)
from geosid.pipeline.lake_ops import TableInfo, format_tables, history, sql, synth, tables
from geosid.pipeline.maintenance import MaintenanceReport, maintain
from geosid.pipeline.repairs import RepairReport, repair
from geosid.pipeline.report_site import SiteReport, build_report
from geosid.pipeline.silver import embed, geo, validate_silver
from geosid.pipeline.staleness import StatusReport, status
from geosid.quantization.base import TOKENIZERS
from geosid.schemas.corpus import BENCHMARK_PROTOCOLS, PROTOCOLS
from geosid.sources.registry import source_names
from geosid.sources.synthetic_world import WorldConfig
from geosid.trainer.config import MODEL_KINDS, SIZE_NAMES, TRAIN_DEFAULTS, TRAIN_FIELDS, TrainConfig, grid_point

TOKENIZER_KINDS = tuple(TOKENIZERS)


def train_config(**options) -> TrainConfig:
    """A TrainConfig from keyword options: None means the default; an unknown key is refused."""
    return TrainConfig.from_options(**options)


# The steps that train import torch (seconds to load, and not needed to ingest, index or
# build a corpus): they load on first use, so a DAG file parsed by the scheduler, or a
# CLI command that does not train, never pays for them. The one lazy door of the package.
_TRAINING_STEPS = {
    "pretrain": "geosid.pipeline.train",
    "dpo": "geosid.pipeline.train",
    "evaluate": "geosid.pipeline.train",
    "train_with_control": "geosid.pipeline.train",
    "TrainOutcome": "geosid.pipeline.train",
    "benchmark": "geosid.pipeline.benchmark_run",
    "BenchmarkReport": "geosid.pipeline.benchmark_run",
    "dpo_sweep": "geosid.pipeline.sweep_run",
    "SweepReport": "geosid.pipeline.sweep_run",
    "demo": "geosid.pipeline.demo_run",
    "DemoReport": "geosid.pipeline.demo_run",
}


def __getattr__(name: str):
    if name in _TRAINING_STEPS:
        return getattr(importlib.import_module(_TRAINING_STEPS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BENCHMARK_PROTOCOLS",
    "MODEL_KINDS",
    "PROTOCOLS",
    "SIZE_NAMES",
    "TEMPLATES",
    "TOKENIZER_KINDS",
    "TRAIN_DEFAULTS",
    "TRAIN_FIELDS",
    "POOL",
    "SetupReport",
    "airflow_setup",
    "airflow_task",
    "dags_folder",
    "deployment_lake",
    "drop_wait",
    "task_defaults",
    "CodebookSpec",
    "Context",
    "InvalidRequestError",
    "REFIT_ASSET",
    "Settings",
    "engine_errors",
    "user_errors",
    "CorpusOutcome",
    "DailyReport",
    "FitReport",
    "GateReport",
    "Gates",
    "IndexOutcome",
    "IngestOutcome",
    "MaintenanceReport",
    "MigrationOutcome",
    "RepairReport",
    "SkippedStep",
    "SplitConfig",
    "StatusReport",
    "SiteReport",
    "TableInfo",
    "TrainConfig",
    "WorldConfig",
    "assign_day",
    "backfill",
    "BuildReport",
    "build_day",
    "build_with_catch_up",
    "build_report",
    "build_index",
    "catch_up",
    "cell_context",
    "close_day",
    "context_snapshots",
    "corpus_build",
    "corpus_day",
    "daily",
    "days_between",
    "drop_arrived",
    "embed",
    "fit_codebook",
    "format_tables",
    "gate_outcome",
    "geo",
    "grid_point",
    "history",
    "ingest",
    "ingest_arrivals",
    "list_codebooks",
    "maintain",
    "migrate",
    "open_context",
    "parse_codes",
    "publish_codebook",
    "rebuild_corpus",
    "refit_advice",
    "RefitPlan",
    "refit_plan",
    "refit_request",
    "repair",
    "sid_compare",
    "sid_report",
    "source_days",
    "source_names",
    "split_config",
    "sql",
    "status",
    "synth",
    "tables",
    "train_config",
    "use",
    "validate_bronze",
    "validate_corpus",
    "validate_silver",
    *_TRAINING_STEPS,
]
