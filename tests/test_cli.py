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


def test_codebook_lifecycle_from_the_cli(world, tmp_path, capsys):
    lake = str(tmp_path / "lake")
    assert main(["--lake", lake, "ingest", "--source", "synthetic", "--path", str(world), "--date", "2024-05-01"]) == 0
    assert main(["--lake", lake, "geo", "--date", "2024-05-01"]) == 0
    assert main(["--lake", lake, "embed", "--date", "2024-05-01"]) == 0
    capsys.readouterr()
    assert main(["--lake", lake, "codebook", "fit", "--method", "residual_kmeans", "--codes", "8,8,8", "--niter", "5"]) == 0
    version = capsys.readouterr().out.split("version ")[1].split()[0]
    # a gate that cannot pass: a clear refusal, exit code 1, nothing published
    assert main(["--lake", lake, "codebook", "publish", "--version", version, "--min-exclusive", "1.01"]) == 1
    assert "not published" in capsys.readouterr().err
    assert main(["--lake", lake, "codebook", "publish", "--version", version, "--max-excess-conflict", "1",
                 "--min-exclusive", "0", "--min-usage", "0"]) == 0
    capsys.readouterr()
    assert main(["--lake", lake, "codebook", "list"]) == 0
    assert "published" in capsys.readouterr().out
    assert main(["--lake", lake, "sid", "report", "--version", version, "--out", str(tmp_path / "report")]) == 0
    assert "conflict rate" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["bucket_sizes.png", "code_usage.png", "first_level_map.png"]
    assert main(["--lake", lake, "backfill", "--version", version, "--from", "2024-05-01", "--to", "2024-05-01"]) == 0
    assert "0 items given SIDs" in capsys.readouterr().out  # all tokenized at fit time
