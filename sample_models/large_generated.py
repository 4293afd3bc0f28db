"""A large generated model: 2,000+ modules of small gated residual MLP blocks.

Eight stages (an ``nn.ModuleDict``), each an ``nn.ModuleList`` of 25 gated
residual blocks; every block holds a LayerNorm, an MLP ``nn.Sequential``
(Linear, GELU, Linear), a gate ``nn.ModuleDict`` (Linear, Sigmoid) and a
Dropout. The width is 32, so a forward pass over (8, 32) is cheap while the
module tree is large (2,000+ modules) and deep (``stages.stage3.blocks.17.gate.proj``):
this sample is for the app's tree navigation, search and rendering, and for the
cost of hooks on every module during calibration.
"""

from __future__ import annotations

import torch
from torch import nn

DESCRIPTION = (
    "Generated stack of 200 gated residual MLP blocks, 2,000+ modules, width 32, nested "
    "ModuleDict/ModuleList/Sequential: stresses the tree view and hook overhead (all detectors)"
)

WIDTH = 32
NUM_STAGES = 8
BLOCKS_PER_STAGE = 25


class GatedResidualBlock(nn.Module):
    """x + dropout(gate(norm(x)) * mlp(norm(x)))."""

    def __init__(self, width: int, depth_scale: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc_in", nn.Linear(width, 2 * width))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc_out", nn.Linear(2 * width, width))
        self.gate = nn.ModuleDict({"proj": nn.Linear(width, width), "act": nn.Sigmoid()})
        self.dropout = nn.Dropout(0.1)
        with torch.no_grad():  # keep the residual stream bounded over 200 blocks
            self.mlp.fc_out.weight.mul_(depth_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.dropout(self.gate["act"](self.gate["proj"](h)) * self.mlp(h))


class Stage(nn.Module):
    def __init__(self, width: int, num_blocks: int, depth_scale: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(GatedResidualBlock(width, depth_scale) for _ in range(num_blocks))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class GeneratedResidualMLP(nn.Module):
    """(N, 32) features -> (N, 10) logits through 8 x 25 gated residual blocks."""

    def __init__(self, width: int = WIDTH, num_classes: int = 10) -> None:
        super().__init__()
        depth_scale = (NUM_STAGES * BLOCKS_PER_STAGE) ** -0.5
        self.stem = nn.Linear(width, width)
        self.stages = nn.ModuleDict(
            {f"stage{index}": Stage(width, BLOCKS_PER_STAGE, depth_scale) for index in range(NUM_STAGES)}
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages.values():
            x = stage(x)
        return self.head(x)


def build_model() -> nn.Module:
    """The float model in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GeneratedResidualMLP()
    return model.eval()


def calibration_batches(num_batches: int = 6, batch_size: int = 8) -> list[torch.Tensor]:
    """Gaussian features (8, 32)."""
    generator = torch.Generator().manual_seed(19)
    return [torch.randn(batch_size, WIDTH, generator=generator) for _ in range(num_batches)]
