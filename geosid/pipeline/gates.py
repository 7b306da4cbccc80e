"""Data-quality gates as a pipeline step's outcome: the suites' results, whether the gate
holds, and how to show them (a passing suite on one line, a failing one in full)."""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass

from geosid.lake.quality import QualityResult


@dataclass
class GateReport:
    what: str  # bronze, silver, corpus
    first: dt_.date
    last: dt_.date
    results: list[QualityResult]

    @property
    def passed(self) -> bool:
        return all(r.success for r in self.results)

    def summary(self) -> str:
        return "\n".join(r.summary().splitlines()[0] if r.success else r.summary() for r in self.results)

    def to_dict(self) -> dict:
        """For XCom: the day, whether the gate holds, per table the failed checks."""
        return {
            "what": self.what,
            "dt": self.first.isoformat(),
            "last": self.last.isoformat(),
            "passed": self.passed,
            "tables": {r.table: {"success": r.success, "rows": r.rows, "failed": [c["check"] for c in r.failed]} for r in self.results},
            "summaries": [r.summary() for r in self.results],
        }
