"""The CLI on a small synthetic world: synth, ingest, tables, sql, history; the demo end
to end, and its HTML report in a real browser."""

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from geosid.cli import main


@pytest.fixture
def world(tmp_path):
    raw = tmp_path / "raw"
    assert (
        main(["synth", "--out", str(raw), "--days", "2", "--users", "200", "--stores", "50", "--start", "2024-05-01", "--corrupt-rate", "0.01"]) == 0
    )
    return raw


def test_ingest_tables_sql_history(world, tmp_path, capsys):
    lake = str(tmp_path / "lake")
    assert main(["--lake", lake, "ingest", "--source", "synthetic", "--path", str(world), "--from", "2024-05-01", "--to", "2024-05-02"]) == 0
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
    code = main(["--lake", str(tmp_path / "lake"), "ingest", "--source", "synthetic", "--path", str(world), "--date", "2024-05-01"])
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
    assert (
        main(["--lake", lake, "codebook", "publish", "--version", version, "--max-excess-conflict", "1", "--min-exclusive", "0", "--min-usage", "0"])
        == 0
    )
    capsys.readouterr()
    assert main(["--lake", lake, "codebook", "list"]) == 0
    assert "published" in capsys.readouterr().out
    assert main(["--lake", lake, "sid", "report", "--version", version, "--out", str(tmp_path / "report")]) == 0
    assert "conflict rate" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["bucket_sizes.png", "code_usage.png", "first_level_map.png"]
    assert main(["--lake", lake, "backfill", "--version", version, "--from", "2024-05-01", "--to", "2024-05-01"]) == 0
    assert "0 items given SIDs" in capsys.readouterr().out  # all tokenized at fit time

    # an aligned re-fit with another seed: it keeps the version's codes, and publishing it
    # writes the migration from the version it retires
    open_gates = ["--max-excess-conflict", "1", "--min-exclusive", "0", "--min-usage", "0"]
    assert main(["--lake", lake, "codebook", "fit", "--method", "residual_kmeans", "--niter", "5", "--seed", "7", "--align-to", version]) == 0
    out = capsys.readouterr().out
    aligned = out.split("version ")[-1].split()[0]
    assert f"against {version}:" in out and "SID kept" in out
    assert main(["--lake", lake, "codebook", "publish", "--version", aligned, *open_gates, "--min-first-level-retention", "0.9"]) == 0
    assert f"index.sid_migration {version} -> {aligned}" in capsys.readouterr().out
    assert main(["--lake", lake, "codebook", "migrate", "--version", aligned]) == 0
    out = capsys.readouterr().out
    assert "PASS index.sid_migration.accounting" in out and "PASS index.sid_code_map" in out
    assert main(["--lake", lake, "sid", "compare", version, aligned]) == 0
    out = capsys.readouterr().out
    assert "Stability" in out and f"| {aligned} | {version} |" in out
    assert main(["--lake", lake, "status"]) == 0
    assert f"codebook drift: no re-fit needed for {aligned}" in capsys.readouterr().out
    # mistakes: one line each
    _one_line_error(capsys, main(["--lake", lake, "codebook", "migrate"]), 2, "needs --version")
    _one_line_error(
        capsys,
        main(["--lake", lake, "codebook", "fit", "--method", "residual_kmeans", "--codes", "4,4,4", "--align-to", version]),
        1,
        "leave --codes out",
    )


def _one_line_error(capsys, code: int, expected: int, *needles: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == expected, (code, captured.out[-2000:], err[-2000:])
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_user_errors_are_one_line_with_exit_codes(world, tmp_path, capsys):
    lake = str(tmp_path / "lake")
    # usage mistakes: exit 2
    _one_line_error(capsys, main(["--lake", lake, "ingest", "--source", "nope"]), 2, "invalid choice", "tsmc2014")
    _one_line_error(capsys, main(["--lake", lake, "validate", "--date", "2024-13-01"]), 2, "not a date")
    _one_line_error(
        capsys,
        main(["--lake", lake, "ingest", "--source", "synthetic", "--path", str(world), "--from", "2024-05-01"]),
        2,
        "--from and --to go together",
    )
    # refusals and things that do not exist: exit 1, the name and what is valid
    _one_line_error(
        capsys,
        main(["--lake", lake, "ingest", "--source", "tsmc2014", "--path", "/nonexistent/file.txt"]),
        1,
        "/nonexistent/file.txt",
        "does not exist",
    )
    _one_line_error(capsys, main(["--lake", lake, "corpus", "build", "--source", "synthetic"]), 1, "no bronze events")
    _one_line_error(capsys, main(["--lake", lake, "history", "nosuch"]), 1, "unknown table 'nosuch'", "bronze.events")
    _one_line_error(capsys, main(["--lake", lake, "train", "dpo"]), 1, "no pretrain run")
    assert main(["--lake", lake, "ingest", "--source", "synthetic", "--path", str(world), "--date", "2024-05-01"]) == 0
    capsys.readouterr()
    _one_line_error(capsys, main(["--lake", lake, "sql", "SELEC count(*) FROM events"]), 1, "SQL syntax error")
    _one_line_error(
        capsys, main(["--lake", lake, "sql", "SELECT nope FROM events"]), 1, "unknown column 'nope'", "columns of events:", "event_id", "user_id"
    )
    _one_line_error(capsys, main(["--lake", lake, "sql", "SELECT * FROM nosuch"]), 1, "unknown table 'nosuch'", "events")
    # sql only reads: a statement that writes is refused before the engine sees it, nothing is written
    for query, verb in (
        ("CREATE TABLE x AS SELECT 1 AS a", "CREATE"),
        ("DROP TABLE events", "DROP"),
        ("WITH a AS (SELECT 1 AS v) INSERT INTO events SELECT * FROM a", "INSERT"),
        ("SELECT 1; DELETE FROM events", "more than one statement"),
    ):
        _one_line_error(capsys, main(["--lake", lake, "sql", query]), 1, "geosid sql only reads", verb)
    assert not Path("spark-warehouse").exists() and not (tmp_path / "spark-warehouse").exists()
    assert main(["--lake", lake, "sql", "SELECT count(*) AS n FROM events"]) == 0 and int(capsys.readouterr().out.split()[-1]) > 0
    _one_line_error(capsys, main(["airflow", "setup"]), 2, "airflow setup needs the deployment's lake")
    _one_line_error(capsys, main(["--lake", lake, "sid", "report", "--version", "nope"]), 1, "no codebook version 'nope'")
    _one_line_error(capsys, main(["--lake", lake, "corpus", "build", "--source", "synthetic"]), 1, "no codebook version published")
    _one_line_error(capsys, main(["--lake", lake, "train", "benchmark", "--grid", "lr=fast"]), 1, "grid point 'lr=fast'", "no float")
    _one_line_error(capsys, main(["--lake", lake, "train", "benchmark", "--grid", "depth=3"]), 1, "want NAME=VALUE", "dropout")
    _one_line_error(capsys, main(["--lake", lake, "train", "benchmark", "--grid", "size=huge"]), 1, "unknown size 'huge'")
    # --debug shows the traceback instead
    with pytest.raises(KeyError, match="nope"):
        main(["--lake", lake, "--debug", "sid", "report", "--version", "nope"])


@pytest.mark.slow
def test_demo_on_a_small_synthetic_world(tmp_path, capsys):
    """`geosid demo` end to end: every stage, the incremental day equal to the rebuild,
    training with its control, the stage timings; a re-run reuses what it can."""
    lake = str(tmp_path / "lake")
    args = ["--lake", lake, "demo", "--synthetic", "--days", "3", "--users", "400", "--stores", "80"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for needle in (
        "PASS bronze.reject_rate",
        "SID quality at the same code budget",
        "identical to the full rebuild",
        "mean geographic reward of the top 10",
        "stage timings:",
        "corpus.training_sequences",
    ):
        assert needle in out, needle
    assert "FAILED" not in out
    assert "the lake's report: " in out and "DPO vs control (lambda 0): " in out and "held-out preference accuracy" in out
    check_report_in_a_browser(Path(lake), tmp_path / "screenshots")
    run_the_analyst_notebook(Path(lake))


def run_the_analyst_notebook(lake: Path) -> None:
    """examples/analyst.ipynb runs top to bottom on the demo's lake (so it never rots), and
    what it shows is the lake's: the SQL cell lists every codebook version's quality row."""
    import nbformat
    from nbclient import NotebookClient

    from geosid.lake import Lake
    from geosid.schemas import index

    folder = Path(__file__).resolve().parent.parent / "examples"
    notebook = nbformat.read(folder / "analyst.ipynb", as_version=4)
    os.environ["GEOSID_LAKE"] = str(lake)
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        os.environ.pop("GEOSID_LAKE", None)
    shown = "\n".join(
        str(o.get("text") or o.get("data", {}).get("text/plain", "")) for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )
    for q in Lake(lake).to_arrow(index.SID_QUALITY).to_pylist():
        assert q["version"] in shown, q["version"]
    assert "pinned by run" in shown and "targets" in shown


def check_report_in_a_browser(lake: Path, shots: Path) -> None:
    """The demo's report in headless Chromium: every page opens with no console error,
    every link resolves, the numbers shown are the tables' (screenshots under `shots`)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI: no chromium for the browser check (make installs it with apt)")
        pytest.skip("no chromium on this machine (apt-get install chromium): the report's browser check is skipped")
    from playwright.sync_api import sync_playwright

    from geosid.lake import Lake
    from geosid.pipeline.lake_ops import tables
    from geosid.schemas import index

    site = lake / "_reports" / "site"
    pages = sorted(site.glob("*.html"))
    assert (site / "index.html") in pages and any(p.name.startswith("codebook-") for p in pages) and any(p.name.startswith("run-") for p in pages)
    docs = lake / "_quality" / "docs"
    validations = sorted(docs.glob("validations/*/*.html"))
    assert validations, "every validation renders a Data Docs page"
    pages += [docs / "index.html", *validations[:: max(1, len(validations) // 4)]]  # GX's pages, a few of them
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1200, "height": 1400})
        errors = []
        tab.on("console", lambda m: errors.append(f"{tab.url}: {m.text}") if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(f"{tab.url}: {e}"))
        shown = {}
        for path in pages:
            tab.goto(path.as_uri())
            name = path.relative_to(lake).as_posix().replace("/", "_") if docs in path.parents else path.stem
            tab.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            for href in tab.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
                assert href.startswith("file://") and Path(unquote(urlparse(href).path)).exists(), f"{path.name}: broken link {href}"
            shown[path.relative_to(lake).as_posix() if docs in path.parents else path.name] = tab.eval_on_selector_all(
                "table[data-testid] tbody tr",
                "rows => rows.map(r => [r.closest('table').dataset.testid, Object.fromEntries([...r.cells].map(c => [c.dataset.col, c.innerText]))])",
            )
        browser.close()
    assert not errors, errors
    # the numbers on the pages are the tables'
    results = list((lake / "_quality").glob("*/**/result.json"))
    assert len([r for kind, r in shown["_quality/docs/index.html"] if kind == "validations"]) == min(len(results), 300)
    lake_ = Lake(lake)  # Arrow reads need no engine
    rows = {r["table"]: r for kind, r in shown["index.html"] if kind == "tables"}
    for info in tables(lake_root=str(lake)):
        if info.table_version is not None:
            assert rows[info.name]["rows"] == f"{info.rows:,}" and rows[info.name]["version"] == f"{info.table_version:,}", info.name
    quality = lake_.to_arrow(index.SID_QUALITY).to_pylist()
    for q in quality:
        page = shown.get(f"codebook-{q['version']}.html")
        assert page is not None, q["version"]
        numbers = next(r for kind, r in page if kind == "quality")
        assert numbers["items"] == f"{q['items']:,}" and numbers["conflict_rate"] == f"{q['conflict_rate']:.4f}"
        assert numbers["largest_bucket"] == f"{q['largest_bucket']:,}"


def test_a_lake_root_that_cannot_be_made_and_a_lake_without_corpus_get_one_line(tmp_path, capsys):
    assert main(["--lake", "/proc/nope/lake", "tables"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("geosid: lake root /proc/nope/lake cannot be created") and "\n" not in err
    assert main(["--lake", str(tmp_path / "empty"), "train", "pretrain"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no corpus.training_sequences under" in err and "build the corpus first" in err and "\n" not in err


def test_daily_status_and_maintain_from_the_cli(world, tmp_path, capsys):
    lake = str(tmp_path / "lake")
    assert main(["--lake", lake, "daily", "--date", "2024-05-01", "--source", "synthetic", "--path", str(world), "--no-validate"]) == 0
    assert "daily synthetic 2024-05-01: ingested 2024-05-01" in capsys.readouterr().out
    assert main(["--lake", lake, "status"]) == 0
    out = capsys.readouterr().out
    assert "synthetic: 1 complete day(s) 2024-05-01 .. 2024-05-01" in out and "0 stale or missing day(s)" in out
    # a day whose drop is not there: one line, exit 1
    assert main(["--lake", lake, "daily", "--date", "2024-05-09", "--source", "synthetic", "--path", str(world)]) == 1
    assert "has not arrived" in capsys.readouterr().err
    assert main(["--lake", lake, "maintain", "--retention-hours", "0"]) == 0
    assert "maintenance (retention 0 h)" in capsys.readouterr().out
