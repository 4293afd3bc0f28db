"""Measurements that overlap (the app's workers: the plan on screen, the module limiting it,
sensitivity, a verification) take turns on the model: each measures its own plan, and no
simulated forward is left behind.

Before the model's lock, two plans evaluated at once each ran with the other's quantized modules
swapped in (an edited plan restored at launch came out 0.2 to 5 dB off), and a forward could stay
swapped for good. The test makes the overlap certain: the first measurement stops inside its pass
until the second one has had its chance to run."""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import nn

from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.quantsim import ErrorAnalysis


class Gate(nn.Module):
    """Passes its input on; the first call from thread ``holder`` that ``when()`` allows stops
    here until ``release`` is set (so a measurement is certainly in the middle of its pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.holder: int | None = None
        self.when: Callable[[], bool] = lambda: True
        self.inside = threading.Event()
        self.release = threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if threading.get_ident() == self.holder and not self.inside.is_set() and self.when():
            self.inside.set()
            self.release.wait(timeout=30)
        return x


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(32, 32)
        self.gate = Gate()
        self.second = nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.gate(self.first(x))))


def test_two_plans_measured_at_once_each_get_their_own_sqnr() -> None:
    torch.manual_seed(0)
    model = TwoLayers().eval()
    probes = [torch.randn(16, 32) for _ in range(3)]
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), probes)
    first_only = analysis.plan({"first": "weight_only", "second": "float"})
    second_only = analysis.plan({"first": "float", "second": "weight_only"})
    alone = {
        "first": ErrorAnalysis(model, ModelCatalog.build(model), probes).plan_sqnr(first_only).db,
        "second": ErrorAnalysis(model, ModelCatalog.build(model), probes).plan_sqnr(second_only).db,
    }
    assert alone["first"] != alone["second"]

    results: dict[str, float | None] = {}
    gate = model.gate

    def measure_first() -> None:
        gate.holder = threading.get_ident()
        results["first"] = analysis.plan_sqnr(first_only).db

    def measure_second() -> None:
        results["second"] = analysis.plan_sqnr(second_only).db

    gate.when = lambda: "forward" in model.first.__dict__  # held inside the first plan's simulated pass
    holder = threading.Thread(target=measure_first)
    holder.start()
    assert gate.inside.wait(timeout=30), "the first measurement never reached the gate"
    other = threading.Thread(target=measure_second)
    other.start()
    other.join(timeout=1.0)  # without the lock it runs now, with the first plan's module swapped in
    gate.release.set()
    holder.join(timeout=60)
    other.join(timeout=60)

    assert results == alone
    assert all("forward" not in module.__dict__ for module in model.modules())  # nothing left swapped
