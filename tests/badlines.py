"""A corpus of bad TSMC2014 lines built from real ones: each entry is (reason, raw bytes)."""

from __future__ import annotations


def bad_tsmc_lines(good: bytes) -> list[tuple[str, bytes]]:
    """Variants of one real line (no trailing newline), each broken in one known way."""
    f = good.split(b"\t")
    assert len(f) == 8, f"expected a real 8-field TSMC2014 line, got {len(f)} fields"

    def with_field(i: int, value: bytes) -> bytes:
        g = list(f)
        g[i] = value
        return b"\t".join(g)

    return [
        ("wrong_column_count", b"\t".join(f[:7])),
        ("wrong_column_count", b"\t".join(f + [b"extra"])),
        ("wrong_column_count", b""),
        ("wrong_column_count", b"user,venue,cat,name,40.7,-73.9,-240,time"),
        ("null_id", with_field(0, b"")),
        ("null_id", with_field(1, b"   ")),
        ("null_id", with_field(2, b"NULL")),
        ("bad_number", with_field(0, b"47O")),
        ("bad_number", with_field(4, b"40.7x")),
        ("bad_number", with_field(5, b"nan")),
        ("bad_number", with_field(6, b"-2h")),
        ("bad_time", with_field(7, b"Tue Apr 33 18:00:09 +0000 2012")),
        ("bad_time", with_field(7, b"yesterday")),
        ("bad_coordinate", with_field(4, b"95.25")),
        ("bad_coordinate", with_field(5, b"-190.0")),
        ("bad_encoding", with_field(3, b"Caf\x00 Bar")),
        ("duplicate", good),
    ]
