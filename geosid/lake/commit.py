"""Commit the engine's staged Parquet files into a Delta table as they are.

The engine writes a frame once, as Hive-partitioned Parquet under the lake's staging
folder. Instead of reading those files back and having delta-rs write them again, the
files are moved into the table folder and committed in one delta-rs transaction: add
actions for them (with statistics from their footers) and remove actions for exactly the
current files whose rows all match the replace predicate. This needs three things the
caller checks here, and falls back to the row-level rewrite when one is missing:

- every staged file has the registered schema (names and types; the engine's Parquet
  types are the registered Arrow types on Sail);
- every staged row matches the predicate (decided from partition folders and footer
  statistics, `geosid.lake.predicate`): a row outside still fails the write;
- every current file of the table is decided: all of its rows match (removed whole) or
  none does (kept). A file mixing matching and other rows would need a rewrite.

A writer killed after the move and before the commit leaves files no snapshot
references: readers never see them, and vacuum removes them.
"""

from __future__ import annotations

import datetime as dt_
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake.transaction import AddAction, RemoveAction

from geosid.lake.predicate import ALL, MAX_EXACT_STAT_CHARS, NONE, Atom, ColumnFacts, verdict

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Path parts that need no URI escaping in the Delta log (anything else: the rewrite).
_SAFE_PART = re.compile(r"^[A-Za-z0-9._=+-]+$")


@dataclass
class StagedFile:
    path: Path
    relative: tuple[str, ...]  # partition folders under the stage
    partition_values: dict[str, str | None]
    rows: int
    facts: dict[str, ColumnFacts]
    stats: str  # Delta add-action statistics (JSON)


def _normalized(t: pa.DataType) -> pa.DataType:
    """A type with list item names and nullability dropped (writers name them differently)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_normalized(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(t.field(i).name, _normalized(t.field(i).type)) for i in range(t.num_fields)])
    return t


def _text(value) -> str | None:
    """A statistic as the text predicates compare (strings, dates; integers as decimal
    text, which only numeric atoms use)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dt_.date) and not isinstance(value, dt_.datetime):
        return value.isoformat()
    return None


def _footer_stats(file: pq.ParquetFile, fields: list[pa.Field]) -> tuple[int, dict, dict]:
    """(rows, Delta stats dict, text facts) from the row-group statistics of the
    top-level primitive columns; min/max only where exact (short strings, integers, dates)."""
    md = file.metadata
    columns = {md.row_group(0).column(j).path_in_schema: j for j in range(md.num_columns)} if md.num_row_groups else {}
    rows = md.num_rows
    stats = {"numRecords": rows, "minValues": {}, "maxValues": {}, "nullCount": {}}
    facts = {}
    for field in fields:
        kind = field.type
        j = columns.get(field.name)
        if j is None or not (
            pa.types.is_string(kind)
            or pa.types.is_integer(kind)
            or pa.types.is_date32(kind)
            or pa.types.is_timestamp(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind)
        ):
            continue
        groups = [md.row_group(i).column(j).statistics for i in range(md.num_row_groups)]
        if any(s is None or not s.has_null_count for s in groups):
            continue
        nulls = sum(s.null_count for s in groups)
        stats["nullCount"][field.name] = nulls
        with_values = [s for s in groups if s.num_values > 0]
        lo = hi = None
        if with_values and all(s.has_min_max for s in with_values):
            lo, hi = min(s.min for s in with_values), max(s.max for s in with_values)
            short = pa.types.is_string(kind) and len(lo) < MAX_EXACT_STAT_CHARS and len(hi) < MAX_EXACT_STAT_CHARS
            exact = short or pa.types.is_integer(kind) or pa.types.is_date32(kind)
            if exact:
                stats["minValues"][field.name] = lo.isoformat() if isinstance(lo, dt_.date) else lo
                stats["maxValues"][field.name] = hi.isoformat() if isinstance(hi, dt_.date) else hi
            else:
                lo = hi = None
        facts[field.name] = ColumnFacts(_text(lo), _text(hi), nulls, rows)
    return rows, stats, facts


def staged_files(stage: Path, schema: pa.Schema, partition_by: tuple[str, ...]) -> list[StagedFile] | None:
    """The engine's files under `stage`, each with its partition values (Hive folders) and
    footer statistics; None when one cannot be committed as it is (another schema, a
    partition layout other than `partition_by`, a name needing escapes)."""
    data_fields = [f for f in schema if f.name not in partition_by]
    want = [(f.name, _normalized(f.type)) for f in data_fields]
    out = []
    for path in sorted(stage.rglob("*.parquet")) if stage.exists() else []:
        relative = path.relative_to(stage).parts
        if not all(_SAFE_PART.match(part) for part in relative):
            return None
        values = {}
        for part in relative[:-1]:
            key, _, value = part.partition("=")
            values[key] = None if value == HIVE_NULL else unquote(value)
        if list(values) != list(partition_by):
            return None
        file = pq.ParquetFile(path)
        got = [(f.name, _normalized(f.type)) for f in file.schema_arrow]
        if got != want:
            return None
        rows, stats, facts = _footer_stats(file, data_fields)
        facts.update({k: ColumnFacts.constant(v, rows) for k, v in values.items()})
        out.append(StagedFile(path, relative[:-1], values, rows, facts, json.dumps(stats)))
    return out


def _current_files(table) -> list[dict]:
    """The snapshot's files: path, size, partition values (text) and text facts."""
    actions = pa.table(table.get_add_actions(flatten=True))
    names = actions.column_names
    partitions = [n.removeprefix("partition.") for n in names if n.startswith("partition.")]
    columns = {n.removeprefix("min."): n for n in names if n.startswith("min.")}
    out = []
    for row in actions.to_pylist():
        rows = row.get("num_records")
        values = {p: (_text(row[f"partition.{p}"]) if row[f"partition.{p}"] is not None else None) for p in partitions}
        facts = {p: ColumnFacts.constant(v, rows or 0) for p, v in values.items()}
        if rows is not None:
            for column, key in columns.items():
                facts[column] = ColumnFacts(_text(row[key]), _text(row.get(f"max.{column}")), row.get(f"null_count.{column}"), rows)
        out.append({"path": row["path"], "size": row["size_bytes"], "partition_values": values, "facts": facts})
    return out


def commit_staged(
    table_path: str, staged: list[StagedFile], clauses: list[list[Atom]], partition_by: tuple[str, ...], predicate: str | None = None
) -> bool:
    """Replace the rows matching `clauses` (parsed from `predicate`, which the commit
    records as `geosid.predicate` in its history entry) with the staged files in one
    transaction. False (nothing changed) when a staged row may lie outside the predicate
    or a current file is only partly replaced: the caller rewrites instead."""

    if any(verdict(clauses, f.facts) != ALL for f in staged):
        return False
    table = DeltaTable(table_path)
    removed = []
    for current in _current_files(table):
        decided = verdict(clauses, current["facts"])
        if decided == ALL:
            removed.append(current)
        elif decided != NONE:
            return False
    now = int(time.time() * 1000)
    actions = []
    prefix = uuid.uuid4().hex
    for f in staged:
        if f.rows == 0:
            continue
        relative = Path(*f.relative, f"{prefix}-{f.path.name}")
        target = Path(table_path) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f.path, target)  # same filesystem: a rename, not a copy
        actions.append(AddAction(relative.as_posix(), target.stat().st_size, f.partition_values, now, True, f.stats))
    actions += [RemoveAction(r["path"], True, now, size=r["size"], partition_values=r["partition_values"]) for r in removed]
    recorded = CommitProperties(custom_metadata={"geosid.operation": "replace", "geosid.predicate": predicate or "true"})
    table.create_write_transaction(actions, mode="append", schema=table.schema(), partition_by=list(partition_by) or None, commit_properties=recorded)
    return True
