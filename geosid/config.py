"""Typed settings. Every knob is a field; unknown keys are an error, not a silent no-op.

Settings come from explicit arguments first, then the environment (GEOSID_*), then
defaults. Nothing here reads files or starts anything at import time.

Names: `lake_root` is the lake's folder (a path); `geosid.lake.Lake` is the object that
reads and writes the tables under it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from geosid.geo.geometry import CellConfig

Engine = Literal["sail", "spark-local", "remote"]

# Settings field -> environment variable. Cell settings live in `cells` (CellConfig).
ENV = {
    "engine": "GEOSID_ENGINE",
    "spark_remote": "GEOSID_SPARK_REMOTE",
    "lake_root": "GEOSID_LAKE",
    "spark_local_master": "GEOSID_SPARK_LOCAL_MASTER",
    "spark_local_driver_memory": "GEOSID_SPARK_LOCAL_DRIVER_MEMORY",
    "tsmc_path": "GEOSID_TSMC_PATH",
    "reject_rate_threshold": "GEOSID_REJECT_RATE_THRESHOLD",
    "lake_committer": "GEOSID_LAKE_COMMITTER",
    "geo_window_days": "GEOSID_GEO_WINDOW_DAYS",
    "encoder": "GEOSID_ENCODER",
    "template": "GEOSID_TEMPLATE",
    "location_weight": "GEOSID_LOCATION_WEIGHT",
    "embed_chunk_size": "GEOSID_EMBED_CHUNK_SIZE",
    "lake_reader": "GEOSID_LAKE_READER",
    "quality_evaluator": "GEOSID_QUALITY_EVALUATOR",
    "drop_marker": "GEOSID_DROP_MARKER",
    "vacuum_retention_hours": "GEOSID_VACUUM_RETENTION_HOURS",
    "log_retention_hours": "GEOSID_LOG_RETENTION_HOURS",
    "lease_wait_seconds": "GEOSID_LEASE_WAIT_SECONDS",
    "lease_timeout_seconds": "GEOSID_LEASE_TIMEOUT_SECONDS",
    "drift_max_error_ratio": "GEOSID_DRIFT_MAX_ERROR_RATIO",
    "drift_max_collision_excess": "GEOSID_DRIFT_MAX_COLLISION_EXCESS",
    "drift_days": "GEOSID_DRIFT_DAYS",
}
CELL_ENV = {"system": "GEOSID_CELL_SYSTEM", "precision": "GEOSID_GEOHASH_PRECISION", "resolution": "GEOSID_H3_RESOLUTION"}


class Settings(BaseModel):
    """Where the lake lives, which engine runs the jobs, and the knobs shared by steps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Engine = "sail"
    spark_remote: str | None = Field(default=None, description="sc://host:port for engine=remote")
    lake_root: Path = Path("lake")
    spark_local_master: str = "local[*]"
    spark_local_driver_memory: str = Field(default="2g", description="JVM heap of engine=spark-local")
    tsmc_path: Path | None = Field(default=None, description="TSMC2014 file or folder of daily drops")
    reject_rate_threshold: float = Field(default=0.05, ge=0.0, le=1.0)
    cells: CellConfig = CellConfig()
    geo_window_days: int = Field(default=28, ge=1, description="trailing days of activity in cell context")
    encoder: str = Field(default="minilm", description="text encoder: minilm, or hf:<local model dir>")
    template: str = Field(default="geo-doc-v2", description="item document template (geosid.embedding.documents.TEMPLATES)")
    location_weight: float = Field(default=0.4, ge=0.0, le=1.0, description="share of the location encoding in geo-doc-v2 vectors")
    embed_chunk_size: int = Field(default=4096, ge=1, description="documents per embedding commit (a killed run keeps the committed chunks)")
    lake_committer: Literal["auto", "delta-rs", "spark"] = Field(default="auto", description="auto: spark on engine=remote, delta-rs otherwise")
    drop_marker: str | None = Field(
        default="_SUCCESS",
        description="the file a producer writes into a dt=YYYY-MM-DD drop once it is whole; none: a folder is whole once it exists",
    )
    vacuum_retention_hours: int = Field(default=168, ge=0, description="maintenance: replaced files older than this are deleted")
    log_retention_hours: int = Field(default=720, ge=0, description="maintenance: Delta log entries older than this are removed (checkpointed first)")
    lease_wait_seconds: float = Field(default=600.0, ge=0, description="a writer waits this long for the lake's writer lease, then refuses")
    lease_timeout_seconds: float = Field(
        default=120.0, gt=0, description="a lease holder on another host whose heartbeat is older than this is gone (same host: its pid)"
    )
    drift_max_error_ratio: float = Field(
        default=1.25, gt=0, description="re-fit advised: new items' quantization error above this multiple of the fit's ..."
    )
    drift_max_collision_excess: float = Field(
        default=0.05, ge=0, description="... or their collision rate above the fit's conflict rate by more than this ..."
    )
    drift_days: int = Field(default=3, ge=1, description="... on each of this many latest days with new items")
    lake_reader: Literal["auto", "engine", "files"] = Field(
        default="auto", description="auto: the engine's Delta reader on sail and where spark commits, the snapshot's files otherwise"
    )
    quality_evaluator: Literal["one_pass", "gx"] = Field(
        default="one_pass",
        description="one_pass: the engine measures a suite's checks in one aggregate and great-expectations decides; gx: GX computes each metric",
    )

    @field_validator("spark_remote")
    @classmethod
    def _remote_is_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("sc://"):
            raise ValueError(f"spark_remote must be a Spark Connect URL (sc://host:port), got {value!r}")
        return value

    @field_validator("drop_marker", mode="before")
    @classmethod
    def _marker(cls, value):
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        if isinstance(value, str) and ("/" in value or not value.startswith(("_", "."))):
            raise ValueError(f"drop_marker must be a file name starting with _ or . (never data), or none; got {value!r}")
        return value

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, value: str) -> str:
        if value not in ("minilm", "minilm-torch", "minilm-onnx", "minilm-onnx-int8") and not value.startswith("hf:"):
            raise ValueError(f"encoder must be minilm[-torch|-onnx|-onnx-int8] or hf:<local model dir>, got {value!r}")
        return value

    @classmethod
    def from_env(cls, cells: dict | None = None, **overrides) -> "Settings":
        """Build settings from GEOSID_* variables; explicit keyword overrides win (None
        means "not given"). `cells` overrides CellConfig fields (system, precision, resolution)."""
        values: dict = {key: os.environ[var] for key, var in ENV.items() if os.environ.get(var)}
        cell_values = {key: os.environ[var] for key, var in CELL_ENV.items() if os.environ.get(var)}
        cell_values.update({k: v for k, v in (cells or {}).items() if v is not None})
        if cell_values:
            values["cells"] = CellConfig(**cell_values)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.engine == "remote" and not settings.spark_remote:
            raise ValueError("engine=remote needs GEOSID_SPARK_REMOTE (sc://host:port)")
        return settings

    def committer(self) -> str:
        if self.lake_committer != "auto":
            return self.lake_committer
        return "spark" if self.engine == "remote" else "delta-rs"

    def reader(self) -> str:
        """JVM Spark without delta-spark (spark-local; a cluster committed by delta-rs) reads
        the snapshot's Parquet files; Sail and delta-spark clusters read Delta themselves."""
        if self.lake_reader != "auto":
            return self.lake_reader
        return "engine" if self.engine == "sail" or self.committer() == "spark" else "files"
