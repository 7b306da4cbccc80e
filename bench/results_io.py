"""Where the benchmarks put their numbers: bench/results/<name>.json (not committed)."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(name: str, results: dict) -> Path:
    """Write `results` to bench/results/<name>.json and print them; returns the path."""
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return path
