"""A plan's size read from the model once, then only added up per plan, equals the size read from
the model on every call (the header asks for it on every redraw): the same doubles, tied weights,
biases, norms, float modules and schemes a module cannot take included."""

from __future__ import annotations

import torch
from torch import nn

from tui_quantreport.engine import ModelCatalog
from tui_quantreport.engine.plan import FLOAT
from tui_quantreport.engine.quantsim import SCHEMES, ErrorAnalysis
from tui_quantreport.engine.quantsim.analysis_base import PlanSize


def _size_read_each_time(analysis: ErrorAnalysis, plan) -> PlanSize:
    """The size as it was computed before: every weight and parameter read from the model per call."""
    quantized = plan.quantized
    bits = float_bits = 0.0
    weight_bits = weight_numel = 0.0
    planned: dict[int, float] = {}
    for fqn, target in analysis.targets.items():
        w = target.module.weight
        native = w.numel() * w.element_size() * 8.0
        name = quantized.get(fqn)
        if name is not None and SCHEMES[name].eligible(target.kind, tuple(w.shape), w.dtype) is None:
            planned[id(w)] = SCHEMES[name].bits_per_weight(tuple(w.shape), target.kind) * w.numel()
        weight_bits += planned.get(id(w), native)
        weight_numel += w.numel()
    seen: set[int] = set()
    for p in analysis.model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        native = p.numel() * p.element_size() * 8.0
        float_bits += native
        bits += planned.get(id(p), native)
    return PlanSize(bits / 8e6, float_bits / 8e6, weight_bits / weight_numel if weight_numel else None)


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(64, 128)
        self.norm = nn.LayerNorm(128)
        self.mid = nn.Linear(128, 128)
        self.again = nn.Linear(128, 128)
        self.again.weight = self.mid.weight  # tied: one weight, counted once
        self.odd = nn.Linear(128, 30)  # dims no group divides: schemes that cannot take it
        self.conv = nn.Conv1d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.again(self.mid(self.norm(self.inp(x))))
        return self.conv(self.odd(h).unsqueeze(1)).flatten(1)


def test_plan_size_equals_the_size_read_from_the_model_each_time() -> None:
    model = _Tied().eval()
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), [torch.randn(4, 64)])
    fqns = list(analysis.targets)
    assert {"inp", "mid", "odd", "conv"} <= set(fqns)
    plans = [analysis.plan(dict.fromkeys(fqns, FLOAT))]
    plans += [analysis.plan(dict.fromkeys(fqns, name)) for name in analysis.schemes]
    schemes = list(analysis.schemes)
    plans.append(analysis.plan({fqn: schemes[i % len(schemes)] for i, fqn in enumerate(fqns)}))
    plans.append(analysis.plan({**dict.fromkeys(fqns, schemes[0]), "mid": FLOAT}))
    for plan in plans + plans:  # the second round from what was read once
        assert analysis.plan_size(plan) == _size_read_each_time(analysis, plan)
    sizes = {analysis.plan_size(plan).mb for plan in plans}
    assert len(sizes) > 2  # the plans do differ in size
