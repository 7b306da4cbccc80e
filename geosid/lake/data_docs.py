"""Great-expectations Data Docs for every validation, offline: each result is rendered by
GX's own renderer (`ValidationResultsPageRenderer` + `DefaultJinjaPageView`: the
expectations, observed values and the failing rows' samples) into
`<lake>/_quality/docs/validations/<table>/<days>.html`, and `<lake>/_quality/docs/index.html`
lists every result on disk.

GX's page template loads Bootstrap, jQuery and fonts from CDNs and its logo from S3; a
lake's docs must open without a network (an air-gapped cluster, a browser offline), so the
remote assets are dropped and GX's own stylesheet plus a few layout rules are inlined;
the jQuery-driven filter buttons get plain-DOM equivalents.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from geosid.lake.html import esc, page, table

# Bootstrap's layout classes GX's template uses, as far as a readable page needs them.
LAYOUT = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
.container-fluid { padding: 1rem 2rem; } .row { display: flex; flex-wrap: wrap; gap: 1rem; }
.col-lg-2 { flex: 0 0 14rem; } .col-md-10, .col-lg-10 { flex: 1 1 40rem; min-width: 0; }
.card { border: 1px solid #ddd; border-radius: 4px; margin-bottom: 1rem; } .card-header { background: #f4f4f4; padding: .5rem; }
.card-body { padding: .5rem .75rem; } table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; vertical-align: top; text-align: left; }
.text-danger { color: #b00020; } .text-success { color: #1b5e20; } .d-none, .modal { display: none; }
nav.navbar { padding: .5rem 2rem; border-bottom: 1px solid #ddd; } .breadcrumb { display: flex; gap: .5rem; list-style: none; margin: 0; padding: 0; }
.ge-breadcrumbs-item + .ge-breadcrumbs-item::before { content: "/ "; } .btn { cursor: pointer; border: 1px solid #bbb; padding: .2rem .5rem; margin: .1rem; display: inline-block; }
.btn input { display: none; } .sticky { position: sticky; top: 0; } ul { padding-left: 1.2rem; }
.fa-check-circle::before { content: "\\2714"; } .fa-times::before { content: "\\2718"; } i.fas { font-style: normal; font-size: 1.1rem; }
"""

# The two filter buttons' functions, without jQuery.
FILTER_SCRIPT = """
function _geosidSucceeded(show) {
  document.querySelectorAll('.hide-succeeded-validation-target, .hide-succeeded-validation-target-child').forEach(
    el => { (el.classList.contains('hide-succeeded-validation-target-child') ? el.parentElement : el).style.display = show ? '' : 'none'; });
}
function showAllValidations() { _geosidSucceeded(true); }
function hideSucceededValidations() { _geosidSucceeded(false); }
"""
REMOTE = re.compile(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*["']https?://[^>]*>(?:\s*</script>)?""", re.I | re.S)
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>.*?</script>", re.I | re.S)
LOCAL_ASSET = re.compile(r"""<link\b[^>]*href=["'](?:\.\./)+static/[^>]*>""", re.I)
SUITE_LINK = re.compile(r"""\shref=["'](?:\.\./)+expectations/[^"']*["']""", re.I)  # GX's suite pages: not rendered here
FOOTER = re.compile(r"<footer\b.*?</footer>", re.I | re.S)  # GX's newsletter banner


def docs_root(lake_root: Path) -> Path:
    return Path(lake_root) / "_quality" / "docs"


def gx_stylesheet() -> str:
    """GX's own Data Docs stylesheet, shipped in its wheel."""
    import great_expectations  # lazy: heavy (seconds to import): only validation steps need it

    path = Path(great_expectations.__file__).parent / "render" / "view" / "static" / "styles" / "data_docs_default_styles.css"
    return path.read_text() if path.exists() else ""


def offline(html: str, index_href: str) -> str:
    """GX's page with its remote assets removed, its styles inlined, its scripts replaced
    and its links home pointing at `index_href`."""
    html = REMOTE.sub("", html)
    html = LOCAL_ASSET.sub("", html)
    html = INLINE_SCRIPT.sub("", html)
    html = FOOTER.sub("", SUITE_LINK.sub("", html))
    html = re.sub(r"""href=["'](?:\.\./)+index\.html["']""", f'href="{esc(index_href)}"', html)
    style = f"<style>{gx_stylesheet()}\n{LAYOUT}</style><script>{FILTER_SCRIPT}</script>"
    return html.replace("</head>", style + "</head>", 1)


def render_validation(gx_result) -> str:
    """GX's HTML page of one ExpectationSuiteValidationResult (remote assets still in)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer  # lazy: heavy: only validation steps need it
    from great_expectations.render.view import DefaultJinjaPageView  # lazy: heavy: only validation steps need it

    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(gx_result))


def write_validation_page(lake_root: Path, table_name: str, span: str, gx_result) -> Path:
    """The result's Data Docs page; returns its path (the index is rebuilt by the caller)."""
    folder = docs_root(lake_root) / "validations" / table_name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{span}.html"
    _atomic_write(path, offline(render_validation(gx_result), os.path.relpath(docs_root(lake_root) / "index.html", folder)))
    return path


def write_index(lake_root: Path, newest: int = 300) -> Path:
    """`docs/index.html`: the `newest` validation results under `_quality/` (a year of days
    holds thousands), failed checks named, each linking to its Data Docs page where one
    was rendered."""
    root = Path(lake_root)
    results = sorted((root / "_quality").glob("*/**/result.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    rows = []
    for path in results[:newest]:
        result = json.loads(path.read_text())
        passed = sum(1 for c in result["checks"] if c["success"])
        rows.append(
            {
                "table": result["table"],
                "days": f"{result['first']} .. {result['last']}" if result["first"] else "whole table",
                "outcome": "PASS" if result["success"] else "FAIL",
                "checks": f"{passed}/{len(result['checks'])}",
                "rows": result["rows"],
                "failed": "; ".join(c["check"] for c in result["checks"] if not c["success"]),
                "_href": result.get("docs"),
            }
        )
    failed = sum(r["outcome"] == "FAIL" for r in rows)
    shown = f"the newest {len(rows):,} of {len(results):,}" if len(results) > len(rows) else f"{len(rows):,}"
    body = f"<p>{shown} validation result(s), {failed:,} of them failed; each page is great-expectations' own rendering.</p>" + table(
        rows, ["table", "days", "outcome", "checks", "rows", "failed"], links={"outcome": lambda r: r["_href"]}, test_id="validations"
    )
    path = docs_root(root) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, page(f"Data Docs: {root}", body))
    return path


def _atomic_write(path: Path, text: str) -> None:
    """Concurrent tasks may render at once: a reader sees the old page or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
