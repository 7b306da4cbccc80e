"""The docs: the generated pages (tables and CLI references, results pages, the README's
headline table, the site's index and changelog) equal what the code and the committed
result files give, every result file names its run, and the site builds strictly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gen_docs  # noqa: E402


def test_the_generated_pages_match_the_code_and_the_results():
    text = gen_docs.readme_with_headlines((ROOT / "README.md").read_text())
    assert text == (ROOT / "README.md").read_text(), "README's headline table is stale: run python tools/gen_docs.py"
    for path, wanted in gen_docs.pages(text).items():
        assert path.exists() and path.read_text() == wanted, f"{path.relative_to(ROOT)} is stale: run python tools/gen_docs.py"


def test_the_references_follow_the_code():
    from geosid.cli import build_parser
    from geosid.schemas import REGISTRY

    tables = (ROOT / "docs" / "reference" / "tables.md").read_text()
    for spec in REGISTRY:
        assert f"## `{spec.name}`" in tables
        assert all(f"| `{column}` |" in tables for column in spec.columns), spec.name
    cli = (ROOT / "docs" / "reference" / "cli.md").read_text()
    commands = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert all(f"## `geosid {name}`" in cli for name in commands.choices)


def test_every_result_file_names_its_run():
    files = sorted((ROOT / "bench" / "results").glob("*.json"))
    assert files
    for path in files:
        record = json.loads(path.read_text())
        assert {"name", "command", "commit", "machine", "date", "results"} <= set(record), path.name
        assert record["name"] == path.stem and len(record["commit"]) >= 7 and record["machine"].get("cores"), path.name


def test_the_readme_is_a_guide():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    assert "make demo" in "\n".join(lines) and "make test" in "\n".join(lines)
    assert not [line for line in lines if "fresh run" in line or "fresh demo" in line]


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed (the [docs] extra)")
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "tables" / "index.html").exists()
