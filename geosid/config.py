"""Typed settings. Every knob is a field; unknown keys are an error, not a silent no-op.

Settings come from explicit arguments first, then the environment (GEOSID_*), then
defaults. Nothing here reads files or starts anything at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Engine = Literal["sail", "spark-local", "remote"]

# The shipped real data, relative to a checkout: ../shared/data beside the repo.
_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TSMC_FILE = _REPO_ROOT.parent / "shared" / "data" / "foursquare_nyc" / "dataset_TSMC2014_NYC.subset.txt.gz"


class Settings(BaseModel):
    """Where the lake lives and which engine runs the jobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Engine = "sail"
    spark_remote: str | None = Field(default=None, description="sc://host:port for engine=remote")
    lake: Path = Path("lake")
    spark_local_master: str = "local[*]"
    spark_local_driver_memory: str = Field(default="2g", description="JVM heap of engine=spark-local")
    tsmc_path: Path | None = Field(default=None, description="TSMC2014 file or folder of daily drops")
    reject_rate_threshold: float = Field(default=0.05, ge=0.0, le=1.0)
    cell_system: Literal["geohash", "h3"] = "geohash"
    geohash_precision: int = Field(default=6, ge=1, le=12)
    h3_resolution: int = Field(default=8, ge=0, le=15)
    geo_window_days: int = Field(default=28, ge=1, description="trailing days of activity in cell context")
    encoder: str = Field(default="minilm", description="minilm, or hf:<local model dir>")
    lake_committer: Literal["auto", "delta-rs", "spark"] = Field(
        default="auto", description="auto: spark on engine=remote, delta-rs otherwise"
    )

    @field_validator("spark_remote")
    @classmethod
    def _remote_is_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("sc://"):
            raise ValueError(f"spark_remote must be a Spark Connect URL (sc://host:port), got {value!r}")
        return value

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Build settings from GEOSID_* variables; explicit keyword overrides win."""
        env_map = {
            "engine": "GEOSID_ENGINE",
            "spark_remote": "GEOSID_SPARK_REMOTE",
            "lake": "GEOSID_LAKE",
            "spark_local_master": "GEOSID_SPARK_LOCAL_MASTER",
            "spark_local_driver_memory": "GEOSID_SPARK_LOCAL_DRIVER_MEMORY",
            "tsmc_path": "GEOSID_TSMC_PATH",
            "reject_rate_threshold": "GEOSID_REJECT_RATE_THRESHOLD",
            "lake_committer": "GEOSID_LAKE_COMMITTER",
            "cell_system": "GEOSID_CELL_SYSTEM",
            "geohash_precision": "GEOSID_GEOHASH_PRECISION",
            "h3_resolution": "GEOSID_H3_RESOLUTION",
            "geo_window_days": "GEOSID_GEO_WINDOW_DAYS",
            "encoder": "GEOSID_ENCODER",
        }
        values = {key: os.environ[var] for key, var in env_map.items() if os.environ.get(var)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.engine == "remote" and not settings.spark_remote:
            raise ValueError("engine=remote needs GEOSID_SPARK_REMOTE (sc://host:port)")
        return settings

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, value: str) -> str:
        if value != "minilm" and not value.startswith("hf:"):
            raise ValueError(f"encoder must be 'minilm' or 'hf:<local model dir>', got {value!r}")
        return value

    def committer(self) -> str:
        if self.lake_committer != "auto":
            return self.lake_committer
        return "spark" if self.engine == "remote" else "delta-rs"

    def resolved_tsmc_path(self) -> Path | None:
        """The TSMC source to use: the configured one, else the shipped file when present."""
        if self.tsmc_path is not None:
            return self.tsmc_path
        return DEFAULT_TSMC_FILE if DEFAULT_TSMC_FILE.exists() else None
