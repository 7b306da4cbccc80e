"""Run records: every training run writes `<lake_root>/_models/<run_id>/` with `model.pt`
(the weights) and `run.json` (kind, parent, the pinned snapshot manifest, the model and
training configs, metrics). Nothing else knows this layout.
"""

from __future__ import annotations

import datetime as dt_
import json
import os
import uuid
from pathlib import Path

from geosid.errors import UnknownNameError

RUN_KINDS = ("pretrain", "dpo")


def models_root(lake_root: str | Path) -> Path:
    return Path(lake_root) / "_models"


def new_run_id(kind: str) -> str:
    return f"{kind}-{dt_.datetime.now(dt_.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_dir(lake_root: str | Path, run_id: str) -> Path:
    return models_root(lake_root) / run_id


def save_run(lake_root: str | Path, run_id: str, state_dict: dict, meta: dict) -> Path:
    """Write a run's weights and record; returns its folder."""

    folder = run_dir(lake_root, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state_dict, folder / "model.pt")
    # the record last: a run is listed (list_runs reads run.json) only once its weights are whole
    tmp = folder / f"run.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, folder / "run.json")
    return folder


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temporary name, then rename: a kill mid-write leaves the previous
    file (or none), never half of one."""
    import torch

    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def list_runs(lake_root: str | Path, kind: str | None = None) -> list[dict]:
    """Every run's record (oldest first by write time), optionally of one kind."""
    records = []
    for path in models_root(lake_root).glob("*/run.json"):
        meta = json.loads(path.read_text())
        if kind is None or meta.get("kind") == kind:
            records.append((path.stat().st_mtime, meta["run_id"], meta))
    return [meta for _, _, meta in sorted(records, key=lambda r: (r[0], r[1]))]


def find_run(lake_root: str | Path, run_id: str) -> dict | None:
    """The run's record, or None when no run of that id was recorded."""
    path = run_dir(lake_root, run_id) / "run.json"
    return json.loads(path.read_text()) if path.exists() else None


def read_run(lake_root: str | Path, run_id: str) -> dict:
    path = run_dir(lake_root, run_id) / "run.json"
    if not path.exists():
        known = ", ".join(m["run_id"] for m in list_runs(lake_root)) or "none yet (geosid train pretrain)"
        raise UnknownNameError(f"no run {run_id!r} under {models_root(lake_root)}; known: {known}")
    return json.loads(path.read_text())


def weights_path(lake_root: str | Path, run_id: str) -> Path:
    """The run's model weights (the best epoch's, for runs that select on validation)."""
    return run_dir(lake_root, run_id) / "model.pt"


def checkpoint_path(folder: Path) -> Path:
    """A run's resumable training state (model, optimizer, schedule, epoch, history)."""
    return Path(folder) / "checkpoint.pt"


def latest_run(lake_root: str | Path, *kinds: str) -> str | None:
    """The newest run of the first kind that has one (e.g. latest_run(root, "dpo", "pretrain"))."""
    for kind in kinds or RUN_KINDS:
        runs = list_runs(lake_root, kind)
        if runs:
            return runs[-1]["run_id"]
    return None
