"""What the engine knows about a model's modules before any data flows.

:class:`ModelCatalog` walks ``named_modules()`` once (or an exported graph's nodes, through
:class:`~tui_quantreport.engine.graph.GraphView`) and records plain facts the detectors and the
app need: the tree, each module's class, whether it is an observer or fake quantizer inserted by
``torch.ao`` (not one of the user's modules), whether it is a leaf, which channel axis its tensors
use, and how its weights are planned to be quantized.

The facts about one module (the weighted kinds, the axis rules, the helpers) live in
:mod:`~tui_quantreport.engine.module_kinds`, the fingerprint in
:mod:`~tui_quantreport.engine.fingerprint`; their names are importable from here as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn

from tui_quantreport.engine.errors import ParamError, UserError
from tui_quantreport.engine.fingerprint import (
    FINGERPRINT_VERSION,
    first_difference,
    identity_fingerprint,
    is_versioned,
    legacy_fingerprint,
    model_fingerprint,
    model_identity,
)
from tui_quantreport.engine.graph import GraphView, is_exported_graph
from tui_quantreport.engine.module_info import ModuleInfo
from tui_quantreport.engine.module_kinds import (
    ALL_BACKENDS,
    AXIS_CHANNELS,
    AXIS_FOLLOW,
    AXIS_KEEP,
    AXIS_LAST,
    AXIS_NORM,
    CAPABILITIES,
    CHANNEL_AXIS_TYPES,
    DYNAMIC,
    EQUALIZATION,
    MONOTONE_TYPES,
    PER_CHANNEL,
    SIZE_ATTRIBUTES,
    WEIGHTED_KINDS,
    WeightedKind,
    WeightScheme,
    axis_rule,
    describe_quantized_tensor,
    forward_overridden,
    is_fused,
    is_lazy,
    is_monotone,
    is_quant_helper,
    kind_named,
    norm_axis,
    qconfig_weight_scheme,
    quantized_weights,
    register_weighted_kind,
    unknown_weights,
    weighted_kind,
)

__all__ = [
    "ALL_BACKENDS",
    "AXIS_CHANNELS",
    "AXIS_FOLLOW",
    "AXIS_KEEP",
    "AXIS_LAST",
    "AXIS_NORM",
    "CAPABILITIES",
    "CHANNEL_AXIS_TYPES",
    "DYNAMIC",
    "EQUALIZATION",
    "FINGERPRINT_VERSION",
    "MONOTONE_TYPES",
    "PER_CHANNEL",
    "SIZE_ATTRIBUTES",
    "WEIGHTED_KINDS",
    "ModelCatalog",
    "ModuleInfo",
    "WeightScheme",
    "WeightedKind",
    "describe_quantized_tensor",
    "first_difference",
    "forward_overridden",
    "identity_fingerprint",
    "is_fused",
    "is_monotone",
    "is_quant_helper",
    "is_versioned",
    "kind_named",
    "legacy_fingerprint",
    "model_fingerprint",
    "model_identity",
    "norm_axis",
    "quantized_weights",
    "register_weighted_kind",
    "weighted_kind",
]


@dataclass
class ModelCatalog:
    """The model's module tree and static facts, built once per model."""

    class_name: str
    modules: dict[str, ModuleInfo]
    weight_schemes: dict[str, WeightScheme] = field(default_factory=dict)
    has_qconfig: bool = False
    #: A versioned hash of the model's identity (:func:`model_identity`: every module's name and
    #: type, every parameter's and buffer's name, shape and dtype): two models with the same
    #: fingerprint take the same stats files and plans. ``"2:"`` + 16 hex digits; older files
    #: hold a version 1 fingerprint (16 hex digits, class and parameters only).
    fingerprint: str = ""
    #: The registered kind of every weighted layer (see :data:`WEIGHTED_KINDS`).
    kinds: dict[str, WeightedKind] = field(default_factory=dict)
    #: Modules with 2-D or larger weights that no registered kind describes, and why they are skipped.
    unknown_weighted: dict[str, str] = field(default_factory=dict)
    #: How each module's channel axis is decided: (rule, norm features, why); see :func:`axis_rule`.
    axis_rules: dict[str, tuple[str, int | None, str]] = field(default_factory=dict)
    #: Norms whose class overrides LayerNorm's forward (LayerNorm2d-style).
    own_forward: frozenset[str] = frozenset()
    #: The feature or channel counts a module declares (in/out features, channels, embedding size).
    feature_sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: How a quantizer annotated each weighted module's input ("dynamic" or "static"); PT2E graphs only.
    activation_schemes: dict[str, str] = field(default_factory=dict)
    #: What the fingerprint hashes (:func:`model_identity`), to name the first difference between two
    #: models; empty in a file written before fingerprint version 2.
    identity: tuple[tuple[str, ...], ...] = ()
    #: The version 1 fingerprint of the same model, to check a file written before version 2.
    legacy_fingerprint: str = ""

    def check_same_model(self, other: ModelCatalog, what: str, against: str) -> None:
        """Raise :class:`~.errors.UserError` (one line) unless ``other`` (e.g. a stats file's catalog,
        ``what`` names it) was taken on the same model as this one (``against`` names it), naming
        the first difference. A version 1 fingerprint is checked the old way (class and parameters)."""
        if not is_versioned(other.fingerprint):
            if other.fingerprint in (self.legacy_fingerprint, self.fingerprint):
                return
            raise UserError(
                f"{what} was made for a different model ({other.class_name}, fingerprint {other.fingerprint}, "
                f"an older version 1 fingerprint) than {against} ({self.class_name})"
            )
        if other.fingerprint == self.fingerprint:
            return
        difference = first_difference(other.identity, self.identity) if other.identity else "its fingerprint"
        raise UserError(
            f"{what} was made for a different model than {against}: {difference} "
            f"(fingerprint {other.fingerprint} vs {self.fingerprint})"
        )

    @classmethod
    def build(cls, model: nn.Module) -> ModelCatalog:
        if is_exported_graph(model):  # torch.export / PT2E: the tree comes from the nodes' module stacks
            return cls(**GraphView(model).catalog_fields())  # type: ignore[arg-type]
        named = list(model.named_modules(remove_duplicate=False))
        by_name = dict(named)
        seen: set[int] = set()
        infos: dict[str, ModuleInfo] = {}
        kinds: dict[str, WeightedKind] = {}
        unknown: dict[str, str] = {}
        rules: dict[str, tuple[str, int | None, str]] = {}
        own_forward: set[str] = set()
        sizes: dict[str, tuple[int, ...]] = {}
        for fqn, module in named:
            if fqn in infos or id(module) in seen and fqn:
                # A module shared under two names is shown once, at its first name.
                continue
            seen.add(id(module))
            parent = fqn.rpartition(".")[0] if fqn else None
            helper = is_quant_helper(module)
            kind = None if helper else weighted_kind(module)
            if kind is not None:
                kinds[fqn] = kind
            elif not helper and unknown_weights(module):
                names = ", ".join(unknown_weights(module))
                unknown[fqn] = (
                    f"{type(module).__name__} holds weights ({names}) of no registered kind: "
                    "add it to WEIGHTED_KINDS (engine/module_kinds.py) to have it judged"
                )
            rules[fqn] = axis_rule(module, kind)
            declared = tuple(
                value
                for attr in SIZE_ATTRIBUTES
                if isinstance(value := getattr(module, attr, None), int) and not isinstance(value, bool)
            )
            if declared:
                sizes[fqn] = declared
            if forward_overridden(module):
                own_forward.add(fqn)
            parent_module = by_name.get(parent) if parent is not None else None
            infos[fqn] = _module_info(fqn, module, parent_module, helper, kind, rules[fqn][0])
        # Children that were skipped as duplicates must not dangle in the tree.
        for fqn, info in list(infos.items()):
            kept = tuple(c for c in info.children if c in infos)
            if kept != info.children:
                infos[fqn] = replace(info, children=kept)
        has_qconfig = any(getattr(m, "qconfig", None) is not None for _, m in named)
        schemes = {
            fqn: qconfig_weight_scheme(by_name[fqn], has_qconfig) for fqn, info in infos.items() if info.is_weighted
        }
        return cls(
            type(model).__name__,
            infos,
            schemes,
            has_qconfig,
            model_fingerprint(model),
            kinds,
            unknown,
            rules,
            frozenset(own_forward),
            sizes,
            identity=model_identity(model),
            legacy_fingerprint=legacy_fingerprint(model),
        )

    def user_modules(self) -> list[ModuleInfo]:
        """Every module except observers and fake quantizers, in tree order."""
        return [m for m in self.modules.values() if not m.is_quant_helper]

    def weighted(self, capability: str) -> list[str]:
        """Weighted layers a detector with ``capability`` (:data:`CAPABILITIES`) judges, in tree order."""
        return [fqn for fqn, kind in self.kinds.items() if capability in kind.capabilities]

    def skipped(self, capability: str) -> dict[str, str]:
        """Weighted layers a detector with ``capability`` does not judge, each with the reason."""
        skipped = {
            fqn: f"{self.modules[fqn].class_name}: {kind.skips.get(capability, 'not supported')}"
            for fqn, kind in self.kinds.items()
            if capability not in kind.capabilities
        }
        skipped.update(self.unknown_weighted)
        return skipped

    def dynamic_kernel(self, fqn: str, backend: str | None = None) -> bool:
        """Whether a dynamic quantized kernel exists for the layer (on ``backend``, or on any)."""
        kind = self.kinds.get(fqn)
        if kind is None:
            return False
        return backend in kind.dynamic_backends if backend is not None else bool(kind.dynamic_backends)

    def channel_axis(self, fqn: str, ndim: int, override: int | None = None) -> int:
        """The feature axis of an ``ndim``-D tensor seen at module ``fqn`` by its own rule alone.

        Calibration decides per point with more knowledge (a norm's shape, the
        tensor's producer and consumer); see :mod:`~tui_quantreport.engine.layout`.
        An override out of range raises :class:`~.errors.ParamError`, never clamped.
        """
        if ndim <= 1:
            return 0
        if override is not None:
            axis = override if override >= 0 else ndim + override
            if not 0 <= axis < ndim:
                raise ParamError(f"channel axis {override} is out of range for a {ndim}-D tensor")
            return axis
        return ndim - 1 if self.modules[fqn].last_axis else 1


def _module_info(
    fqn: str, module: nn.Module, parent_module: nn.Module | None, helper: bool, kind: WeightedKind | None, axis: str
) -> ModuleInfo:
    """The plain facts of one module of the tree (``helper``: an observer or stub; ``axis``: its
    channel-axis rule's kind)."""
    parent = fqn.rpartition(".")[0] if fqn else None
    user_children = [c for _, c in module.named_children() if not is_quant_helper(c)]
    observed_on = parent if is_fused(parent_module) else None
    hidden_input = ""
    if isinstance(parent_module, nn.MultiheadAttention) and module is parent_module.out_proj:
        # MultiheadAttention hands out_proj's weight to F.multi_head_attention_forward and
        # never calls the module: its output is the attention's output, its input unseen.
        observed_on = parent
        hidden_input = (
            f"its input (the attention context) is computed inside "
            f"F.multi_head_attention_forward, which MultiheadAttention '{parent}' calls with "
            "this layer's weight without calling the module, so no hook can see it"
        )
    return ModuleInfo(
        fqn=fqn,
        name=fqn.rpartition(".")[2],
        class_name=type(module).__name__,
        parent=parent,
        depth=0 if not fqn else fqn.count(".") + 1,
        children=tuple(f"{fqn}.{n}" if fqn else n for n, _ in module.named_children()),
        is_quant_helper=helper,
        is_leaf=not helper and not user_children,
        is_weighted=kind is not None,
        is_linear=isinstance(module, nn.Linear),
        total_params=sum(p.numel() for p in module.parameters() if not is_lazy(p)),
        last_axis=axis == AXIS_LAST,
        monotone=is_monotone(module),
        fused_parent=observed_on,
        weight_kind=kind.name if kind is not None else "",
        hidden_input=hidden_input,
        quantized=quantized_weights(module),
    )
