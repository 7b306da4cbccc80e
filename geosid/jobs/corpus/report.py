"""What a corpus build did: rows, users, days, state rows written and compacted, timings."""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass, field


@dataclass
class CorpusReport:
    codebook_version: str
    source: str
    first: dt_.date
    last: dt_.date
    mode: str  # "range" | "day"
    protocol: str = "time"
    input_events: int = 0
    events_filtered: int = 0  # left out by the protocol's own filters (libcity sessions, trajectory's rare POIs/users)
    events_without_sid: int = 0
    targets: int = 0
    targets_without_location: int = 0
    states: int = 0  # users with a state as of `last`
    states_written: int = 0  # state rows this build wrote (a day: the users it touched)
    compacted_buckets: list = field(default_factory=list)
    passes: int = 1  # kernel passes over user slices (a range build of a large source)
    splits: dict = field(default_factory=dict)
    split_days: dict = field(default_factory=dict)  # the day bounds a range build computed (trajectory)
    table_versions: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        span = f"{self.first}" if self.first == self.last else f"{self.first}..{self.last}"
        splits = ", ".join(f"{k} {v:,}" for k, v in sorted(self.splits.items()))
        if self.split_days:
            splits += "; " + ", ".join(f"{k} {v}" for k, v in self.split_days.items())
        return (
            f"sequences {self.source} {span} under {self.codebook_version} ({self.mode}): {self.targets:,} targets "
            f"[{splits}] from {self.input_events:,} events, {self.states:,} user states ({self.states_written:,} written); "
            f"left out: {self.events_filtered:,} events by the {self.protocol} filters, "
            f"{self.events_without_sid:,} events without SID, {self.targets_without_location:,} "
            f"targets without a prior location; {self.seconds:.1f}s"
        )

    def to_dict(self) -> dict:
        return {
            "codebook_version": self.codebook_version,
            "source": self.source,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "mode": self.mode,
            "protocol": self.protocol,
            "input_events": self.input_events,
            "events_filtered": self.events_filtered,
            "events_without_sid": self.events_without_sid,
            "targets": self.targets,
            "targets_without_location": self.targets_without_location,
            "states": self.states,
            "states_written": self.states_written,
            "compacted_buckets": list(self.compacted_buckets),
            "passes": self.passes,
            "splits": self.splits,
            "split_days": {k: str(v) for k, v in self.split_days.items()},
            "table_versions": self.table_versions,
            "seconds": round(self.seconds, 2),
        }
