"""Self-contained HTML pages: one file each, CSS and images inlined (no server, no network),
numbers rendered from what the caller read from the tables.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
nav a { margin-right: 1rem; } .fail { color: #b00020; font-weight: 600; } .pass { color: #1b5e20; }
img { max-width: 100%; border: 1px solid #eee; } .note { color: #555; font-size: 0.85rem; }
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def cell(value) -> str:
    """A value as table text: floats with 4 decimals, ints with separators, the rest as is."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(
    rows: Iterable[dict], columns: Sequence[str], headers: Sequence[str] | None = None, links: dict | None = None, test_id: str | None = None
) -> str:
    """An HTML table of `rows` (dicts) over `columns`; `links` maps a column to a function of
    the row giving an href for that cell. Text columns align left."""
    links = links or {}
    rows = list(rows)
    text_cols = {c for c in columns if any(isinstance(r.get(c), str) for r in rows)}
    head = "".join(f'<th class="{"text" if c in text_cols else ""}">{esc(h)}</th>' for c, h in zip(columns, headers or columns))
    body = []
    for r in rows:
        cells = []
        for c in columns:
            shown = esc(cell(r.get(c)))
            if c in links and links[c](r):
                shown = f'<a href="{esc(links[c](r))}">{shown}</a>'
            cells.append(f'<td class="{"text" if c in text_cols else ""}" data-col="{esc(c)}">{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' data-testid="{esc(test_id)}"' if test_id else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(fig, alt: str) -> str:
    """A matplotlib figure as an inlined PNG (the figure is closed)."""
    import matplotlib.pyplot as plt  # lazy: only reports plot: loaded there

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def page(title: str, body: str, nav: Sequence[tuple[str, str]] = ()) -> str:
    links = "".join(f'<a href="{esc(href)}">{esc(label)}</a>' for label, href in nav)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head><body><nav>{links}</nav><h1>{esc(title)}</h1>{body}</body></html>\n"
    )
