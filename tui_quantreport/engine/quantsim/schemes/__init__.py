"""The scheme registry: one file per scheme, in the order reports show them.

Adding a scheme is one file here (a :class:`Scheme` subclass) and one line in
:data:`SCHEMES`.
"""

from __future__ import annotations

from tui_quantreport.engine.quantsim.schemes.base import (
    InputContext,
    Scheme,
    StaticInput,
)
from tui_quantreport.engine.quantsim.schemes.dynamic import Dynamic
from tui_quantreport.engine.quantsim.schemes.static_per_channel import StaticPerChannel
from tui_quantreport.engine.quantsim.schemes.static_per_tensor import StaticPerTensor
from tui_quantreport.engine.quantsim.schemes.weight_only import WeightOnly

#: Modules kept in float in a plan.
FLOAT = "float"

SCHEMES: dict[str, Scheme] = {s.name: s for s in (StaticPerTensor(), StaticPerChannel(), Dynamic(), WeightOnly())}

__all__ = ["FLOAT", "SCHEMES", "InputContext", "Scheme", "StaticInput"]
