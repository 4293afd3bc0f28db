"""The scheme registry: one file per scheme (or per family of variants), in the order reports show them.

Adding a scheme is one file here (a :class:`Scheme` subclass with its :class:`SchemeFacts`)
and one line in :data:`SCHEMES`. Everything outside this folder reads the facts.
"""

from __future__ import annotations

from tui_quantreport.engine.plan import FLOAT, register_schemes
from tui_quantreport.engine.quantsim.schemes.base import (
    ExportContext,
    InputContext,
    Scheme,
    StaticInput,
)
from tui_quantreport.engine.quantsim.schemes.dynamic import Dynamic
from tui_quantreport.engine.quantsim.schemes.facts import SchemeFacts, WeightFacts
from tui_quantreport.engine.quantsim.schemes.float8 import Float8
from tui_quantreport.engine.quantsim.schemes.int4_asymmetric import Int4Asymmetric
from tui_quantreport.engine.quantsim.schemes.int4_symmetric import Int4Symmetric
from tui_quantreport.engine.quantsim.schemes.int8_dynamic_int4 import Int8DynamicInt4
from tui_quantreport.engine.quantsim.schemes.int8_weight_only_per_group import Int8WeightOnlyPerGroup
from tui_quantreport.engine.quantsim.schemes.mx import MX
from tui_quantreport.engine.quantsim.schemes.nf4 import NF4
from tui_quantreport.engine.quantsim.schemes.nvfp4 import NVFP4
from tui_quantreport.engine.quantsim.schemes.static_per_channel import StaticPerChannel
from tui_quantreport.engine.quantsim.schemes.static_per_tensor import StaticPerTensor
from tui_quantreport.engine.quantsim.schemes.weight_only import WeightOnly

SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        StaticPerTensor(),
        StaticPerChannel(),
        Dynamic(),
        WeightOnly(),
        Int8WeightOnlyPerGroup(),
        Int4Asymmetric(32),
        Int4Asymmetric(64),
        Int4Asymmetric(128),
        Int4Asymmetric(128, hqq=True),
        Int4Symmetric(32),
        Int4Symmetric(128),
        Int4Symmetric(None),
        Int8DynamicInt4(),
        Float8("none", per_row=True),
        Float8("dynamic", per_row=True),
        Float8("dynamic", per_row=False),
        Float8("static", per_row=False),
        MX(8),
        MX(4),
        MX(4, weight_only=True),
        NVFP4(weight_only=True),
        NVFP4(weight_only=False),
        NF4(),
    )
}
register_schemes({name: scheme.needs_range for name, scheme in SCHEMES.items()})  # the plan reads names here

#: The schemes the recommended plan chooses among, in its order of preference.
PREFERENCE: tuple[str, ...] = tuple(
    name
    for name, _ in sorted(
        ((n, s.facts.preference) for n, s in SCHEMES.items() if s.facts.preference is not None),
        key=lambda item: item[1] or 0,
    )
)


def select_schemes(spec: str | None) -> tuple[str, ...]:
    """Scheme names from a ``--schemes`` value: a comma list of names or families, ``all``, or
    ``int8`` (any family name: ``int4``, ``fp8``, ``mx``, ``nvfp4``, ``nf4``). Raises ValueError
    naming the unknown entry."""
    if spec is None or spec.strip() in ("", "all"):
        return tuple(SCHEMES)
    chosen: list[str] = []
    families = {s.facts.family for s in SCHEMES.values()}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part == "all":
            names = list(SCHEMES)
        elif part in SCHEMES:
            names = [part]
        elif part in families:
            names = [n for n, s in SCHEMES.items() if s.facts.family == part]
        else:
            raise ValueError(
                f"unknown scheme {part!r}; choose names from {', '.join(SCHEMES)} or a family "
                f"({', '.join(sorted(families))}) or all"
            )
        chosen += [n for n in names if n not in chosen]
    return tuple(n for n in SCHEMES if n in chosen)


__all__ = [
    "FLOAT",
    "PREFERENCE",
    "SCHEMES",
    "ExportContext",
    "InputContext",
    "Scheme",
    "SchemeFacts",
    "StaticInput",
    "WeightFacts",
    "select_schemes",
]
