"""A model nested eight levels deep with long names: its deepest rows are wider than the tree pane.

The innermost Linear has rows of very different ranges (per-channel weights help) and reads an
input with one outlier channel, so detectors flag it.
"""

from collections import OrderedDict

import torch
from torch import nn


def build_model() -> nn.Module:
    torch.manual_seed(0)
    inner = nn.Linear(8, 8)
    with torch.no_grad():
        inner.weight.mul_(torch.logspace(-2, 1, 8).unsqueeze(1))
    block: nn.Module = nn.Sequential(OrderedDict(innermost_projection_layer=inner, activation=nn.ReLU()))
    for level in reversed(range(7)):
        outer = nn.Sequential()
        outer.add_module(f"encoder_block_with_a_long_name_{level}", block)
        block = outer
    return nn.Sequential(nn.Linear(8, 8), block).eval()


def calibration_batches():
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        x = torch.randn(16, 8, generator=generator)
        x[:, 3] *= 40.0
        yield x
