"""Plots of a SID index for people: per-level code usage, bucket sizes, and a map of the
first-level codes over item locations. numpy + matplotlib (Agg), one PNG each."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(*args, **kwargs):
    import matplotlib  # lazy: only reports plot: loaded there

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: only reports plot: loaded there

    return plt.subplots(*args, **kwargs)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt  # lazy: only reports plot: loaded there

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def code_usage_plot(codes: np.ndarray, level_sizes: list[int], path: Path) -> Path:
    """Items per code, codes sorted by frequency, one panel per level; codes [n, L]."""
    fig, axes = _figure(1, len(level_sizes), figsize=(4 * len(level_sizes), 3))
    for level, ax in enumerate(np.atleast_1d(axes)):
        counts = np.sort(np.bincount(codes[:, level], minlength=level_sizes[level]))[::-1]
        ax.plot(counts)
        ax.set_title(f"level {level + 1}: {np.count_nonzero(counts)}/{level_sizes[level]} codes used")
        ax.set_xlabel("code (by frequency)")
        ax.set_ylabel("items")
    return _save(fig, path)


def bucket_size_plot(bucket_sizes: np.ndarray, path: Path) -> Path:
    """How many code tuples hold 1, 2, ... items (log scale)."""
    fig, ax = _figure(figsize=(5, 3))
    values, counts = np.unique(bucket_sizes, return_counts=True)
    ax.bar(values, counts)
    ax.set_yscale("log")
    ax.set_xlabel("items on one code tuple")
    ax.set_ylabel("code tuples")
    ax.set_title("bucket sizes")
    return _save(fig, path)


def first_level_map(first_codes: np.ndarray, lat: np.ndarray, lon: np.ndarray, path: Path) -> Path:
    """Each item at its location, coloured by its first-level code."""
    fig, ax = _figure(figsize=(6, 6))
    ax.scatter(lon, lat, c=first_codes % 20, cmap="tab20", s=2, linewidths=0)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title("first-level code of each item")
    return _save(fig, path)
