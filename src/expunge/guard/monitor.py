"""The guard and the ledger: the monitor log of blocked generations, and the request's fallback.

What goes into the ledger is what an auditor may see: the guard's sha256, the stage, the matcher,
the target's *id*, the score and the sha256 of the prompt and of the generated text. The blocked
text itself never does: a log that quoted it would keep a copy of what was deleted.
"""

from __future__ import annotations

from typing import Any

from expunge.guard.generate import GuardedOutput, sha256_text
from expunge.guard.spec import GuardSpec

__all__ = ["record_guard_event", "enable_fallback"]


def record_guard_event(ledger: Any, spec: GuardSpec, prompt: str, result: GuardedOutput) -> None:
    """Write one intervention of the guard (``result.stage`` is set) to ``ledger``'s monitor log,
    with its ``guard.blocked`` event, in one transaction. The request id is recorded only when the
    ledger holds the request."""
    if result.stage is None:
        raise ValueError("the guard did not act on this output: nothing to record")
    request_id = spec.request_id if ledger.request_state(spec.request_id) is not None else None
    with ledger.session() as session:
        ledger.record_guard_block(session, request_id=request_id, guard_sha256=spec.sha256, stage=str(result.stage),
                                  matcher=str(result.matcher), target=str(result.target),
                                  score=float(result.score or 0.0), prompt_sha256=sha256_text(prompt),
                                  output_sha256=result.output_sha256)


def enable_fallback(ledger: Any, spec: GuardSpec) -> str | None:
    """Record that a guard now stands in for ``spec``'s request: the request becomes ``fallback``
    where the lifecycle allows it (located, removed or failed: its removal is not verified).
    Returns the request's state afterwards, or None when the ledger does not hold the request."""
    from expunge.ledger.store import TRANSITIONS, RequestState

    state = ledger.request_state(spec.request_id)
    if state is None:
        return None
    if state is not RequestState.FALLBACK and RequestState.FALLBACK in TRANSITIONS[state]:
        with ledger.session() as session:
            ledger.transition(session, spec.request_id, RequestState.FALLBACK,
                              {"guard_sha256": spec.sha256, **spec.counts()})
        return str(RequestState.FALLBACK)
    return str(state)
