"""Pipeline steps over the lake as a whole: what tables there are, their history, SQL for
analysts, and writing a synthetic world to ingest."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from pyspark.errors.exceptions.base import PySparkException
from pyspark.sql import functions as F

from geosid.config import Settings
from geosid.errors import NotFoundError, QueryError
from geosid.lake import Lake
from geosid.pipeline.context import Context, use
from geosid.sources.synthetic_world import WorldConfig, write_world


@dataclass
class TableInfo:
    name: str
    table_version: int | None  # None: not created yet
    rows: int = 0
    days: int | None = None  # partitioned tables: distinct days
    first: object = None
    last: object = None


def tables(*, ctx: Context | None = None, lake_root: str | None = None) -> list[TableInfo]:
    """Every registered table: its version, rows and (partitioned) days."""

    out = []
    with use(ctx, lake_root, reads="tables") as ctx:
        lake = ctx.lake
        for spec in lake.registry:
            if not lake.exists(spec):
                out.append(TableInfo(spec.name, None))
                continue
            df = lake.read(spec)
            if spec.partition_by:
                row = df.agg(
                    F.count(F.lit(1)).alias("n"), F.countDistinct("dt").alias("days"), F.min("dt").alias("first"), F.max("dt").alias("last")
                ).collect()[0]
                out.append(TableInfo(spec.name, lake.table_version(spec), row["n"], row["days"], row["first"], row["last"]))
            else:
                out.append(TableInfo(spec.name, lake.table_version(spec), df.count()))
    return out


def format_tables(infos: list[TableInfo]) -> str:
    lines = [f"{'table':<24}{'version':>8}{'rows':>12}{'days':>7}  first .. last"]
    for t in infos:
        if t.table_version is None:
            lines.append(f"{t.name:<24}{'-':>8}{'-':>12}{'-':>7}  (not created yet)")
        elif t.days is None:
            lines.append(f"{t.name:<24}{t.table_version:>8}{t.rows:>12,}{'':>7}")
        else:
            span = f"{t.first} .. {t.last}" if t.rows else ""
            lines.append(f"{t.name:<24}{t.table_version:>8}{t.rows:>12,}{t.days:>7}  {span}")
    return "\n".join(lines)


def history(table: str, *, lake_root: str | None = None, ctx: Context | None = None) -> list[dict]:
    """A table's Delta history (delta-rs; no engine)."""

    lake = ctx.lake if ctx is not None else Lake(Settings.from_env(lake_root=lake_root).lake_root)
    spec = lake.spec(table)
    if not lake.exists(spec):
        raise NotFoundError(f"table {spec.name} does not exist under {lake.root} yet")
    return lake.history(spec)


_NAMED_COLUMN = (re.compile(r'Identifier\("([^"]+)"\)\]\) is missing'), re.compile(r"with name `([^`]+)` cannot be resolved"))
_FROM = re.compile(r"\b(?:from|join)\s+([A-Za-z_][\w.]*)", re.IGNORECASE)


def _explain(exc: Exception, query: str, lake) -> str:
    """One line: what the engine refused, naming the column or table, and what is valid."""
    message = " ".join(str(exc).split())
    views = {}
    for spec in lake.existing_tables():
        for name in (spec.short_name, spec.name.replace(".", "_")):
            views[name.lower()] = spec
    for pattern in _NAMED_COLUMN:
        match = pattern.search(message)
        if match:
            used = [views[n.lower()] for n in _FROM.findall(query) if n.lower() in views]
            listed = "; ".join(f"columns of {s.short_name}: {', '.join(s.columns)}" for s in used)
            return f"unknown column {match.group(1).split('.')[-1]!r} in the query" + (f"; {listed}" if listed else "")
    if "TABLE_OR_VIEW_NOT_FOUND" in message or "Table not found" in message:
        missing = re.search(r"not found: ([\w.`]+)", message)
        name = missing.group(1).strip("`") if missing else "?"
        return f"unknown table {name!r}; tables: {', '.join(sorted({s.short_name for s in views.values()})) or 'none yet'}"
    if "expected" in message and ("found" in message or "syntax" in message.lower()) or "PARSE_SYNTAX_ERROR" in message:
        return f"SQL syntax error: {message[:300]}"
    return f"the engine refused the query: {message[:300]}"


# Statements `geosid sql` runs: queries and looking at the catalog; anything else writes
# or changes the session. A query's first word, or (WITH) the word after its CTEs.
_QUERY_WORDS = {"SELECT", "WITH", "FROM", "VALUES", "TABLE", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"}
_WRITE_WORDS = {
    "INSERT",
    "CREATE",
    "DROP",
    "ALTER",
    "DELETE",
    "UPDATE",
    "MERGE",
    "TRUNCATE",
    "REPLACE",
    "CACHE",
    "UNCACHE",
    "REFRESH",
    "SET",
    "RESET",
    "ADD",
    "LOAD",
    "MSCK",
    "USE",
    "ANALYZE",
    "OPTIMIZE",
    "VACUUM",
    "RESTORE",
    "COPY",
    "GRANT",
    "REVOKE",
    "CLEAR",
    "DECLARE",
    "EXECUTE",
    "CALL",
    "REPAIR",
    "COMMENT",
    "LIST",
    "DFS",
    "UNSET",
}
_TOKEN = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|[A-Za-z_]\w*|[();]|\S", re.DOTALL)


def read_only_statement(query: str) -> str | None:
    """None when `query` only reads; else what it is (its verb), for the refusal. Comments,
    string literals and quoted names are skipped; a second statement is refused."""
    tokens = [t for t in _TOKEN.findall(query) if not t.startswith(("--", "/*", "'", '"', "`"))]
    words, depth = [], 0  # (word, paren depth, called like a function)
    for k, token in enumerate(tokens):
        if token == "(":
            depth += 1
        elif token == ")":
            depth = max(0, depth - 1)
        elif token == ";":
            words.append((";", depth, False))
        elif token[0].isalpha() or token[0] == "_":
            words.append((token.upper(), depth, k + 1 < len(tokens) and tokens[k + 1] == "("))
    while words and words[-1][0] == ";":
        words.pop()
    if not words:
        return None
    if any(w == ";" for w, _, _ in words):
        return "more than one statement"
    first = words[0][0]
    if first not in _QUERY_WORDS:  # a command; a word that is none (a typo) is the engine's syntax error
        return first if first in _WRITE_WORDS else None
    verbs = [w for w, d, call in words[1:] if d == 0 and not call and w in _WRITE_WORDS | _QUERY_WORDS - {"WITH", "EXPLAIN"}]
    if first == "WITH" or first == "EXPLAIN":  # the statement after the CTEs, or the one explained
        return verbs[0] if verbs and verbs[0] in _WRITE_WORDS else None
    if first == "FROM":  # FROM t INSERT INTO ... (multi-insert)
        return next((w for w in verbs if w in _WRITE_WORDS), None)
    return None


def sql(query: str, limit: int = 100, *, ctx: Context | None = None, lake_root: str | None = None):
    """Run SQL over the lake's tables (by short name, `events`, or layer_name,
    `bronze_events`); returns a pandas frame of at most `limit` rows. Read-only: a
    statement that would write or change the session is refused before the engine sees
    it (the tables change through geosid's steps only)."""

    verb = read_only_statement(query)
    if verb is not None:
        raise QueryError(f"geosid sql only reads: a {verb} statement is refused (SELECT, WITH, SHOW, DESCRIBE and EXPLAIN run)")
    with use(ctx, lake_root, reads="sql") as ctx:
        ctx.lake.register_views()
        try:
            return ctx.spark.sql(query).limit(limit).toPandas()
        except PySparkException as exc:
            raise QueryError(_explain(exc, query, ctx.lake)) from exc


@dataclass
class SynthReport:
    out: Path
    manifest: dict
    seconds: float

    def summary(self) -> str:
        totals, days = self.manifest["totals"], self.manifest["config"]["n_days"]
        return (
            f"wrote {totals['events']:,} events and {totals['items']:,} items over {days} days to {self.out} "
            f"in {self.seconds:.1f}s ({totals['events'] / max(self.seconds, 1e-9) * 60:,.0f} events/min)"
        )


def synth(out: str | Path, *, progress: bool = False, **world) -> SynthReport:
    """Write a synthetic local-life world (WorldConfig fields as keywords) as raw drops."""

    started = time.perf_counter()
    manifest = write_world(out, WorldConfig(**world), progress=progress)
    return SynthReport(Path(out), manifest, time.perf_counter() - started)
