"""A certificate per deletion request: what was done, with what evidence, signed.

:func:`issue_certificate` builds it from the ledger alone, for a request whose removal was verified
(state ``verified``), and moves the request to ``certified``. It holds:

- the hashes that identify what it speaks of: the input model (the removal's parent), the output
  model, the data (the corpus fingerprint and the digest of the removed documents) and the code
  that verified it (expunge's version and a digest of its source files);
- the policy, and every check with its value, reference, rule and result;
- which attacks were tried and which were not;
- the verdict;
- the ledger's signed tree head when it was issued, which anchors it in the log;
- its threat model, in plain words: evidence under the listed tests, not proof; it attests the
  procedure that was run, not a property of the weights alone.

The body is canonical JSON signed with the ledger's Ed25519 key (:func:`check_certificate` checks it
against a public key); the HTML rendering is :mod:`expunge.report.certificate`'s.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from expunge.errors import ExpungeError
from expunge.ledger.store import Head, Ledger, ModelVersion, RequestRow, RequestState, Run, VerificationRow

__all__ = ["THREAT_MODEL", "code_identity", "issue_certificate", "issue_certificate_in", "check_certificate",
           "certificate_body"]

FORMAT = "expunge-certificate/1"

THREAT_MODEL = (
    "This certificate is evidence, not proof. It attests that the procedure it lists was run: the "
    "removal that produced the output model, and a verification of that model against a reference "
    "(a model retrained without the data, where one is named) with the checks and attacks listed, "
    "each with its measured value, reference and result. A model that passes these checks behaves, "
    "on these tests, like a model that never saw the data. It does not show that no other test, "
    "prompt or attack could recover the data; attacks listed as not tried were not tried. It makes "
    "no claim about the weights beyond the tests run on them, and none about copies of the data or "
    "of earlier models held elsewhere. Its hashes identify the models, the data and the code; its "
    "signature and the ledger head it cites let anyone with the ledger's public key check that it "
    "was issued by this ledger and has not been changed since."
)


def code_identity() -> dict[str, str]:
    """expunge's version and a sha256 over its source files (path and bytes, in sorted order)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        version = metadata.version("expunge")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": "expunge", "version": version, "source_sha256": digest.hexdigest()}


def certificate_body(certificate: dict[str, Any]) -> bytes:
    """The bytes the signature covers: the certificate without its ``signature``, canonical JSON."""
    body = {k: v for k, v in certificate.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def issue_certificate(ledger: Ledger, request_id: str, model_sha256: str | None = None) -> dict[str, Any]:
    """Build, sign and record the certificate of a verified request (the latest verification that
    found it forgotten, or the one of ``model_sha256``); the request becomes certified."""
    with ledger.session() as session:
        return issue_certificate_in(ledger, session, request_id, model_sha256)


def issue_certificate_in(ledger: Ledger, session: Session, request_id: str,
                         model_sha256: str | None = None) -> dict[str, Any]:
    """:func:`issue_certificate` inside the caller's transaction (which may keep the certificate
    with it: it is committed together with the request's move to certified, or not at all)."""
    request = session.scalars(select(RequestRow).where(RequestRow.request_id == request_id)).first()
    if request is None:
        raise ExpungeError(f"request {request_id} is not in the ledger {ledger.where}",
                           "check the id with `expunge ledger requests`")
    if RequestState(request.state) is not RequestState.VERIFIED:
        raise ExpungeError(f"request {request_id} is {request.state}, not verified: there is nothing to certify",
                           "verify a removal that forgets it (`expunge verify … --oracle …`) first")
    query = select(VerificationRow).where(VerificationRow.request_id == request_id,
                                          VerificationRow.forgotten == "yes")
    if model_sha256 is not None:
        query = query.where(VerificationRow.model_sha256 == model_sha256)
    verification = session.scalars(query.order_by(VerificationRow.id.desc())).first()
    if verification is None:
        raise ExpungeError(f"no verification of request {request_id} found "
                           f"{'model ' + model_sha256[:12] + ' ' if model_sha256 else ''}forgotten",
                           "name a model that was verified forgotten (--model), or verify one")
    certificate = _build(session, request, verification)
    signature = ledger.key.private.sign(certificate_body(certificate))
    certificate["signature"] = {"algorithm": "Ed25519", "key_id": ledger.key.key_id,
                                "public_key_pem": ledger.key.public_pem(),
                                "value": base64.b64encode(signature).decode("ascii")}
    digest = hashlib.sha256(certificate_body(certificate)).hexdigest()
    ledger.transition(session, request_id, RequestState.CERTIFIED,
                      {"model": verification.model_sha256, "certificate_sha256": digest})
    return certificate


def _build(session: Session, request: RequestRow, verification: VerificationRow) -> dict[str, Any]:
    summary = verification.summary
    model = session.scalars(select(ModelVersion).where(ModelVersion.sha256 == verification.model_sha256)).first()
    run = session.get(Run, model.run_id) if model is not None and model.run_id else None
    checks = [{"name": c.get("name"), "policy_key": c.get("policy_key"), "question": c.get("question"),
               "value": c.get("value"), "reference": c.get("reference"), "rule": c.get("rule"),
               "result": c.get("status"), "decisive": c.get("decisive"), "interval": c.get("interval")}
              for c in summary.get("checks", [])]
    reasons = summary.get("verdict", {}).get("reasons", [])
    not_tried = [item.strip() for r in reasons if r.startswith("not tried:")
                 for item in r.split(":", 1)[1].split("—")[0].split(",") if item.strip()]
    config = summary.get("config", {})
    # (read in this transaction: a second connection would wait for this one's write lock)
    head = session.scalars(select(Head).order_by(Head.size.desc()).limit(1)).first()
    return {
        "format": FORMAT,
        "request": {"id": request.request_id, "kind": request.kind, "targets": request.targets,
                    "received_at": request.created_at},
        "models": {
            "input_sha256": model.parent_sha256 if model is not None else None,
            "output_sha256": verification.model_sha256,
            "output_path": model.path if model is not None else summary.get("model", {}).get("path"),
            "removal": {"run": run.kind, "recipe": run.recipe, "documents_sha256": run.documents_sha256}
            if run is not None else None,
            "verified_against": {"original_sha256": verification.original_sha256,
                                 "oracle_sha256": verification.oracle_sha256,
                                 "reference": summary.get("reference")},
        },
        "data": {"corpus_fingerprint": request.corpus, "removed_documents_sha256": request.documents_sha256},
        "code": summary.get("code") or code_identity(),
        "policy": config.get("policy"),
        "checks": checks,
        "attacks": {"tried": summary.get("attacks_tried", []), "not_tried": not_tried},
        "verdict": {k: summary.get("verdict", {}).get(k) for k in ("forgotten", "collateral_damage", "confidence",
                                                                   "summary")},
        "oracle_trusted": summary.get("oracle_trusted"),
        "verified_at": verification.created_at,
        "ledger_head": None if head is None else {"size": head.size, "root": head.root, "created_at": head.created_at,
                                                  "key_id": head.key_id, "signature": head.signature},
        "threat_model": THREAT_MODEL,
    }


def check_certificate(certificate: dict[str, Any], public_key: Ed25519PublicKey) -> bool:
    """Whether the certificate's signature verifies with ``public_key`` over its body as it is now."""
    signature = certificate.get("signature") or {}
    try:
        public_key.verify(base64.b64decode(signature.get("value", "")), certificate_body(certificate))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
