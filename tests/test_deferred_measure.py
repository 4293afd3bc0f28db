"""The local pass's small Linear modules measured many calls at a time (:mod:`.quantsim.deferred`) give
the same doubles as measuring each call as it comes (the path it replaces), whatever the calls do:
tokens (per-token dynamic inputs), no bias, an output changed in place after the call, a module called
on two shapes, a NaN in a dynamic input, a batched kernel that would not give the same bits, and a
module whose measurement fails."""

from __future__ import annotations

import pytest
import torch
from measure_helpers import failing_for, sample_measurer
from torch import nn

from tui_quantreport.engine import ModelCatalog
from tui_quantreport.engine.quantsim import ErrorAnalysis, deferred, qparams, sqnr
from tui_quantreport.engine.quantsim import measurer as measurer_module
from tui_quantreport.engine.quantsim.qparams import FAST_FAKE_QUANT_MIN, fake_quantize_float32, inverse_scale


class _Small(nn.Module):
    """Small Linear modules of several shapes: a stack of alike ones, one without a bias, one whose
    output ReLU changes in place, one called twice on different shapes, and a residual sum."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(16, 16) for _ in range(4))
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 16, bias=False)
        self.gate = nn.Linear(16, 16)
        self.twice = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        for block in self.blocks:
            x = x + torch.tanh(block(x))
        h = self.act(self.up(x))  # changes up's output after its call
        h = x + self.down(h) * torch.sigmoid(self.gate(x))
        h = self.twice(h) + self.twice(h[..., :1, :]).mean()  # two shapes, one module
        return self.head(h)


#: The schemes whose inputs have a form for many modules at once (the others are measured call by call).
INT8 = ("static_per_tensor", "static_per_channel", "dynamic", "weight_only")


def _measure(
    model: nn.Module,
    probes: list[torch.Tensor],
    advice: bool,
    per_token_min_ndim: int | None = 3,
    schemes: tuple[str, ...] | None = INT8,
) -> dict:
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), probes, schemes=schemes)
    analysis.per_token_min_ndim = per_token_min_ndim  # None: per tensor on every rank (torch.ao's targets)
    return analysis.local_measurements(advice=advice)


def _counted(monkeypatch) -> list[int]:
    """The number of calls measured together, per group measured (the deferred path taken)."""
    groups: list[int] = []
    real = deferred.measure_together

    def counting(parts, xs, ys, stacks=None):
        groups.append(len(parts))
        return real(parts, xs, ys, stacks)

    monkeypatch.setattr(deferred, "measure_together", counting)
    return groups


def _both(monkeypatch, measure) -> tuple[dict, dict, list[int]]:
    groups = _counted(monkeypatch)
    together = measure()
    monkeypatch.setattr(deferred, "ENABLED", False)
    one_by_one = measure()
    monkeypatch.setattr(deferred, "ENABLED", True)
    return together, one_by_one, groups


@pytest.mark.parametrize("fused_kernels", [True, False])
@pytest.mark.parametrize("advice", [False, True])
@pytest.mark.parametrize("shape", [(6, 16), (3, 4, 16)])
def test_calls_measured_together_give_the_doubles_of_one_at_a_time(monkeypatch, shape, advice, fused_kernels):
    if not fused_kernels:
        monkeypatch.setattr(qparams, "_FUSED", False)
        monkeypatch.setattr(sqnr, "_FUSED", False)
    torch.manual_seed(3)
    model = _Small().eval()
    probes = [torch.randn(*shape) * (1 + i) for i in range(3)]
    together, one_by_one, groups = _both(monkeypatch, lambda: _measure(model, probes, advice))
    assert groups and max(groups) >= 4  # calls of several modules were measured together
    assert together == one_by_one
    assert all(m.sqnr["dynamic"].db is not None for m in together.values())


#: The int8 four and every weight-only scheme (their input is used as it is: a form for all).
WEIGHT_ONLY = (*INT8, "int8_weight_only_per_group", "int4_asym_g32", "int4_hqq_g128", "int4_sym_g32", "fp8_weight_only",
               "mxfp4_weight_only", "nvfp4_weight_only", "nf4")  # fmt: skip


@pytest.mark.parametrize("shape", [(6, 32), (3, 4, 32)])
def test_weight_only_schemes_wait_too_and_give_the_same_doubles(monkeypatch, shape):
    torch.manual_seed(9)
    model = nn.Sequential(
        *(nn.Linear(32, 32) for _ in range(4)), nn.ReLU(), nn.Linear(32, 64), nn.Linear(64, 32)
    ).eval()
    probes = [torch.randn(*shape) * (1 + i) for i in range(2)]
    together, one_by_one, groups = _both(monkeypatch, lambda: _measure(model, probes, True, schemes=WEIGHT_ONLY))
    assert groups and max(groups) >= 4
    assert together == one_by_one
    assert all(
        m.sqnr["int4_asym_g32"].db is not None and m.sqnr["fp8_weight_only"].db is not None for m in together.values()
    )


def test_a_module_with_a_scheme_without_an_input_form_is_measured_as_each_call_comes(monkeypatch):
    torch.manual_seed(10)
    model = nn.Sequential(*(nn.Linear(32, 32) for _ in range(4))).eval()  # 32 inputs: MX blocks fit
    probes = [torch.randn(6, 32) for _ in range(2)]
    together, one_by_one, groups = _both(monkeypatch, lambda: _measure(model, probes, False, schemes=(*INT8, "mxfp8")))
    assert groups == []  # mxfp8 quantizes its input with torchao's recipe: no form, no call kept
    assert together == one_by_one


@pytest.mark.parametrize("advice,schemes", [(False, INT8), (True, INT8), (False, WEIGHT_ONLY)])
def test_the_large_generated_sample_gives_the_same_doubles(monkeypatch, advice, schemes):
    measure = sample_measurer("large_generated", advice=advice, schemes=schemes)
    together, one_by_one, groups = _both(monkeypatch, measure)
    assert sum(groups) >= 2 * 600  # its 602 Linear modules, 2 probes: (nearly) every call measured together
    assert together == one_by_one


def test_torch_ao_dynamic_inputs_per_tensor_on_tokens(monkeypatch):
    """A target whose dynamic inputs are quantized per tensor even on 3-D inputs (torch.ao's): each
    call's own range, measured together."""
    torch.manual_seed(4)
    model = _Small().eval()
    probes = [torch.randn(3, 4, 16) for _ in range(2)]
    together, one_by_one, groups = _both(monkeypatch, lambda: _measure(model, probes, False, per_token_min_ndim=None))
    assert groups
    assert together == one_by_one


def test_a_nan_in_a_dynamic_input_takes_the_calls_one_at_a_time(monkeypatch):
    torch.manual_seed(5)
    model = _Small().eval()
    probes = [torch.randn(6, 16) for _ in range(2)]
    probes[1][2, 3] = float("nan")
    together, one_by_one, groups = _both(monkeypatch, lambda: _measure(model, probes, False))
    assert groups
    assert together.keys() == one_by_one.keys()
    for fqn in together:  # NaN SQNRs (undefined) compare by their reasons
        assert together[fqn].sqnr == one_by_one[fqn].sqnr


def test_a_batched_kernel_that_differs_is_replaced_by_one_matmul_per_call(monkeypatch):
    torch.manual_seed(6)
    model = _Small().eval()
    probes = [torch.randn(6, 16) for _ in range(2)]
    monkeypatch.setattr(deferred, "ENABLED", False)
    one_by_one = _measure(model, probes, True)
    monkeypatch.setattr(deferred, "ENABLED", True)
    monkeypatch.setattr(deferred, "_BATCHED_EXACT", {})
    real = deferred._batched

    def off_by_a_bit(rows, weight, bias):
        return real(rows, weight, bias).nextafter_(torch.tensor(float("inf")))

    monkeypatch.setattr(deferred, "_batched", off_by_a_bit)
    together = _measure(model, probes, True)
    assert deferred._BATCHED_EXACT and not any(deferred._BATCHED_EXACT.values())  # checked, found to differ
    assert together == one_by_one


def test_a_module_whose_measurement_fails_is_that_modules_reason_alone(monkeypatch):
    torch.manual_seed(7)
    model = _Small().eval()
    probes = [torch.randn(6, 16) for _ in range(2)]
    good = _measure(model, probes, False)
    monkeypatch.setattr(measurer_module, "_measure_now", failing_for(measurer_module._measure_now, "gate", "boom"))
    monkeypatch.setattr(deferred, "measure_together", lambda *args: None)  # every group call by call
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), probes, schemes=INT8)
    measured = analysis.local_measurements(advice=False)
    assert {fqn for fqn, why in analysis.measure_failures.items() if "boom" in why} == {"gate"}
    assert measured["gate"].sqnr["dynamic"].db is None
    assert "boom" in measured["gate"].sqnr["dynamic"].reason
    for fqn in ("up", "down", "twice", "head"):
        assert measured[fqn] == good[fqn]


@pytest.mark.parametrize("per_segment", [7, FAST_FAKE_QUANT_MIN + 5])
def test_static_segments_equal_each_segment_quantized_alone(per_segment):
    torch.manual_seed(8)
    x = torch.randn(5, per_segment) * torch.tensor([0.01, 1.0, 3.0, 100.0, 1e-3]).unsqueeze(1)
    x[0, :3] = torch.tensor([-0.0, -1e-9, 1e-9])  # rounds to -0.0: the kernel's +0.0 below its size
    scales = [inverse_scale(1 / s) for s in (4e-5, 0.01, 0.02, 0.9, 1e-5)]
    scales = [float(torch.tensor(s, dtype=torch.float32)) for s in scales]
    zps = [128, 0, 255, 100, 3]
    invs = [inverse_scale(s) for s in scales]
    together = qparams.fake_quantize_static_segments(x, scales, zps, invs, 0, 255)
    alone = torch.stack([fake_quantize_float32(x[i], scales[i], zps[i], 0, 255, invs[i]) for i in range(5)])
    assert together is not None
    assert torch.equal(together.view(torch.int32), alone.view(torch.int32))


def test_static_segments_refuse_what_they_cannot_do():
    x = torch.randn(2, 8)
    assert qparams.fake_quantize_static_segments(x, [0.1, float("nan")], [0, 0], [10.0, 10.0], 0, 255) is None
    assert qparams.fake_quantize_static_segments(x.double(), [0.1, 0.1], [0, 0], [10.0, 10.0], 0, 255) is None
    assert qparams.fake_quantize_static_segments(x.t(), [0.1] * 8, [0] * 8, [10.0] * 8, 0, 255) is None
