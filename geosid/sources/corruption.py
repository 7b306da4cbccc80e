"""Bad lines for the synthetic world's event drops: one corruption per reject kind the
quarantine knows, so a synthetic run exercises every reject path.
"""

from __future__ import annotations

import datetime as dt_

import numpy as np

# Corruptions, one per reject kind the quarantine knows (events feed).
CORRUPTIONS = (
    "wrong_column_count",
    "null_id",
    "bad_number",
    "bad_time",
    "bad_coordinate",
    "bad_value",
    "future_event",
    "late_event",
    "duplicate",
    "bad_encoding",
)


def corrupt(data: bytes, day: dt_.date, rate: float, rng: np.random.Generator) -> tuple[bytes, dict[str, int]]:
    """Damage a fraction `rate` of an events drop's lines, one corruption kind per line."""
    lines = data.rstrip(b"\n").split(b"\n")
    n_bad = int(round(rate * len(lines)))
    if n_bad == 0:
        return data, {}
    chosen = np.sort(rng.choice(len(lines), n_bad, replace=False))
    kinds = rng.integers(0, len(CORRUPTIONS), n_bad)
    counts: dict[str, int] = {}
    duplicates = []
    next_day = (day + dt_.timedelta(days=1)).isoformat().encode()
    prev_day = (day - dt_.timedelta(days=1)).isoformat().encode()
    for line_index, kind_index in zip(chosen.tolist(), kinds.tolist()):
        kind = CORRUPTIONS[kind_index]
        f = lines[line_index].split(b"\t")
        if kind == "wrong_column_count":
            f = f[:-2]
        elif kind == "null_id":
            f[1] = b""
        elif kind == "bad_number":
            f[5] = b"4O.12"  # letter O for a zero, as typed by hand
        elif kind == "bad_time":
            f[4] = b"yesterday noon"
        elif kind == "bad_coordinate":
            f[5] = b"131.5"
        elif kind == "bad_value":
            f[3] = b"teleport"
        elif kind == "future_event":
            f[4] = next_day + f[4][10:]
        elif kind == "late_event":
            f[4] = prev_day + f[4][10:]
        elif kind == "duplicate":
            duplicates.append(lines[line_index])
        elif kind == "bad_encoding":
            f[2] = f[2] + b"\xff\xfe"
        lines[line_index] = b"\t".join(f)
        counts[kind] = counts.get(kind, 0) + 1
    # Duplicates are appended copies: the original line stays valid.
    lines.extend(duplicates)
    return b"\n".join(lines) + b"\n", counts
