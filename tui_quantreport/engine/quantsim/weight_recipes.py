"""Exact, faster forms of two torchao weight recipes the local pass runs once per model.

Both give the bits torchao's own path gives (``tests/test_weight_recipes.py`` holds them equal
with ``torch.equal`` on the raw bits: float32, bfloat16 and float16, NaN, infinities, signed zeros,
all-zero blocks and values halfway between two codes):

- :func:`nf4_dequantized`: torchao's ``to_nf4(w, 64, 256).get_original_weight()``. torchao finds
  each value's nearest NF4 code by broadcasting the values against the 16 codes (a 16x larger
  temporary, then a ``min`` over it); here only the two codes around the value are compared
  (``searchsorted``), with the same float differences and the same tie rule (the lower code, as
  ``min``'s first index). Any other code is further by at least the smallest gap between codes,
  which no rounding of a difference below 2 can close. The scalers' double quantization is
  torchao's own function.
- :func:`hqq_proximal`: torchao's ``optimize_weights_proximal_legacy`` (HQQ's iterative solve, the
  default of ``_choose_qparams_and_quantize_affine_hqq``), the same element-wise ops in the same
  order written into four buffers instead of ~15 new tensors per iteration, and the error of an
  iteration read from the ``|W - W_r|`` it already has. Passed to torchao's HQQ function as its
  ``optimize_weights``. Its floor is the iteration itself: one ``pow(|x|, -0.3)`` per element per
  iteration (about a third of torchao's time, over half of this one's).

numba is not used here: its ``pow`` is not bit-identical to torch's vectorised one.
"""

from __future__ import annotations

from typing import Any

import torch

#: torchao's NF4 code values (``NF4Tensor.from_tensor``), in ascending order.
NF4_CODES = (
    -1.0000,
    -0.6962,
    -0.5251,
    -0.3949,
    -0.2844,
    -0.1848,
    -0.0911,
    0.0000,
    0.0796,
    0.1609,
    0.2461,
    0.3379,
    0.4407,
    0.5626,
    0.7230,
    1.0000,
)


def nf4_dequantized(weight: torch.Tensor, block_size: int, scaler_block_size: int) -> torch.Tensor:
    """``to_nf4(weight, block_size, scaler_block_size).get_original_weight()``, bit for bit."""
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import NF4Tensor, get_block_absmax, to_nf4

    w = weight.detach()
    if w.dim() > 2 or w.numel() % block_size or w.numel() % 2:
        return to_nf4(w, block_size, scaler_block_size).get_original_weight()  # torchao's refusal, as it words it
    flat = w.flatten()
    quantized_scalers, factor, mean = NF4Tensor.double_quantize_scalers(flat, block_size, scaler_block_size)
    codes = torch.tensor(NF4_CODES, device=w.device, dtype=w.dtype)
    n_blocks = flat.numel() // block_size
    absmax = get_block_absmax(flat, block_size)
    scaled = (flat.view(n_blocks, block_size) / absmax.unsqueeze(-1).expand(n_blocks, block_size)).flatten()
    upper = torch.searchsorted(codes, scaled)  # the first code >= the value (NaN: past the end)
    lower = (upper - 1).clamp_(0, len(NF4_CODES) - 1)
    upper.clamp_(0, len(NF4_CODES) - 1)
    below = (scaled - codes[lower]).abs_()
    above = (scaled - codes[upper]).abs_()
    nearest = torch.where(above < below, upper, lower)
    nearest.masked_fill_(~torch.isfinite(scaled), 0)  # every difference NaN or inf: min's first index
    n_scaler_blocks = quantized_scalers.numel() // scaler_block_size
    scalers = (quantized_scalers.view(n_scaler_blocks, scaler_block_size) / factor.unsqueeze(-1)).flatten().to(
        w.dtype
    ) + mean
    return (codes[nearest].view(n_blocks, block_size) * scalers.unsqueeze(-1)).reshape(w.shape)


@torch.inference_mode()
def hqq_proximal(
    tensor: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    min_max: list,
    axis: int = 0,
    dtype: torch.dtype | None = None,
    device: Any = None,
    verbose: bool = False,
    opt_params: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchao's ``optimize_weights_proximal_legacy`` with its default parameters, bit for bit."""
    params = {"lp_norm": 0.7, "beta": 1e1, "kappa": 1.01, "iters": 20, "early_stop": True, **(opt_params or {})}
    lp_norm, beta, kappa = params["lp_norm"], params["beta"], params["kappa"]
    device = tensor.device if device is None else torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    w_f = tensor.to(dtype=dtype, device=device)
    scale = scale.to(dtype=dtype, device=device)
    zero = zero.to(dtype=dtype, device=device)
    w_q, diff, work, other = (torch.empty_like(w_f) for _ in range(4))
    best_error = 1e4
    for _ in range(params["iters"]):
        # W_q = round(W_f * scale + zero).clamp(min, max)
        torch.mul(w_f, scale, out=w_q).add_(zero).round_().clamp_(min_max[0], min_max[1])
        # W_r = (W_q - zero) / scale; diff = W_f - W_r
        torch.sub(w_q, zero, out=diff).div_(scale)
        torch.sub(w_f, diff, out=diff)
        torch.abs(diff, out=work)
        current_error = float(work.mean())  # torch.abs(W_f - W_r).mean()
        # W_e = sign(diff) * relu(|diff| - (1 / beta) * |diff| ** (lp_norm - 1))
        if lp_norm == 1:
            work.sub_(1.0 / beta)
        else:
            work.sub_(torch.pow(work, lp_norm - 1, out=other).mul_(1.0 / beta))
        work.relu_()
        torch.sign(diff, out=other).mul_(work)
        # zero = mean(W_q - (W_f - W_e) * scale)
        torch.sub(w_f, other, out=other).mul_(scale)
        zero = torch.mean(torch.sub(w_q, other, out=other), dim=axis, keepdim=True)
        beta *= kappa
        if verbose:
            print(f"Iter {_ + 1}  | Error: {current_error}")
        if params["early_stop"]:
            if current_error < best_error:
                best_error = current_error
            else:
                break
    scale = scale.to(tensor.device)
    zero = zero.to(tensor.device)
    del w_f, w_q, diff, work, other
    return torch.round(tensor * scale + zero).clamp(min_max[0], min_max[1]), scale, zero
