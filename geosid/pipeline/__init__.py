"""The only orchestrator: one function per pipeline step, each for an explicit logical
date (or range), each returning a small report (with `to_dict()` for XCom and
`summary()` for people). The CLI and the DAGs call these and nothing else.

A step takes `ctx=` (a Context: engine session, lake, where progress goes) to run
inside a caller's session, or `lake_root=` to open its own (a DAG task).
"""

from geosid.lake.dates import days_between
from geosid.pipeline.benchmark import BenchmarkReport, benchmark
from geosid.pipeline.bronze import IngestOutcome, ingest, validate_bronze
from geosid.pipeline.context import Context, open_context, use
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
from geosid.pipeline.daily_run import DailyReport, build_day, catch_up, close_day, daily, drop_arrived, ingest_arrivals
from geosid.pipeline.demo import DemoReport, demo
from geosid.pipeline.gates import GateReport
from geosid.pipeline.index import (
    IndexOutcome,
    SkippedStep,
    assign_day,
    backfill,
    build_index,
    fit_codebook,
    list_codebooks,
    publish_codebook,
    sid_compare,
    sid_report,
)
from geosid.pipeline.lake_ops import TableInfo, format_tables, history, sql, synth, tables
from geosid.pipeline.maintenance import MaintenanceReport, maintain
from geosid.pipeline.repairs import RepairReport, repair
from geosid.pipeline.silver import embed, geo, validate_silver
from geosid.pipeline.staleness import StatusReport, status
from geosid.pipeline.train import TrainOutcome, dpo, evaluate, pretrain, train_config, train_with_control
from geosid.quantization.base import TOKENIZERS
from geosid.sources.registry import source_names

TOKENIZER_KINDS = tuple(TOKENIZERS)

__all__ = [
    "BenchmarkReport", "benchmark", "TOKENIZER_KINDS", "days_between", "source_names", "Context", "CorpusOutcome", "DemoReport", "GateReport", "IndexOutcome", "IngestOutcome", "SkippedStep", "TableInfo",
    "TrainOutcome", "assign_day", "backfill", "build_index", "cell_context", "context_snapshots", "corpus_build",
    "corpus_day", "demo", "dpo", "embed", "evaluate", "fit_codebook", "format_tables", "geo", "history", "ingest",
    "list_codebooks", "open_context", "pretrain", "publish_codebook", "rebuild_corpus", "sid_compare", "sid_report",
    "source_days", "split_config", "sql", "synth", "tables", "train_config", "train_with_control", "use", "validate_bronze",
    "validate_corpus", "validate_silver", "DailyReport", "MaintenanceReport", "RepairReport", "StatusReport", "build_day",
    "catch_up", "close_day", "daily", "drop_arrived", "ingest_arrivals", "maintain", "repair", "status",
]  # fmt: skip
