"""Landing: raw source files -> numbered, decoded lines in Parquet, ready for the engine.

A source path is either one file (a whole-history export such as TSMC2014) or a folder
of daily drops laid out as `.../dt=YYYY-MM-DD/<file>` (plain or .gz). Drops carry their
logical date; whole-history files do not, and their lines are dated by their content.

A drop is complete when its folder holds the marker file (`_SUCCESS`, as Hadoop and Spark
writers leave it), written by the producer after the day's files: a day without it has
not arrived (or is still arriving), whatever files are already there. A day with no
events is a drop folder with the marker and empty files. Names starting with `_` or `.`
are never data.

Decoding happens here, not in the engine, because engines read text as UTF-8 only and
TSMC2014 is latin-1. A line that does not decode, or that holds control characters, is
landed with `decode_error` set (its raw text escaped) so it reaches bronze.rejects.
"""

from __future__ import annotations

import datetime as dt_
import gzip
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from geosid.errors import NotFoundError

LANDED_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), False),
        pa.field("source_file", pa.string(), False),
        pa.field("line_no", pa.int64(), False),
        pa.field("raw", pa.string(), False),
        pa.field("decode_error", pa.string(), True),
        pa.field("drop_date", pa.date32(), True),
    ]
)

_DROP_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
# The marker a producer writes into a drop folder once the day's files are whole.
DROP_MARKER = "_SUCCESS"
# C0 control characters other than tab, plus DEL: never legitimate inside a record.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class RawFile:
    path: Path
    name: str  # recorded in the tables: relative to the source root, stable across machines
    drop_date: dt_.date | None


def discover(root: Path, first: dt_.date | None = None, last: dt_.date | None = None) -> list[RawFile]:
    """The raw files of a source: the file itself, or the drop files under a folder.

    Drops outside [first, last] are skipped (they belong to other runs); files without a
    drop date are always returned and their lines are filtered by date after parsing.
    """
    root = Path(root)
    if root.is_file():
        return [RawFile(root, root.name, None)]
    if not root.is_dir():
        raise NotFoundError(f"raw source {root} does not exist: pass an existing file or folder of dt=YYYY-MM-DD drops")
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))):
        drop_date = None
        for part in path.relative_to(root).parts[:-1]:
            match = _DROP_DIR.match(part)
            if match:
                drop_date = dt_.date.fromisoformat(match.group(1))
        if drop_date is not None and ((first and drop_date < first) or (last and drop_date > last)):
            continue
        files.append(RawFile(path, str(path.relative_to(root)), drop_date))
    return files


@dataclass(frozen=True)
class DropDay:
    """A day's drop folder(s) under a feed root: whether the marker says it is whole, and a
    fingerprint of its files (names, sizes, modification times) that a re-delivery changes."""

    day: dt_.date
    complete: bool
    files: tuple[tuple[str, int, int], ...]  # (name relative to the root, bytes, mtime_ns), marker included

    def fingerprint(self) -> str:
        return json.dumps([list(f) for f in self.files])


def drop_days(root: Path, marker: str | None = DROP_MARKER) -> dict[dt_.date, DropDay]:
    """The drop days under a feed root (a folder of `dt=YYYY-MM-DD` drops; {} for a
    single file). With `marker` None a drop folder counts as complete as soon as it exists
    (producers that write no marker: only safe when folders appear whole, e.g. by rename)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    found: dict[dt_.date, list[tuple[str, int, int]]] = {}
    folders: dict[dt_.date, list[Path]] = {}
    for folder in root.rglob("dt=*"):
        match = _DROP_DIR.match(folder.name)
        if not match or not folder.is_dir():
            continue
        day = dt_.date.fromisoformat(match.group(1))
        folders.setdefault(day, []).append(folder)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            found.setdefault(day, []).append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return {
        day: DropDay(
            day,
            complete=all(marker is None or (folder / marker).is_file() for folder in paths),
            files=tuple(sorted(found.get(day, []))),
        )
        for day, paths in sorted(folders.items())
    }


# (path, bytes, mtime_ns) -> the last day a whole-history file holds (a file is read once)
_LAST_DAYS: dict[tuple[str, int, int], dt_.date | None] = {}


def last_day_of_file(path: Path, day_of_line: Callable[[bytes], dt_.date | None]) -> dt_.date | None:
    """The latest day of a whole-history file's readable lines (`day_of_line` dates a raw
    line, None when it cannot): such a file holds every day up to this one and no later
    day. No engine: what a sensor asks. Read once per file state in a process."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _LAST_DAYS:
        last = None
        opener = gzip.open if Path(path).suffix == ".gz" else open
        with opener(path, "rb") as handle:
            for line in handle:
                day = day_of_line(line)
                if day is not None and (last is None or day > last):
                    last = day
        _LAST_DAYS[key] = last
    return _LAST_DAYS[key]


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()


def decode_lines(data: bytes, encoding: str) -> tuple[list[str], list[str | None]]:
    """Split raw bytes into lines (\\n or \\r\\n) and decode each; returns (lines, errors).

    The fast path decodes the whole buffer at once; only when that fails, or when a
    control character is present, is the buffer examined line by line.
    """
    if not data:
        return [], []
    # A final newline ends the last line; it does not start an empty one ("a\n" is one
    # line, "\n" is one empty line, as `wc -l` counts them).
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text = None
    if text is not None and not _CONTROL.search(text.replace("\r\n", "\n")):
        lines = text.split("\n")
        if "\r" in text:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        return lines, [None] * len(lines)
    lines, errors = [], []
    for raw_line in data.split(b"\n"):
        if raw_line.endswith(b"\r"):
            raw_line = raw_line[:-1]
        try:
            line = raw_line.decode(encoding)
            error = None
        except UnicodeDecodeError as exc:
            line = raw_line.decode(encoding, errors="backslashreplace")
            error = f"not valid {encoding} at byte {exc.start}"
        if error is None:
            control = _CONTROL.search(line)
            if control:
                error = f"control character U+{ord(control.group()):04X} at column {control.start() + 1}"
                line = line.encode("unicode_escape").decode("ascii")
        lines.append(line)
        errors.append(error)
    return lines, errors


def land(
    files: list[RawFile],
    source: str,
    encoding: str,
    out_dir: Path,
    *,
    progress: bool = True,
) -> tuple[Path, int]:
    """Write the numbered lines of `files` as Parquet under `out_dir` (replaced whole).

    Returns the folder and the number of lines landed.
    """

    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    total = 0
    for index, raw_file in enumerate(tqdm(files, desc=f"landing {source}", unit="file", disable=not progress or len(files) < 2)):
        lines, errors = decode_lines(_read_bytes(raw_file.path), encoding)
        n = len(lines)
        table = pa.table(
            {
                "source": pa.array([source] * n, pa.string()) if n else pa.array([], pa.string()),
                "source_file": pa.array([raw_file.name] * n, pa.string()),
                "line_no": pa.array(range(1, n + 1), pa.int64()),
                "raw": pa.array(lines, pa.string()),
                "decode_error": pa.array(errors, pa.string()),
                "drop_date": pa.array([raw_file.drop_date] * n, pa.date32()),
            },
            schema=LANDED_SCHEMA,
        )
        pq.write_table(table, out_dir / f"part-{index:05d}.parquet", compression="zstd")
        total += n
    if not files:
        pq.write_table(LANDED_SCHEMA.empty_table(), out_dir / "part-00000.parquet")
    return out_dir, total
