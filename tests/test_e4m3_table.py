"""The e4m3fn decode by table (issue 25: torch's CPU conversion from float8_e4m3fn is scalar, ~5x
the table's time at 65K elements; fp8 and MX-fp8 schemes decode every activation and weight they
simulate): the same bits as torch's own conversion, and the recipes built on it the same bits as
the recipes with torch's conversion."""

from __future__ import annotations

import pytest
import torch

from tui_quantreport.engine.quantsim import activation_recipes as recipes

ALL_CODES = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


@pytest.fixture
def table_always(monkeypatch) -> None:
    monkeypatch.setattr(recipes, "E4M3_TABLE_MIN", 0)  # the table on every size, not from 8,192 on


@pytest.mark.parametrize("repeat", [1, 9, 300])  # torch's small and vectorised conversion lengths
def test_every_code_decodes_to_torchs_bits(repeat, table_always) -> None:
    codes = ALL_CODES.repeat(repeat)  # NaN codes (0x7f, 0xff), both zeros, subnormals, +-448
    assert torch.equal(bits(recipes.e4m3_to_float32(codes)), bits(codes.to(torch.float32)))


def test_shapes_and_strides_decode_in_shape(table_always) -> None:
    codes = ALL_CODES.repeat(48).view(3, 64, 64)
    for view in (codes, codes.transpose(1, 2), codes[:, ::2], codes[0, 0, 0]):
        out = recipes.e4m3_to_float32(view)
        assert out.shape == view.shape
        assert torch.equal(bits(out), bits(view.to(torch.float32)))


def test_empty_decodes(table_always) -> None:
    empty = ALL_CODES[:0]
    assert recipes.e4m3_to_float32(empty).shape == (0,)


def _torch_decoding(monkeypatch) -> None:
    monkeypatch.setattr(recipes, "e4m3_to_float32", lambda codes: codes.to(torch.float32))


@pytest.mark.parametrize("per_row", [False, True])
def test_float8_recipe_same_bits_as_with_torchs_conversion(monkeypatch, per_row) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4096, generator=g) * torch.logspace(-3, 3, 4096)
    x[0, :5] = torch.tensor([0.0, -0.0, float("nan"), 1e-12, -1e-12])
    x[1, :2] = torch.tensor([float("inf"), float("-inf")])
    ours = recipes.float8_dequantized(x, per_row)
    _torch_decoding(monkeypatch)
    assert torch.equal(bits(ours), bits(recipes.float8_dequantized(x, per_row)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mx8_recipe_same_bits_as_with_torchs_conversion(monkeypatch, dtype) -> None:
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(64, 256, generator=g) * torch.logspace(-4, 4, 256)).to(dtype)
    x[3, 7] = float("nan")
    ours = recipes.mx_dequantized(x, 8)
    _torch_decoding(monkeypatch)
    reference = recipes.mx_dequantized(x, 8)
    assert torch.equal(
        ours.view(torch.int16 if dtype is torch.bfloat16 else torch.int32),
        reference.view(torch.int16 if dtype is torch.bfloat16 else torch.int32),
    )
