"""Run records: every training run writes `<lake_root>/_models/<run_id>/` with `model.pt`
(the weights) and `run.json` (kind, parent, the pinned snapshot manifest, the model and
training configs, metrics). Nothing else knows this layout.
"""

from __future__ import annotations

import dataclasses
import datetime as dt_
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from geosid.errors import UnknownNameError

RUN_KINDS = ("pretrain", "dpo")


@dataclass(frozen=True)
class RunRecord:
    """A training run's record (`run.json`): what it read, how it was configured, what it
    measured. Written by `save_run`, read by `read_run` / `list_runs` / `find_run`."""

    run_id: str
    kind: str  # pretrain | dpo
    manifest: dict  # the pinned snapshot: lake, codebook_version, table_versions, filters
    model_config: dict
    train_config: dict
    metrics: dict  # training history, and `eval`: per method, metric -> value
    device: str = "cpu"
    parent: str | None = None  # dpo: the pretrained run
    rows: dict[str, int] = field(default_factory=dict)  # per split
    parameters: int = 0
    seconds: float = 0.0
    streamed: bool = False
    unknown_targets: dict = field(default_factory=dict)  # per split: targets not in the SID map
    item_embeddings: int | None = None
    parent_eval: dict | None = None  # dpo: the parent's evaluation

    @property
    def table_versions(self) -> dict[str, int]:
        return dict(self.manifest.get("table_versions", {}))

    @property
    def codebook_version(self) -> str:
        return self.manifest.get("codebook_version", "")

    @property
    def evaluated(self) -> bool:
        return "eval" in self.metrics

    def evaluation(self, method: str = "oneloc") -> dict[str, float]:
        """Test metrics of `method` (the model: oneloc or sasrec; or a baseline)."""
        return self.metrics["eval"][method]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        return cls(**data)


def models_root(lake_root: str | Path) -> Path:
    return Path(lake_root) / "_models"


def new_run_id(kind: str) -> str:
    return f"{kind}-{dt_.datetime.now(dt_.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_dir(lake_root: str | Path, run_id: str) -> Path:
    return models_root(lake_root) / run_id


def save_run(lake_root: str | Path, record: RunRecord, state_dict: dict) -> Path:
    """Write a run's weights and record; returns its folder."""
    folder = run_dir(lake_root, record.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state_dict, folder / "model.pt")
    # the record last: a run is listed (list_runs reads run.json) only once its weights are whole
    tmp = folder / f"run.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(record.to_dict(), indent=2, default=str))
    os.replace(tmp, folder / "run.json")
    return folder


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temporary name, then rename: a kill mid-write leaves the previous
    file (or none), never half of one."""
    import torch  # lazy: heavy (seconds to import): loaded where it is used

    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load(path: Path) -> RunRecord:
    return RunRecord.from_dict(json.loads(path.read_text()))


def list_runs(lake_root: str | Path, kind: str | None = None) -> list[RunRecord]:
    """Every run's record (oldest first by write time), optionally of one kind."""
    records = []
    for path in models_root(lake_root).glob("*/run.json"):
        record = _load(path)
        if kind is None or record.kind == kind:
            records.append((path.stat().st_mtime, record.run_id, record))
    return [record for _, _, record in sorted(records, key=lambda r: (r[0], r[1]))]


def find_run(lake_root: str | Path, run_id: str) -> RunRecord | None:
    """The run's record, or None when no run of that id was recorded."""
    path = run_dir(lake_root, run_id) / "run.json"
    return _load(path) if path.exists() else None


def read_run(lake_root: str | Path, run_id: str) -> RunRecord:
    record = find_run(lake_root, run_id)
    if record is None:
        known = ", ".join(r.run_id for r in list_runs(lake_root)) or "none yet (geosid train pretrain)"
        raise UnknownNameError(f"no run {run_id!r} under {models_root(lake_root)}; known: {known}")
    return record


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
            return runs[-1].run_id
    return None
