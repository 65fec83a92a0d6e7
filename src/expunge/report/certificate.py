"""A deletion certificate as a page a person reads (:mod:`expunge.ledger.certificate` makes it).

The page shows what the JSON holds, in the order an auditor asks: what was requested, what was
done to which model, the verdict, every check with its value, reference and result, the attacks
tried and not tried, the threat model, and how to check the signature. The JSON file, not the
page, is what is signed.
"""

from __future__ import annotations

import os
from typing import Any

import jinja2

from expunge.fsutil import write_text_atomic
from expunge.report.render import format_value

__all__ = ["certificate_html", "write_certificate"]

_HTML = jinja2.Template("""<!doctype html>
<html><head><meta charset="utf-8"><title>Deletion certificate {{ c.request.id }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;line-height:1.45}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;font-size:.9rem}
code{font-size:.85rem;word-break:break-all}.pass{color:#060}.fail{color:#a00}.note{background:#f6f6f6;padding:1rem}
</style></head><body>
<h1>Deletion certificate</h1>
<p>Request <code>{{ c.request.id }}</code> ({{ c.request.kind }}), received {{ c.request.received_at }}:
{{ c.request.targets | join(", ") }}.</p>
<h2>Verdict</h2>
<p><strong>forgotten: {{ c.verdict.forgotten }}</strong>; collateral damage: {{ c.verdict.collateral_damage }};
confidence: {{ c.verdict.confidence }}. {{ c.verdict.summary }}</p>
<h2>What was done</h2>
<table>
<tr><th>input model (sha256)</th><td><code>{{ c.models.input_sha256 }}</code></td></tr>
<tr><th>output model (sha256)</th><td><code>{{ c.models.output_sha256 }}</code> {{ c.models.output_path }}</td></tr>
{% if c.models.removal %}<tr><th>removal</th><td>{{ c.models.removal.run }}
{% if c.models.removal.recipe.method %}({{ c.models.removal.recipe.method }}){% endif %};
documents <code>{{ c.models.removal.documents_sha256 }}</code></td></tr>{% endif %}
<tr><th>verified against</th><td>{{ c.models.verified_against.reference }}: original
<code>{{ c.models.verified_against.original_sha256 }}</code>{% if c.models.verified_against.oracle_sha256 %},
oracle <code>{{ c.models.verified_against.oracle_sha256 }}</code>{% endif %}</td></tr>
<tr><th>data</th><td>corpus <code>{{ c.data.corpus_fingerprint }}</code>; removed documents
<code>{{ c.data.removed_documents_sha256 }}</code></td></tr>
<tr><th>code</th><td>{{ c.code.package }} {{ c.code.version }}, source <code>{{ c.code.source_sha256 }}</code></td></tr>
<tr><th>verified at</th><td>{{ c.verified_at }}</td></tr>
</table>
<h2>Checks</h2>
<table><tr><th>check</th><th>question</th><th>value</th><th>reference</th><th>rule</th><th>result</th></tr>
{% for k in c.checks %}<tr><td>{{ k.name }}</td><td>{{ k.question }}</td><td>{{ fmt(k.value) }}</td>
<td>{{ fmt(k.reference) }}</td><td>{{ k.rule }}</td>
<td class="{{ 'pass' if k.result == 'pass' else ('fail' if k.result == 'fail' else '') }}">{{ k.result }}
{% if not k.decisive %}(reported){% endif %}</td></tr>
{% endfor %}</table>
<h2>Attacks</h2>
<p>Tried: {{ c.attacks.tried | join(", ") or "none" }}.<br>Not tried: {{ c.attacks.not_tried | join(", ") or "none" }}.</p>
<h2>Threat model</h2>
<p class="note">{{ c.threat_model }}</p>
<h2>Signature</h2>
<p>{{ c.signature.algorithm }}, key <code>{{ c.signature.key_id }}</code>, over the canonical JSON of
this certificate without its signature; ledger head at issuance: size {{ c.ledger_head.size }}, root
<code>{{ c.ledger_head.root }}</code>. Check it: <code>expunge ledger check-certificate FILE.json
--public-key PUBLIC.pem</code>, with the ledger's public key obtained apart from this page.</p>
</body></html>
""", autoescape=True)


def certificate_html(certificate: dict[str, Any]) -> str:
    return _HTML.render(c=certificate, fmt=format_value)


def write_certificate(certificate: dict[str, Any], json_path: str | os.PathLike[str],
                      html_path: str | os.PathLike[str] | None = None) -> None:
    """The signed JSON (and its HTML rendering), each written atomically and never over a file."""
    import json

    write_text_atomic(json_path, json.dumps(certificate, indent=2, ensure_ascii=False) + "\n")
    if html_path is not None:
        write_text_atomic(html_path, certificate_html(certificate))
