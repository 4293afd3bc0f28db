"""The small model the exported-graph tests share: a Conv, a nested Sequential of Linears and a
LayerNorm, its saved ``torch.export`` program, and a calibration file for it."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class ConvLinear(nn.Module):
    """Conv, ReLU, pool, flatten, a nested Sequential of Linears, LayerNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.flatten = nn.Flatten()
        self.head = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.head(self.flatten(self.pool(self.relu(self.conv(x))))))


def float_model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ConvLinear().eval()


def save_program(path: Path) -> None:
    """Save ``float_model()`` as a torch.export program (a dynamic batch dimension) at ``path``."""
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(float_model(), (torch.randn(2, 3, 8, 8),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))


CALIBRATION = """
import torch
def calibration_batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(4, 3, 8, 8, generator=g) * (1 + i) for i in range(5)]
"""
