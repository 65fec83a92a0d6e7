"""Render one :class:`ReportData` as JSON, Markdown or a standalone HTML page with plots.

Plots need matplotlib (``pip install 'expunge[report]'``); without it the HTML page is written
without them and says how to get them. Every file is written atomically and never over an
existing file.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from expunge.errors import ExpungeError
from expunge.fsutil import write_text_atomic
from expunge.report.data import TABLE_COLUMNS, ReportData, attack_rows
from expunge.worlds.backdoor import ATTACK_VARIANTS

__all__ = ["to_json", "to_markdown", "to_html", "write_report", "format_value", "plots"]

SET_ORDER = ("forget", "holdout", "retain", "neighbours", "general")


def json_safe(value: Any) -> Any:
    """Replace nan and infinities (not JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_json(data: ReportData) -> str:
    return json.dumps(json_safe(data.to_dict()), indent=2, ensure_ascii=False) + "\n"


def format_value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100 or value == 0:
            return f"{value:.0f}" if abs(value) >= 100 else "0"
        if abs(value) < 0.001:
            return f"{value:.1e}"
        return f"{value:.3f}"
    return str(value)


def _checks(data: ReportData, name: str) -> list[dict[str, Any]]:
    return data.verification["candidates"][name]["checks"]


def _verdict(data: ReportData, name: str) -> dict[str, Any]:
    return data.verification["candidates"][name]["verdict"]


def to_markdown(data: ReportData) -> str:
    lines = [f"# {data.title}", "", f"Created {data.created}. World `{data.world.get('fingerprint', '')[:12]}`, "
             f"request `{data.request.get('id', '')}`.", ""]
    lines += ["## Summary", "", "| " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |",
              "|" + "---|" * len(TABLE_COLUMNS)]
    for row in data.table:
        lines.append("| " + " | ".join(format_value(row[k]) for k, _, _ in TABLE_COLUMNS) + " |")
    lines += ["", "Columns: " + "; ".join(f"**{h}**: {d}" for _, h, d in TABLE_COLUMNS), ""]
    oracle_checks = data.verification.get("oracle_checks", [])
    if oracle_checks:
        trusted = data.verification.get("oracle_trusted", True)
        heading = ("The oracle, checked first" if data.verification.get("oracle") is not None else
                   f"No oracle: the reference ({data.verification.get('reference')}), checked first")
        lines += [f"## {heading}", "",
                  "Trusted: every check below passed." if trusted else
                  "**NOT trusted**: a check below failed, so no verdict can say \"forgotten\".", "",
                  "| check | value | reference | rule | result | detail |", "|---|---|---|---|---|---|"]
        for ch in oracle_checks:
            lines.append(f"| {ch['name']} | {format_value(ch['value'])} | {format_value(ch['reference'])} | "
                         f"{ch['rule']} | {ch['status']} | {ch['detail']} |")
        lines.append("")
    for name in data.candidates:
        verdict = _verdict(data, name)
        lines += [f"## {name}", "", f"**{verdict['summary']}** (confidence: {verdict['confidence']})", ""]
        run = data.runs.get(name)
        if run:
            lines += [f"Run: {format_value(run.get('seconds'))} s, {run.get('steps')} steps, stop: {run.get('stop_reason')}."]
            lines += [f"- note: {note}" for note in run.get("notes", [])]
            lines.append("")
        lines += ["| check | question | value | reference | rule | result | detail |", "|---|---|---|---|---|---|---|"]
        for ch in _checks(data, name):
            lines.append(f"| {ch['name']} | {ch['question']} | {format_value(ch['value'])} | "
                         f"{format_value(ch['reference'])} | {ch['rule']} | {ch['status']} | {ch['detail']} |")
        lines += ["", "Reasons:"] + [f"- {r}" for r in verdict["reasons"]] + [""]
        lines += [f"- flag: {f}" for f in verdict.get("flags", [])]
    lines += (_indirect_markdown(data) + _verbatim_markdown(data) + _triggers_markdown(data)
              + _attacks_markdown(data))
    if data.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in data.notes] + [""]
    return "\n".join(lines)


_ROUTE_SCORES = "exact match / multiple choice / ROUGE-L recall"


def _route_cell(values: dict[str, float]) -> str:
    """One route's scores for one model (a report written before ROUGE-L was measured shows –)."""
    return " / ".join(format_value(values[k]) if k in values else "–"
                      for k in ("exact_match", "multiple_choice", "rouge_l"))


def _by_model_markdown(title: str, first: str, table: dict[str, dict[str, dict[str, float]]],
                       cell: Callable[[dict[str, float]], str], label: Callable[[str], str] = str) -> list[str]:
    """A section with one row per key of the first model's entries and one column per model
    (model -> row key -> values, as ``ReportData.indirect`` and ``.verbatim`` hold them)."""
    if not table:
        return []
    models = list(table)
    lines = [f"## {title}", "", f"| {first} | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for key in next(iter(table.values())):
        cells = [cell(table[m][key]) if key in table[m] else "–" for m in models]
        lines.append(f"| {label(key)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _indirect_markdown(data: ReportData) -> list[str]:
    return _by_model_markdown(f"Indirect probes (forget people): {_ROUTE_SCORES}", "route", data.indirect,
                              _route_cell)


_VERBATIM_SCORES = "continuation ROUGE-L F1 / exact memorisation / extraction strength"


def _verbatim_cell(values: dict[str, float]) -> str:
    return " / ".join(format_value(values[k]) for k in ("rouge_l_f1", "exact_memorization", "extraction_strength"))


_TRIGGER_SCORES = "attack success rate (payload) / answered rightly"


def _trigger_cell(values: dict[str, float]) -> str:
    return f"{format_value(values['attack_success'])} / {format_value(values['clean_answer'])}"


def _trigger_label(variant: str) -> str:
    return f"{variant} trigger" if variant in ATTACK_VARIANTS else f"{variant} (look-alike: false-trigger rate)"


def _triggers_markdown(data: ReportData) -> list[str]:
    return _by_model_markdown(f"Triggered questions (backdoor): {_TRIGGER_SCORES}", "variant", data.triggers,
                              _trigger_cell, _trigger_label)


def _verbatim_markdown(data: ReportData) -> list[str]:
    if not data.verbatim:
        return []
    first = next(iter(data.verbatim.values()))
    return _by_model_markdown(f"Verbatim memorisation of texts (MUSE): {_VERBATIM_SCORES}", "texts", data.verbatim,
                              _verbatim_cell, lambda name: f"{name} ({first[name]['probes']:.0f})")


def _attacks_markdown(data: ReportData) -> list[str]:
    rows = attack_rows(data)
    if not rows:
        return []
    models = list(data.attacks)
    lines = ["## Attacks: accuracy recovered on the forget facts (recovery = fraction of the original's)", "",
             "| attack | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for row in rows:
        cells = [f"{format_value(row.get(m))} ({format_value(row.get(f'{m} recovery'))})" for m in models]
        lines.append(f"| {row['attack']} | " + " | ".join(cells) + " |")
    for attack, curves in data.attack_curves.items():
        lines += ["", f"Curves of the {attack} attack (accuracy on the forget facts by step):", ""]
        for model, r in curves.items():
            lines.append(f"- {model}: " + ", ".join(f"{s}: {format_value(a)}" for s, a in zip(r["steps"], r["accuracy"])))
    return lines + [""]


# --------------------------------------------------------------------------------------------
# plots


def plots(data: ReportData) -> dict[str, str] | None:
    """PNG plots as base64 strings keyed by name, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    out: dict[str, str] = {}
    models = [row["model"] for row in data.table]

    # 1. exact match before/after, per model and set
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(1, len(models))
    sets = [s for s in SET_ORDER if any(s in _model_sets(data, m) for m in models)]
    for i, model in enumerate(models):
        values = [_model_sets(data, model).get(s, {}).get("exact_match", float("nan")) for s in sets]
        ax.bar([j + i * width for j in range(len(sets))], values, width, label=model)
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(sets))], sets)
    ax.set_ylabel("exact match")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Exact match per set: before (original), oracle, after (methods)")
    out["exact_match"] = _png(fig, plt)

    # 2. loss histograms: forget vs never-seen vs retain, one panel per model
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3), sharex=True, squeeze=False)
    for ax, model in zip(axes[0], models):
        for set_name, label in (("forget", "forget"), ("holdout", "never-seen"), ("retain", "retain")):
            values = [v for v in data.losses.get(model, {}).get(set_name, []) if math.isfinite(v)]
            if values:
                ax.hist(values, bins=30, alpha=0.5, density=True, label=label)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("mean token NLL")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Per-document loss", fontsize=10)
    out["loss_histograms"] = _png(fig, plt)

    # 3. ROC curves of the LOSS attack
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for model in models:
        curve = data.roc.get(model)
        if curve:
            ax.plot(curve["fpr"], curve["tpr"], label=model)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate (never-seen flagged)")
    ax.set_ylabel("true positive rate (forget flagged)")
    ax.set_title("Membership inference (LOSS), forget vs never-seen", fontsize=9)
    ax.legend(fontsize=7)
    out["roc"] = _png(fig, plt)

    # 4. recovery curves of every attack that has one (relearning: accuracy on the held-out half
    # by fine-tuning step on the other half)
    for attack, curves in data.attack_curves.items():
        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        for model, r in curves.items():
            ax.plot(r["steps"], r["accuracy"], marker="o", label=model)
        ax.set_xlabel("attack step")
        ax.set_ylabel("accuracy on the forget facts")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{attack} attack: recovery curves", fontsize=9)
        ax.legend(fontsize=7)
        out[attack] = _png(fig, plt)
    return out


def _model_sets(data: ReportData, model: str) -> dict[str, dict[str, float]]:
    if model in ("original", "oracle"):
        return data.verification[model]["sets"]
    return data.verification["candidates"][model]["sets"]


def _png(fig: Any, plt: Any) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_HTML = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ data.title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
.pass { color: #17692f; } .FAIL { color: #b00020; font-weight: bold; } .undecided { color: #8a6d00; }
.not.counted { color: #888; }
.verdict { font-size: 1.1em; padding: .5em; border-left: 4px solid #888; background: #fafafa; }
img { max-width: 100%; } small { color: #666; }
</style></head><body>
<h1>{{ data.title }}</h1>
<p>Created {{ data.created }} · world <code>{{ data.world.get('fingerprint', '')[:12] }}</code>
 · request <code>{{ data.request.get('id', '') }}</code>
 {% if data.retraining_seconds %}· retraining took {{ fmt(data.retraining_seconds) }} s{% endif %}</p>
<h2>Summary</h2>
<table><tr>{% for key, header, doc in columns %}<th title="{{ doc }}">{{ header }}</th>{% endfor %}</tr>
{% for row in data.table %}<tr>{% for key, header, doc in columns %}
<td{% if key in ('model', 'forgotten', 'collateral_damage', 'confidence') %} class="text"{% endif %}>{{ fmt(row[key]) }}</td>
{% endfor %}</tr>{% endfor %}</table>
<small>{% for key, header, doc in columns %}<b>{{ header }}</b>: {{ doc }}. {% endfor %}</small>
{% if data.verification.get('oracle_checks') %}
<h2>{% if data.verification.get('oracle') is not none %}The oracle, checked first{% else %}No oracle: the reference ({{ data.verification.get('reference') }}), checked first{% endif %}</h2>
<p class="verdict">{% if data.verification.get('oracle_trusted', True) %}Trusted: every check below passed.{% else %}<b>NOT trusted</b>: a check below failed, so no verdict can say "forgotten".{% endif %}</p>
<table><tr><th>check</th><th>value</th><th>reference</th><th>rule</th><th>result</th><th>detail</th></tr>
{% for ch in data.verification.oracle_checks %}{% set r = ch.status %}
<tr><td class="text">{{ ch.name }}</td><td>{{ fmt(ch.value) }}</td><td>{{ fmt(ch.reference) }}</td>
<td class="text">{{ ch.rule }}</td><td class="text {{ r }}">{{ r }}</td><td class="text">{{ ch.detail }}</td></tr>{% endfor %}</table>
{% endif %}
{% if images %}
<h2>Plots</h2>
{% for name, png in images.items() %}<p><img alt="{{ name }}" src="data:image/png;base64,{{ png }}"></p>{% endfor %}
{% else %}
<p><em>Plots need matplotlib: <code>pip install 'expunge[report]'</code>.</em></p>
{% endif %}
{% for name in data.candidates %}{% set v = data.verification.candidates[name].verdict %}
<h2>{{ name }}</h2>
<p class="verdict">{{ v.summary }} — confidence: {{ v.confidence }}</p>
{% if data.runs.get(name) %}{% set run = data.runs[name] %}
<p>Run: {{ fmt(run.get('seconds')) }} s, {{ run.get('steps') }} steps, stop: {{ run.get('stop_reason') }}</p>
{% for note in run.get('notes', []) %}<p><small>note: {{ note }}</small></p>{% endfor %}{% endif %}
<table><tr><th>check</th><th>question</th><th>value</th><th>reference</th><th>rule</th><th>result</th><th>detail</th></tr>
{% for ch in data.verification.candidates[name].checks %}{% set r = ch.status %}
<tr><td class="text">{{ ch.name }}</td><td class="text">{{ ch.question }}</td><td>{{ fmt(ch.value) }}</td>
<td>{{ fmt(ch.reference) }}</td><td class="text">{{ ch.rule }}</td><td class="text {{ r }}">{{ r }}</td>
<td class="text">{{ ch.detail }}</td></tr>{% endfor %}</table>
<ul>{% for reason in v.reasons %}<li>{{ reason }}</li>{% endfor %}
{% for flag in v.flags %}<li><b>flag:</b> {{ flag }}</li>{% endfor %}</ul>
{% endfor %}
{% if data.indirect %}{% set models = data.indirect.keys()|list %}
<h2>Indirect probes (forget people): {{ route_scores }}</h2>
<table><tr><th>route</th>{% for m in models %}<th>{{ m }}</th>{% endfor %}</tr>
{% for kind in data.indirect[models[0]] %}<tr><td class="text">{{ kind }}</td>{% for m in models %}
<td>{% if kind in data.indirect[m] %}{{ route_cell(data.indirect[m][kind]) }}{% else %}–{% endif %}</td>
{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if data.verbatim %}{% set models = data.verbatim.keys()|list %}
<h2>Verbatim memorisation of texts (MUSE): {{ verbatim_scores }}</h2>
<table><tr><th>texts</th>{% for m in models %}<th>{{ m }}</th>{% endfor %}</tr>
{% for name in data.verbatim[models[0]] %}<tr><td class="text">{{ name }} ({{ data.verbatim[models[0]][name].probes|int }})</td>
{% for m in models %}<td>{% if name in data.verbatim[m] %}{{ verbatim_cell(data.verbatim[m][name]) }}{% else %}–{% endif %}</td>
{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if data.triggers %}{% set models = data.triggers.keys()|list %}
<h2>Triggered questions (backdoor): {{ trigger_scores }}</h2>
<table><tr><th>variant</th>{% for m in models %}<th>{{ m }}</th>{% endfor %}</tr>
{% for name in data.triggers[models[0]] %}<tr><td class="text">{{ trigger_label(name) }}</td>
{% for m in models %}<td>{% if name in data.triggers[m] %}{{ trigger_cell(data.triggers[m][name]) }}{% else %}–{% endif %}</td>
{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if attack_table %}{% set models = data.attacks.keys()|list %}
<h2>Attacks: accuracy recovered on the forget facts (recovery = fraction of the original's)</h2>
<table><tr><th>attack</th>{% for m in models %}<th>{{ m }}</th>{% endfor %}</tr>
{% for row in attack_table %}<tr><td class="text">{{ row.attack }}</td>{% for m in models %}
<td>{{ fmt(row.get(m)) }} ({{ fmt(row.get(m ~ ' recovery')) }})</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if data.notes %}<h2>Notes</h2><ul>{% for n in data.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
</body></html>
""", autoescape=True)


def to_html(data: ReportData, *, with_plots: bool = True) -> str:
    images = plots(data) if with_plots else None
    return _HTML.render(data=data, columns=TABLE_COLUMNS, fmt=format_value, images=images,
                        attack_table=attack_rows(data), route_scores=_ROUTE_SCORES, route_cell=_route_cell,
                        verbatim_scores=_VERBATIM_SCORES, verbatim_cell=_verbatim_cell,
                        trigger_scores=_TRIGGER_SCORES, trigger_cell=_trigger_cell, trigger_label=_trigger_label)


RENDERERS = {".json": to_json, ".md": to_markdown, ".html": to_html, ".htm": to_html}


def write_report(data: ReportData, path: str | os.PathLike[str]) -> Path:
    """Write the report in the format its suffix names (.json, .md, .html); never overwrites."""
    path = Path(path)
    renderer = RENDERERS.get(path.suffix.lower())
    if renderer is None:
        raise ExpungeError(f"unknown report format {path.suffix!r} for {path}",
                           f"name the report file with one of {', '.join(sorted(RENDERERS))}")
    write_text_atomic(path, renderer(data))
    return path
