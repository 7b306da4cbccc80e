"""The SQL replace predicates geosid writes, read back as structure, and decided per data
file from what the Delta log (or a Parquet footer) knows about it.

`Lake.write` replaces the rows matching a predicate such as
``dt >= DATE'2013-01-01' AND dt <= DATE'2013-01-07' AND (source = 'nyc')``. To commit the
engine's staged files as they are, the committer must know, for every file, whether all of
its rows match (the file is replaced whole), none does (kept), or some do (undecidable
here: the caller falls back to a row-level rewrite). Only the forms geosid itself writes
are parsed; anything else is None, which also means "fall back".

A predicate is a conjunction of clauses; a clause is a disjunction of atoms; an atom is
``col = 'v'`` / ``col = DATE'v'`` / ``col IN ('a', 'b')`` / ``col >= DATE'v'`` /
``col <= DATE'v'`` / ``col IS NULL``, and ``col = 3`` / ``col IN (3, 11)`` for integers
(decided only where the column holds one value, e.g. a partition column: text order is
not number order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALL, NONE, SOME = "all", "none", "some"  # SOME: some rows may match, or it is unknown

_ATOM = re.compile(
    r"^(?P<col>\w+)\s*(?:"
    r"(?P<op>=|>=|<=)\s*(?:(?:DATE\s*)?'(?P<value>[^']*)'|(?P<number>-?\d+))"
    r"|IN\s*\((?P<values>\s*'[^']*'\s*(?:,\s*'[^']*'\s*)*)\)"
    r"|IN\s*\((?P<numbers>\s*-?\d+\s*(?:,\s*-?\d+\s*)*)\)"
    r"|(?P<null>IS\s+NULL)"
    r")$",
    re.IGNORECASE,
)
# String statistics at least this long may be truncated by a Parquet writer: not trusted.
MAX_EXACT_STAT_CHARS = 32


@dataclass(frozen=True)
class Atom:
    column: str
    op: str  # "=", ">=", "<=", "in", "is_null"
    values: tuple[str, ...] = ()
    numeric: bool = False


def _split_top(text: str, word: str) -> list[str]:
    """Split on ` word ` outside quotes and parentheses."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    token = f" {word} "
    upper = text.upper()
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and upper.startswith(token, i):
            parts.append(text[start:i])
            i += len(token)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    return text


def _balanced(text: str) -> bool:
    depth, quoted = 0, False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth < 0:
                return False
    return depth == 0 and not quoted


def _conjuncts(text: str) -> list[str]:
    """The AND-ed parts of `text`, parenthesized conjunctions flattened."""
    parts = _split_top(_strip_parens(text), "AND")
    if len(parts) == 1:
        return [_strip_parens(text)]
    return [c for part in parts for c in _conjuncts(part)]


def parse(predicate: str | None) -> list[list[Atom]] | None:
    """SQL -> clauses (AND of ORs of atoms); [] for no predicate (every row); None when
    the text is not one of the forms above."""
    if predicate is None:
        return []
    clauses = []
    for clause in _conjuncts(predicate):
        parts = _split_top(clause, "OR")
        atoms = []
        for part in parts:
            found = _ATOM.match(_strip_parens(part))
            if not found:
                return None
            col = found["col"]
            if found["null"]:
                atoms.append(Atom(col, "is_null"))
            elif found["values"] is not None:
                atoms.append(Atom(col, "in", tuple(re.findall(r"'([^']*)'", found["values"]))))
            elif found["numbers"] is not None:
                atoms.append(Atom(col, "in", tuple(str(int(v)) for v in found["numbers"].split(",")), numeric=True))
            elif found["number"] is not None:
                atoms.append(Atom(col, found["op"], (str(int(found["number"])),), numeric=True))
            else:
                atoms.append(Atom(col, found["op"], (found["value"],)))
        clauses.append(atoms)
    return clauses


@dataclass(frozen=True)
class ColumnFacts:
    """What is known of one column in one file: min and max as text (None: unknown),
    the null count (None: unknown) and the row count."""

    min: str | None
    max: str | None
    nulls: int | None
    rows: int

    @classmethod
    def constant(cls, value: str | None, rows: int) -> ColumnFacts:
        """A partition column: one value for every row."""
        return cls(value, value, rows if value is None else 0, rows)


def _atom(atom: Atom, facts: ColumnFacts | None) -> str:
    if facts is None:
        return SOME
    all_null = facts.nulls is not None and facts.nulls == facts.rows
    no_null = facts.nulls == 0
    if atom.op == "is_null":
        return ALL if all_null else NONE if no_null else SOME
    if all_null:
        return NONE  # a comparison with NULL is never true
    lo, hi = facts.min, facts.max
    if lo is None or hi is None:
        return SOME
    exact = len(lo) < MAX_EXACT_STAT_CHARS and len(hi) < MAX_EXACT_STAT_CHARS
    if atom.numeric:  # only a one-valued column is decided (text order is not number order)
        if lo != hi or atom.op not in ("=", "in"):
            return SOME
        return (ALL if no_null else SOME) if lo in atom.values else NONE
    if atom.op in ("=", "in"):
        if no_null and exact and lo == hi and lo in atom.values:
            return ALL
        return NONE if exact and all(v < lo or v > hi for v in atom.values) else SOME
    (value,) = atom.values
    if atom.op == ">=":
        return ALL if no_null and lo >= value else NONE if exact and hi < value else SOME
    return ALL if no_null and hi <= value else NONE if exact and lo > value else SOME  # "<="


def verdict(clauses: list[list[Atom]], facts: dict[str, ColumnFacts]) -> str:
    """ALL / NONE / SOME of a file's rows match the parsed predicate."""
    outcome = ALL
    for clause in clauses:
        atoms = [_atom(atom, facts.get(atom.column)) for atom in clause]
        value = ALL if ALL in atoms else NONE if all(a == NONE for a in atoms) else SOME
        if value == NONE:
            return NONE
        if value == SOME:
            outcome = SOME
    return outcome
