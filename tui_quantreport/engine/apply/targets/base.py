"""A deployment target: which library applies the plan, on what, and how it quantizes.

A :class:`Target` declares

- its exporter and its applier (``export(subject)`` -> the files, ``applier(export, subject,
  probe_count)`` -> ``(apply(model), library, inspect)`` for ``verify``), imported lazily;
- which schemes it runs on which module kinds and shapes (:meth:`Target.runs`: a reason when
  it skips or refuses one, None when it runs it);
- its activation recipe (:class:`~tui_quantreport.engine.apply.targets.recipe.ActivationRecipe`),
  which the simulation takes so that the predicted SQNR is the one the target achieves.

Torch-free: the registry is read by the command line's parser and the app's dialogs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tui_quantreport.engine.apply.targets.recipe import ActivationRecipe

LINEAR = "Linear"
CONV1D = "Conv1d"
CONV2D = "Conv2d"
CONV3D = "Conv3d"
EMBEDDING = "Embedding"
HF_CONV1D = "transformers Conv1D"
MHA_OUT_PROJ = "nn.MultiheadAttention out_proj"


def module_class(kind: str, weight_shape: tuple[int, ...]) -> str:
    """The module class a target's support is stated for, from the simulation's kind name
    (``engine/modules.py``'s weighted kinds) and the weight's shape."""
    if kind == "linear":
        return LINEAR
    if kind == "conv":
        return {3: CONV1D, 4: CONV2D, 5: CONV3D}.get(len(weight_shape), f"Conv ({len(weight_shape)}-D weight)")
    if kind == "embedding":
        return EMBEDDING
    if kind == "hf_conv1d":
        return HF_CONV1D
    if kind == "multihead_attention_out_proj":
        return MHA_OUT_PROJ
    return kind.replace("_", " ")


@dataclass(frozen=True)
class Target:
    """One deployment target (see the module docstring)."""

    name: str
    title: str
    description: str
    library: str  # "torchao", "pt2e" or "torch.ao"
    device: str  # "cpu" or "cuda"
    recipe: ActivationRecipe
    #: scheme -> the module classes (:func:`module_class`) the target runs it on.
    supported: Mapping[str, frozenset[str]]
    #: module class -> why the target quantizes no scheme on it (the general case is worded by runs()).
    why_not: Mapping[str, str] = field(default_factory=dict)
    #: scheme -> why the target has no such scheme at all.
    scheme_missing: Mapping[str, str] = field(default_factory=dict)
    #: "module:function" of ``export(target, subject) -> Export``.
    exporter: str = ""
    #: "module:function" of ``applier(target, export, subject, probe_count)``.
    applier_path: str = ""
    #: The suffix of the file the app suggests for the export.
    suffix: str = ".py"
    #: What the app's export dialog shows.
    file_label: str = ""
    #: Old names (``config --target torchao``) that select this target.
    aliases: tuple[str, ...] = ()
    #: Whether the target runs the number formats beyond the int8 four (torchao's int4, fp8, MX,
    #: NVFP4, NF4 configs) on Linear modules, by each scheme's facts (where it runs).
    formats: bool = False

    def runs(self, scheme: str, kind: str, weight_shape: tuple[int, ...]) -> str | None:
        """Why this target does not run ``scheme`` on a module of ``kind`` with a weight of
        ``weight_shape`` (skipped or refused), or None when it runs it."""
        if scheme == "float":
            return None
        cls = module_class(kind, weight_shape)
        if scheme not in self.supported:
            if self.formats:
                return self._runs_format(scheme, cls)
            return self.scheme_missing.get(scheme) or f"{self.name} runs only {', '.join(self.supported)}"
        if cls in self.supported[scheme]:
            return None
        if cls in self.why_not:
            return self.why_not[cls]
        runs_on = ", ".join(sorted(self.supported[scheme]))
        return f"{self.name} runs {scheme} on {runs_on} only, not on {cls}"

    def _runs_format(self, scheme: str, cls: str) -> str | None:
        """Why this torchao target does not run the format ``scheme`` (its facts: CUDA-only
        kernels on a CPU target), or None."""
        from tui_quantreport.engine.quantsim.schemes import SCHEMES  # the registry: read when asked

        known = SCHEMES.get(scheme)
        if known is None:
            return f"{self.name} has no {scheme} scheme"
        if known.facts.simulated_only:
            return f"{scheme} is {known.facts.runs_note}: {self.name} does not run it"
        if known.facts.cuda_only and self.device != "cuda":
            return f"{scheme} is {known.facts.runs_note}: {self.name} does not run it"
        return None  # the module kinds and shapes it takes are the scheme's own eligibility

    def eligible_schemes(self, kind: str, weight_shape: tuple[int, ...]) -> list[str]:
        return [s for s in self.supported if self.runs(s, kind, weight_shape) is None]

    def export(self, subject: Any) -> Any:
        """The target's files for the subject's plan (nothing written)."""
        return _resolve(self.exporter)(self, subject)

    def applier(self, export: Any, subject: Any, probe_count: int) -> tuple[Callable[[Any], Any], str, Any]:
        """``(apply(model), library label, inspect or None)`` for ``verify``."""
        return _resolve(self.applier_path)(self, export, subject, probe_count)

    def describe(self) -> str:
        return f"{self.name}: {self.title}"


def _resolve(path: str) -> Callable[..., Any]:
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)
