"""The corpus stage's settings: the split (time / LibCity protocols), LibCity's
sessionisation, and the corpus config built once at the edge from a source's shape.
"""

from __future__ import annotations

import datetime as dt_
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from geosid.geo.geometry import CellConfig, CellSystem
from geosid.jobs import sequences_kernel as kernel
from geosid.lake import as_date
from geosid.schemas.corpus import Protocol, protocol_predicate
from geosid.sources.registry import BehaviorConfig, CorpusShape, get_source


class LibCityConfig(BaseModel):
    """LibCity's trajectory pre-processing of check-ins (the OneLoc paper's protocol for
    Foursquare): POIs with fewer than `min_poi_checkins` check-ins are dropped; a user's
    check-ins are cut into sessions at gaps longer than `session_gap_hours` or every
    `max_session_len` check-ins; sessions shorter than `min_session_len` are dropped, then
    users with fewer than `min_sessions` sessions. Every check-in after the first of a
    non-first session is a target; its history is the earlier sessions plus the session
    so far (what is dropped is in no history)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_poi_checkins: int = Field(default=3, ge=1)
    session_gap_hours: float = Field(default=12.0, gt=0)
    max_session_len: int = Field(default=50, ge=2)
    min_session_len: int = Field(default=5, ge=1)
    min_sessions: int = Field(default=2, ge=1)


class TrajectoryConfig(BaseModel):
    """The next-POI papers' pre-processing (GETNext, STHGCN; as STHGCN's public
    `preprocess` does it, see the README): POIs with fewer than `min_poi_checkins`
    check-ins are dropped, then users with fewer than `min_user_checkins`; a user's
    check-ins are cut into trajectories where the gap to the previous one exceeds
    `window_hours`. One global split by days over the filtered data (SplitConfig's
    fractions of its span). A train target is every check-in after the first of its
    trajectory; a valid / test target is only the last check-in of a trajectory of at
    least two, and only if its POI and its user have check-ins in the train period
    (those papers drop the unseen). Every kept check-in is history."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_poi_checkins: int = Field(default=10, ge=1)
    min_user_checkins: int = Field(default=10, ge=1)
    window_hours: float = Field(default=24.0, gt=0)


class SplitConfig(BaseModel):
    """How targets are labelled train / valid / test.

    time (OneLoc): by day: dt >= test_start is test, dt >= valid_start valid, the rest
    train; with no test_start every row is train. A function of dt alone, so daily runs
    and rebuilds agree.
    user_chrono (public next-POI benchmarks): per user, the chronologically first 80% of
    the user's targets in the built range are train, the next 10% valid, the rest test
    (floor of 0.8n and 0.9n; a user with one target is test). Needs the whole range, so
    only range builds use it.
    libcity (the OneLoc paper on Foursquare): the events and targets of LibCity's
    pre-processing (`LibCityConfig`), split per user 80/10/10 like user_chrono.
    trajectory (the next-POI papers): the events and targets of `TrajectoryConfig`,
    split by days like time, the boundaries at the fractions of the filtered data's
    span (computed by the range build unless given).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    protocol: Protocol = "time"
    valid_start: dt_.date | None = None
    test_start: dt_.date | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    libcity: LibCityConfig = LibCityConfig()
    trajectory: TrajectoryConfig = TrajectoryConfig()

    @property
    def per_user(self) -> bool:
        """Labels by the user's own chronology (user_chrono, libcity)."""
        return self.protocol in ("user_chrono", "libcity")

    @property
    def range_only(self) -> bool:
        """Targets or labels that depend on the whole range: range builds only, no
        history state (every protocol but time)."""
        return self.protocol != "time"

    @model_validator(mode="after")
    def _consistent(self) -> SplitConfig:
        if abs(sum(self.fractions) - 1.0) > 1e-9 or min(self.fractions) < 0:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {self.fractions}")
        if self.valid_start and self.test_start and self.valid_start > self.test_start:
            raise ValueError("valid_start must not be after test_start")
        if self.valid_start and not self.test_start:
            raise ValueError("valid_start needs a test_start")
        return self

    @classmethod
    def for_range(
        cls, protocol: str, last: dt_.date, test_start=None, valid_start=None, test_days: int | None = None, valid_days: int | None = None
    ) -> SplitConfig:
        """A split for a range ending on `last`: the time split's boundaries given as days,
        or as the range's last `test_days` (test) and the `valid_days` before them (valid)."""
        if protocol != "time":
            return cls(protocol=protocol)
        if test_days and not test_start:
            test_start = last - dt_.timedelta(days=test_days - 1)
        if valid_days and test_start and not valid_start:
            valid_start = as_date(test_start) - dt_.timedelta(days=valid_days)
        return cls(protocol="time", test_start=test_start or None, valid_start=valid_start or None)


class CorpusConfig(BaseModel):
    """What a source's training rows look like (its registry shape, overridable) and how
    they are cut: cells, split, state retention."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str
    target_actions: tuple[str, ...]
    behaviors: tuple[BehaviorConfig, ...]
    location: Literal["request", "previous_event"]
    cell_config: CellConfig = CellConfig()
    split: SplitConfig = SplitConfig()
    checkpoint_days: int = Field(default=35, ge=1, description="the state as of each of the last this many days is kept")
    checkpoint_weeks: int = Field(default=8, ge=0, description="... and as of each Sunday of this many weeks before them")
    state_buckets: int = Field(default=16, ge=1, le=4096, description="user-hash buckets of the history state")
    state_compact_days: int = Field(default=7, ge=1, description="a state bucket is compacted every this many days")
    events_per_partition: int = Field(default=400_000, ge=1_000, description="kernel memory per task")
    events_per_pass: int = Field(
        default=1_000_000, ge=1, description="a range build runs the kernel in passes over user-hash slices of about this many events"
    )

    @model_validator(mode="after")
    def _valid(self) -> CorpusConfig:
        CorpusShape(target_actions=self.target_actions, behaviors=self.behaviors, location=self.location)
        return self

    @classmethod
    def for_source(cls, source: str, **overrides) -> CorpusConfig:
        """The source's corpus shape from the registry (`geosid.sources.registry`), with
        `overrides` on top."""
        shape = get_source(source).corpus
        return cls.model_validate({"source": source, **shape.model_dump(), **overrides})

    def cells(self) -> CellSystem:
        return self.cell_config.cells()

    def to_record(self) -> dict:
        """As a build records it (`ops.builds.params`): the source, cells and split; the
        other settings come from the source's registry shape when it is restored."""
        return {"source": self.source, **self.cell_config.to_record(), "split": self.split.model_dump(mode="json")}

    @classmethod
    def from_record(cls, params: dict) -> CorpusConfig:
        return cls.for_source(params["source"], cell_config=CellConfig.from_record(params), split=SplitConfig(**params["split"]))

    def kernel_params(self, state_days: tuple[dt_.date, ...]) -> kernel.KernelParams:
        return kernel.KernelParams(
            behaviors=tuple(kernel.KernelBehavior(b.name, tuple(b.actions), b.max_len) for b in self.behaviors),
            target_actions=tuple(self.target_actions),
            location=self.location,
            state_days=state_days,
            state_buckets=self.state_buckets,
        )


def corpus_predicate(config: CorpusConfig, codebook_version: str) -> str:
    """SQL for the rows of the source's corpus under a codebook version."""
    return f"codebook_version = '{codebook_version}' AND source = '{config.source}'"


def sequence_predicate(config: CorpusConfig, codebook_version: str) -> str:
    """SQL for the rows of the source's corpus under a codebook version and the split's protocol."""
    return f"{corpus_predicate(config, codebook_version)} AND {protocol_predicate(config.split.protocol)}"
