"""Where the benchmarks put their numbers: bench/results/<name>.json, committed.

Every result file names the run that made it: the command, the commit (and whether the
tree had changes), the machine (cores, memory, CPU, GPU if any), the date, and the
numbers. The docs' results pages and the README's headline tables are rendered from
these files (`tools/gen_docs.py`), so a number in the docs can be traced to a run; one
current result per benchmark (a new run replaces the file; git keeps the history).
"""

from __future__ import annotations

import datetime as dt_
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def machine() -> dict:
    """What ran it: cores, memory, CPU model, GPU (where torch sees one), OS, Python."""
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "")
    except OSError:
        pass
    gpu = None
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "cpu": cpu,
        "gpu": gpu,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def provenance(command: str | None = None) -> dict:
    """The run's command, commit and machine, and when it ended (UTC)."""
    return {
        "command": command or " ".join(["python", *[str(a) for a in sys.argv]]),
        "commit": _git("rev-parse", "HEAD"),
        "tree_changed": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": machine(),
        "date": dt_.datetime.now(dt_.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_results(name: str, results: dict, command: str | None = None) -> Path:
    """Write `results` with the run's provenance to bench/results/<name>.json and print
    them; returns the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {"name": name, **provenance(command or results.get("command")), "results": {k: v for k, v in results.items() if k != "command"}}
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(record, indent=2, default=str))
    return path
