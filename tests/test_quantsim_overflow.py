"""Finite data of any magnitude gives a finite, correct SQNR, with no warnings;
genuinely non-finite data keeps its "SQNR undefined: ..." reason."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from tui_quantreport.engine import ModelCatalog
from tui_quantreport.engine.quantsim import ErrorAnalysis, sqnr_db
from tui_quantreport.engine.quantsim.qparams import affine_qparams, scalar_affine_qparams
from tui_quantreport.engine.quantsim.sqnr import SharedReference


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            yield


@pytest.mark.parametrize(
    "dtype,magnitude", [(torch.float64, 1e300), (torch.float64, 1e-300), (torch.float32, 3e38), (torch.float32, 1e-30)]
)
def test_sqnr_of_extreme_finite_data_is_the_scaled_one(no_warnings, dtype, magnitude):
    torch.manual_seed(0)
    y = torch.randn(1000, dtype=torch.float64).clamp(-1, 1)
    yhat = y + 1e-2 * torch.randn_like(y)
    expected = sqnr_db(y, yhat).db
    big = sqnr_db((y * magnitude).to(dtype), (yhat * magnitude).to(dtype))
    assert big.db is not None and math.isfinite(big.db)
    assert big.db == pytest.approx(expected, abs=1e-3 if dtype == torch.float32 else 1e-9)


def test_shared_reference_of_extreme_finite_data(no_warnings):
    torch.manual_seed(1)
    for dtype, magnitude in ((torch.float64, 1e300), (torch.float32, 3e38)):
        acc = SharedReference(["a"])
        small = SharedReference(["a"])
        for _ in range(3):
            y = torch.randn(256, dtype=torch.float64).clamp(-1, 1)
            yhat = y + 1e-3 * torch.randn_like(y)
            acc.add("a", acc.add_reference((y * magnitude).to(dtype)), (yhat * magnitude).to(dtype))
            small.add("a", small.add_reference(y), yhat)
        assert acc.result("a").db == pytest.approx(small.result("a").db, abs=1e-3)


def test_non_finite_data_keeps_its_reason(no_warnings):
    y = torch.ones(4, dtype=torch.float64)
    assert sqnr_db(torch.tensor([1.0, math.inf]), torch.ones(2)).reason == (
        "SQNR undefined: the float output holds NaN or infinite values"
    )
    assert sqnr_db(y, torch.tensor([1.0, math.nan, 1.0, 1.0])).reason == (
        "SQNR undefined: the quantized output holds NaN or infinite values"
    )
    acc = SharedReference(["a"])
    acc.add("a", acc.add_reference(torch.tensor([math.nan, 1.0])), torch.ones(2))
    assert "float output holds NaN" in acc.result("a").reason
    acc = SharedReference(["a"])
    acc.add("a", acc.add_reference(torch.ones(2)), torch.tensor([math.inf, 1.0]))
    assert "quantized output holds NaN" in acc.result("a").reason


def test_qparams_of_a_range_wider_than_float32_are_finite(no_warnings):
    scale, zp = scalar_affine_qparams(-3e38, 3e38, 0, 127)
    assert math.isfinite(scale) and scale == pytest.approx(6e38 / 127, rel=1e-6) and 0 <= zp <= 127
    t_scale, t_zp = affine_qparams(torch.tensor([-3e38, -1.0]), torch.tensor([3e38, 1.0]), 0, 127)
    assert float(t_scale[0]) == scale and int(t_zp[0]) == zp
    # A normal range still equals the float32 formula bit for bit.
    assert float(t_scale[1]) == float(np.float32(2.0) / np.float32(127))


def _scaled_linear(dtype):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 8)).to(dtype).eval()
    with torch.no_grad():
        model[0].weight.mul_(1e-3)
        model[0].bias.zero_()
    return model


def test_float32_activations_near_the_largest_value(no_warnings):
    model = _scaled_linear(torch.float32)
    probes = [torch.randn(4, 8) * 1e38 for _ in range(2)]
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), probes)
    local = analysis.local_sqnr(advice=True)["0"]
    for scheme, value in local.items():
        # every scheme a Linear(8, 4) can take is measured; the others say why not
        assert (value.db is not None and 20 < value.db < 80) or "multiple" in value.reason, (scheme, value)
    assert all(local[s].db is not None for s in ("static_per_tensor", "static_per_channel", "dynamic", "weight_only"))
    plan = analysis.plan_sqnr(analysis.recommended_plan())
    assert plan.db is not None and math.isfinite(plan.db)


def test_float64_activations_near_1e300(no_warnings):
    model = _scaled_linear(torch.float64)
    probes = [torch.randn(4, 8, dtype=torch.float64) * 1e300 for _ in range(2)]
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), probes)
    local = analysis.local_sqnr(advice=True)["0"]
    # Weights only: float64 activations stay float64, the SQNR is finite.
    assert local["weight_only"].db is not None and 30 < local["weight_only"].db < 80
    # int8 activations need float32 qparams: a stated reason, not "NaN or infinite values".
    for scheme in ("static_per_tensor", "static_per_channel", "dynamic"):
        assert "beyond float32's range" in local[scheme].reason, scheme
    for value in local.values():
        json.dumps({"db": value.db}, allow_nan=False)
