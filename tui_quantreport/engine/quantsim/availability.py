"""Whether the quantization simulation can measure a session's model, and if not, why.

The simulation swaps a model's Linear/Conv modules for simulated ones; an exported graph does
its work in aten nodes (its modules only hold weights), and a torchao-quantized module already
holds int8 tensor subclasses. Both are stated, never attempted (an attempt fails deep inside
the swap with an error that names neither).
"""

from __future__ import annotations

from typing import Any


def unavailable_reason(session: Any) -> str | None:
    """None when the model can be measured; else what it is ("exported graphs", ...)."""
    if getattr(session, "graph", None) is not None:
        return "exported graphs"  # quantsim swaps modules; a graph's modules are nodes
    if any(m.quantized for m in session.catalog.modules.values()):
        return "models with already-quantized (torchao) modules"
    return None


def unavailable_note(what: str) -> str:
    """The sentence the CLI and the app show for :func:`unavailable_reason`'s answer."""
    return f"measured error (SQNR) is not available for {what} yet; findings are unmeasured"
