"""Plain facts about one module of the user's tree: torch-free, so the report (and the app,
which must paint before torch is imported) can hold them. Built by the catalog in
``modules.py`` (eager models) and ``graph.py`` (exported graphs); re-exported there."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModuleInfo:
    """Plain facts about one module, by fully qualified name (``""`` is the root)."""

    fqn: str
    name: str
    class_name: str
    parent: str | None
    depth: int
    children: tuple[str, ...]
    is_quant_helper: bool
    is_leaf: bool
    is_weighted: bool
    is_linear: bool
    total_params: int
    last_axis: bool
    monotone: bool = False
    #: Where this module's output is observed when not on itself: the fused module that
    #: returns it, or the nn.MultiheadAttention whose out_proj this is.
    fused_parent: str | None = None
    #: The registered kind of weighted layer ("linear", "hf_conv1d", "embedding", ...), or "".
    weight_kind: str = ""
    #: Why this module's input cannot be observed by hooks ("" when it can).
    hidden_input: str = ""
    #: How the module is already quantized (torchao tensor subclass weights, or a converted
    #: PT2E graph), e.g. "int8 weights per row (Int8Tensor)"; "" for a float module.
    quantized: str = ""

    @property
    def label(self) -> str:
        return self.name or "(model)"


def is_expert(fqn: str) -> bool:
    """Whether ``fqn`` names a mixture-of-experts expert (a module under an ``experts`` container)."""
    parts = fqn.split(".")
    return any(p in ("experts", "expert") for p in parts[:-1]) or any(p.startswith("expert_") for p in parts)
