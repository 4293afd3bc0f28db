"""The scheme registry: one file per scheme (or per family of variants), in the order reports show them.

Adding a scheme is one file here (a :class:`Scheme` subclass: its arithmetic) and one line in
:data:`SCHEMES`, plus its :class:`SchemeFacts` in the torch-free registry
(``engine/core/scheme_facts.py``), which everything outside this folder reads.
"""

from __future__ import annotations

from tui_quantreport.engine.core.scheme_facts import (
    FLOAT,
    PREFERENCE,
    SCHEME_FACTS,
    SchemeFacts,
    WeightFacts,
    select_schemes,
)
from tui_quantreport.engine.quantsim.schemes.base import (
    BatchInput,
    ExportContext,
    InputContext,
    Scheme,
    StaticInput,
)
from tui_quantreport.engine.quantsim.schemes.dynamic import Dynamic
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

__all__ = [
    "FLOAT",
    "PREFERENCE",
    "SCHEMES",
    "SCHEME_FACTS",
    "BatchInput",
    "ExportContext",
    "InputContext",
    "Scheme",
    "SchemeFacts",
    "StaticInput",
    "WeightFacts",
    "select_schemes",
]
