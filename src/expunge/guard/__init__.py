"""The output guard: defense in depth while (or instead of) a removal is verified.

Read in this order: :mod:`~expunge.guard.spec` (what must not come out, made from a world and a
request), :mod:`~expunge.guard.match` (the matchers), :mod:`~expunge.guard.semantic` (the optional
fuzzy and embedding dependencies), :mod:`~expunge.guard.generate` (the logits processor and the
post-generation check), :mod:`~expunge.guard.monitor` (the ledger's monitor log and the request's
fallback state).
"""

from expunge.guard.match import (ALL_MATCHERS, DEFAULT_MATCHERS, Match, MatchConfig, Matcher, check_text,
                                 parse_matchers)
from expunge.guard.spec import (GuardSpec, GuardTarget, Scope, TargetKind, build_guard_spec, load_guard_spec,
                                normalise, write_guard_spec)

__all__ = ["ALL_MATCHERS", "DEFAULT_MATCHERS", "GuardSpec", "GuardTarget", "Match", "MatchConfig", "Matcher", "Scope",
           "TargetKind", "build_guard_spec", "check_text", "load_guard_spec", "normalise", "parse_matchers",
           "write_guard_spec", "GuardedOutput", "GuardLogitsProcessor", "Stage", "check_output", "guarded_generate",
           "enable_fallback", "record_guard_event"]


def __getattr__(name: str):  # the generation half imports torch and transformers: only when used
    if name in ("GuardedOutput", "GuardLogitsProcessor", "Stage", "check_output", "guarded_generate"):
        from expunge.guard import generate

        return getattr(generate, name)
    if name in ("enable_fallback", "record_guard_event"):
        from expunge.guard import monitor

        return getattr(monitor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
