"""Data-quality gates as a pipeline step's outcome: the suites' results, whether the gate
holds, and how to show them (a passing suite on one line, a failing one in full)."""

from __future__ import annotations

import datetime as dt_
from collections.abc import Callable
from dataclasses import dataclass

from geosid.errors import QualityGateError
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


def gate_outcome(report, log: Callable[[str], None] = print) -> dict:
    """A validation step's outcome for XCom (a GateReport, or a SkippedStep with nothing to
    check): its summaries logged, and QualityGateError when the gate does not hold, so the
    task that ran it fails and later tasks do not run on bad data."""
    outcome = report.to_dict()
    for summary in outcome.pop("summaries", []):
        log(summary)
    if not outcome["passed"]:
        failed = sorted(t for t, r in outcome["tables"].items() if not r["success"])
        raise QualityGateError(f"{outcome.get('what', 'data')}-quality gate failed for {outcome['dt']}: {', '.join(failed)}")
    return outcome
