import datetime as dt
import gzip

from geosid.sources.landing import decode_lines, discover, land


def test_latin1_lines_decode_and_keep_their_characters():
    lines, errors = decode_lines(b"1\tCaf\xe9\r\n2\tb\n", "latin-1")
    assert lines == ["1\tCaf\u00e9", "2\tb"]
    assert errors == [None, None]


def test_undecodable_and_control_bytes_are_flagged_not_dropped():
    lines, errors = decode_lines(b"ok\nbad \xff\xfe utf8\nnul\x00here\nlast", "utf-8")
    assert len(lines) == 4
    assert errors[0] is None and errors[3] is None
    assert "not valid utf-8 at byte 4" in errors[1]
    assert lines[1] == "bad \\xff\\xfe utf8"
    assert "U+0000" in errors[2]


def test_empty_input_has_no_lines():
    assert decode_lines(b"", "utf-8") == ([], [])
    assert decode_lines(b"\n", "utf-8") == ([""], [None])


def test_discover_dates_drops_and_skips_other_days(tmp_path):
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        folder = tmp_path / f"dt={day}"
        folder.mkdir()
        with gzip.open(folder / "events.tsv.gz", "wb") as handle:
            handle.write(b"a\n")
    (tmp_path / "_SUCCESS").write_text("")
    found = discover(tmp_path, dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    assert [(f.name, f.drop_date) for f in found] == [
        ("dt=2024-01-02/events.tsv.gz", dt.date(2024, 1, 2)),
        ("dt=2024-01-03/events.tsv.gz", dt.date(2024, 1, 3)),
    ]


def test_land_numbers_every_line(tmp_path):
    import pyarrow.parquet as pq

    raw = tmp_path / "raw.txt"
    raw.write_bytes(b"a\n\nc")
    out, n = land(discover(raw), "src", "utf-8", tmp_path / "landed", progress=False)
    table = pq.read_table(out)
    assert n == 3
    assert table.column("line_no").to_pylist() == [1, 2, 3]
    assert table.column("raw").to_pylist() == ["a", "", "c"]
    assert table.column("source_file").to_pylist() == ["raw.txt"] * 3
