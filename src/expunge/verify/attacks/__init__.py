"""Model-level attacks: how much knowledge about the forgotten facts can still be recovered.

- :mod:`.registry` — the plug-in protocol (:class:`Attack`, typed results, :class:`Comparison`)
  and the registry every part of verification loops over;
- :mod:`.kernels` — the algorithms (relearning, quantization round trip, logit lens, linear
  probe) as functions of (model, tokenizer, probes), documented there;
- :mod:`.builtin` — the four built-in attacks registered as plug-ins.
"""

from expunge.verify.attacks.kernels import *  # noqa: F401,F403
from expunge.verify.attacks.kernels import __all__ as _kernel_names
from expunge.verify.attacks.registry import (
    Attack,
    AttackResult,
    Comparison,
    attack_names,
    attacks,
    get_attack,
    register_attack,
    registered_attack,
    unregister_attack,
)
from expunge.verify.attacks import builtin as _builtin  # noqa: E402,F401  (registers the built-ins)
from expunge.verify.attacks.builtin import (  # noqa: E402
    LinearProbeResult,
    LogitLensResult,
    QuantizationResult,
    RelearningResult,
)

__all__ = [*_kernel_names, "Attack", "AttackResult", "Comparison", "attack_names", "attacks", "get_attack",
           "register_attack", "registered_attack", "unregister_attack", "RelearningResult", "QuantizationResult",
           "LogitLensResult", "LinearProbeResult"]
