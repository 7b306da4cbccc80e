"""The CLI on a small synthetic world: synth, ingest, tables, sql, history."""

import pytest

from geosid.cli import main


@pytest.fixture
def world(tmp_path):
    raw = tmp_path / "raw"
    assert main(["synth", "--out", str(raw), "--days", "2", "--users", "200", "--stores", "50",
                 "--start", "2024-05-01", "--corrupt-rate", "0.01"]) == 0
    return raw


def test_ingest_tables_sql_history(world, tmp_path, capsys):
    lake = str(tmp_path / "lake")
    assert main(["--lake", lake, "ingest", "--source", "synthetic", "--path", str(world),
                 "--from", "2024-05-01", "--to", "2024-05-02"]) == 0
    out = capsys.readouterr().out
    assert "bronze.events" in out and "PASS bronze.reject_rate" in out

    assert main(["--lake", lake, "tables"]) == 0
    out = capsys.readouterr().out
    assert "bronze.events" in out and "2024-05-01 .. 2024-05-02" in out

    assert main(["--lake", lake, "sql", "SELECT action, count(*) AS n FROM events GROUP BY action ORDER BY action"]) == 0
    out = capsys.readouterr().out.split()
    assert out[:2] == ["action", "n"] and {"click", "pay", "watch"} <= set(out)

    assert main(["--lake", lake, "sql", "SELECT count(*) AS n FROM bronze_rejects"]) == 0
    assert int(capsys.readouterr().out.split()[-1]) > 0

    assert main(["--lake", lake, "history", "events"]) == 0
    assert "predicate=" in capsys.readouterr().out


def test_failing_gate_sets_the_exit_code(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GEOSID_REJECT_RATE_THRESHOLD", "0.001")
    code = main(["--lake", str(tmp_path / "lake"), "ingest", "--source", "synthetic", "--path", str(world),
                 "--date", "2024-05-01"])
    assert code == 1
    assert "FAIL bronze.reject_rate" in capsys.readouterr().out
