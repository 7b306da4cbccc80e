"""Warm-starting a SID decoder from a run trained under an earlier codebook version.

A new codebook version renames, merges and splits codes; `index.sid_code_map` says, for
each code of each level of the new version, the old code most of its items had. The new
model starts from the old run's weights with every table indexed by SID tokens remapped
through it (row `new_code` of the SID embeddings, of the decoder's token embeddings and
of the output heads takes the old row of its old code), the item-id rows remapped by
item id, the cell rows by cell id; every other weight of the same shape is copied.
Rows with no counterpart (a code none of whose items the old version had, a new item, a
new cell) keep their fresh initialization.

    maps = level_maps(lake_root, from_version, to_version, level_sizes)  # per level [size] old code or -1
    report = warm_start(model, vocab, previous_model, previous_vocab, maps)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from geosid.errors import NotFoundError
from geosid.lake import Lake
from geosid.schemas import index
from geosid.trainer.data import Vocab


def level_maps(lake_root, from_version: str, to_version: str, level_sizes: tuple[int, ...]) -> list[np.ndarray]:
    """Per level, [size] the old code of each new code (-1: none), from index.sid_code_map;
    the same version maps every code to itself."""
    if from_version == to_version:
        return [np.arange(size) for size in level_sizes]
    lake = Lake(Path(lake_root))
    rows = lake.pinned_files(index.SID_CODE_MAP).dataset().to_table().to_pandas() if lake.exists(index.SID_CODE_MAP) else None
    if rows is not None:
        rows = rows[(rows.from_version == from_version) & (rows.to_version == to_version)]
    if rows is None or rows.empty:
        raise NotFoundError(
            f"no index.sid_code_map from {from_version} to {to_version}: write it with geosid codebook migrate --version {to_version} --from {from_version}"
        )
    maps = []
    for level, size in enumerate(level_sizes):
        out = np.full(size, -1, np.int64)
        mine = rows[(rows.level == level) & (rows.new_code < size)]
        out[mine.new_code.to_numpy()] = mine.old_code.to_numpy()
        maps.append(out)
    return maps


@dataclass
class WarmStartReport:
    """What the new model took from the old run."""

    copied: list[str] = field(default_factory=list)  # same shape, copied whole
    remapped: dict[str, float] = field(default_factory=dict)  # name -> share of rows taken from the old run
    fresh: list[str] = field(default_factory=list)  # kept their initialization

    def summary(self) -> str:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(self.remapped.items()))
        return f"warm start: {len(self.copied)} tensors copied, {len(self.remapped)} remapped ({shares}), {len(self.fresh)} fresh"

    def to_dict(self) -> dict:
        return {"copied": len(self.copied), "remapped": self.remapped, "fresh": self.fresh}


def _rows(new: torch.Tensor, old: torch.Tensor, source: np.ndarray) -> float:
    """new[i] = old[source[i]] where source[i] >= 0 (and a row of old); the share taken."""
    source = np.asarray(source, np.int64)[: new.shape[0]]
    ok = (source >= 0) & (source < old.shape[0])
    rows = torch.from_numpy(np.flatnonzero(ok))
    if len(rows):
        new[rows] = old[torch.from_numpy(source[ok])].to(new.dtype)
    return float(ok.mean()) if len(ok) else 0.0


def _item_rows(vocab: Vocab, previous: Vocab) -> np.ndarray:
    """[new item-embedding rows] the old row of each (padding and rare rows map to themselves)."""
    old_row = dict(zip(previous.item_ids.tolist(), previous.item_embed.tolist()))
    out = np.full(vocab.n_item_embeddings, -1, np.int64)
    out[:2] = [0, 1]
    for item, row in zip(vocab.item_ids.tolist(), vocab.item_embed.tolist()):
        if row >= 2 and old_row.get(item, 1) >= 2:
            out[row] = old_row[item]
    return out


def _cell_rows(vocab: Vocab, previous: Vocab) -> np.ndarray:
    """[cells + 1] the old row of each cell's (0: unknown maps to itself)."""
    old = {cell: i + 1 for i, cell in enumerate(previous.cells)}
    return np.array([0, *[old.get(cell, -1) for cell in vocab.cells]], np.int64)


def token_sources(name: str, levels: int, maps: list[np.ndarray], digits: int) -> np.ndarray | None:
    """The row sources of a SID-indexed weight (`code_emb.l`, `tok_emb.l`, `heads.l`), None otherwise."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] not in ("code_emb", "tok_emb", "heads"):
        return None
    level = int(parts[1])
    return maps[level] if level < levels else np.arange(digits)  # the digit position: the same digits


def warm_start(model: torch.nn.Module, vocab: Vocab, previous: torch.nn.Module, previous_vocab: Vocab, maps: list[np.ndarray]) -> WarmStartReport:
    """Start `model` (for `vocab`) from `previous` (trained for `previous_vocab`); `maps`
    per level, see `level_maps`. In place; returns what was taken."""
    report = WarmStartReport()
    old = previous.state_dict()
    levels = len(maps)
    item_rows, cell_rows = _item_rows(vocab, previous_vocab), _cell_rows(vocab, previous_vocab)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name not in old:
                report.fresh.append(name)
                continue
            source = token_sources(name, levels, maps, tensor.shape[0] if tensor.ndim else 0)
            if source is None and name == "item_emb.weight":
                source = item_rows
            elif source is None and name == "cell_emb.weight":
                source = cell_rows
            if source is not None:
                report.remapped[name] = _rows(tensor, old[name], source)
            elif tensor.shape == old[name].shape:
                tensor.copy_(old[name])
                report.copied.append(name)
            else:
                report.fresh.append(name)
    return report
