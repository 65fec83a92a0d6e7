"""The before/after table of factual updates (editors and retrieval side by side), as Markdown,
HTML or JSON: one row per setup (the unedited model first), one column per metric of
:data:`expunge.verify.editing.EDIT_METRICS`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jinja2

from expunge.errors import ExpungeError
from expunge.fsutil import ensure_new_output, write_text_atomic
from expunge.report.render import format_value, json_safe
from expunge.verify.editing import EDIT_METRICS

__all__ = ["updates_markdown", "updates_html", "check_updates_report_path", "write_updates_report"]

_LEAD = (("setup", "setup"), ("edits", "edits"))
_TAIL = (("seconds_per_edit", "s/edit"),)


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    metrics = [(name, name.replace("_", " ")) for name, _ in EDIT_METRICS if any(name in r for r in rows)]
    return [*_LEAD, *metrics, *_TAIL]


def updates_markdown(comparison: dict[str, Any], title: str = "Factual updates") -> str:
    rows = comparison["rows"]
    columns = _columns(rows)
    lines = [f"# {title}", "", "| " + " | ".join(label for _, label in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(r.get(key)) for key, _ in columns) + " |" for r in rows]
    lines += ["", "Metrics:", ""] + [f"- **{name.replace('_', ' ')}**: {meaning}" for name, meaning in EDIT_METRICS]
    if comparison.get("sizes"):
        lines += ["", "Probes per set: " + ", ".join(f"{k} {v}" for k, v in comparison["sizes"].items())]
    lines += [f"\nNote: {n}" for n in comparison.get("notes", [])]
    return "\n".join(lines) + "\n"


_HTML = jinja2.Template("""<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:4px 8px;text-align:right}td.text,th.text{text-align:left}</style></head><body>
<h1>{{ title }}</h1>
<table><tr>{% for _, label in columns %}<th{% if loop.first %} class="text"{% endif %}>{{ label }}</th>{% endfor %}</tr>
{% for r in rows %}<tr>{% for key, _ in columns %}<td{% if loop.first %} class="text"{% endif %}>{{ fmt(r.get(key)) }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Metrics</h2><ul>{% for name, meaning in metrics %}<li><b>{{ name }}</b>: {{ meaning }}</li>{% endfor %}</ul>
{% if sizes %}<p>Probes per set: {% for k, v in sizes.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}</p>{% endif %}
{% for n in notes %}<p>Note: {{ n }}</p>{% endfor %}
</body></html>
""", autoescape=True)


def updates_html(comparison: dict[str, Any], title: str = "Factual updates") -> str:
    rows = comparison["rows"]
    return _HTML.render(title=title, rows=rows, columns=_columns(rows), fmt=format_value, metrics=EDIT_METRICS,
                        sizes=comparison.get("sizes"), notes=comparison.get("notes", []))


_RENDERERS = {".md": updates_markdown, ".html": updates_html, ".htm": updates_html,
              ".json": lambda c, t: json.dumps(json_safe(c), indent=2) + "\n"}


def check_updates_report_path(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work is done, a report path that is taken or has an unknown suffix."""
    path = ensure_new_output(path)
    if path.suffix.lower() not in _RENDERERS:
        raise ExpungeError(f"unknown report format {path.suffix!r} for {path}",
                           f"name the report file with one of {', '.join(sorted(_RENDERERS))}")
    return path


def write_updates_report(comparison: dict[str, Any], path: str | os.PathLike[str], title: str = "Factual updates") -> Path:
    """Write the table in the format the suffix names (.md, .html, .json); never overwrites."""
    path = check_updates_report_path(path)
    write_text_atomic(path, _RENDERERS[path.suffix.lower()](comparison, title))
    return path
