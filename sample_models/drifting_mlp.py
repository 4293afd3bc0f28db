"""A 4-layer MLP fed by a drifting stream: dynamic quantization for the early layers.

The input is a stream of 256-dimensional sensor embeddings whose gain grows
32-fold and whose offset moves over the calibration run (think of a
production feature pipeline whose upstream normalization changed). ``fc1`` and
``fc2`` see that drift, so their outputs are non-stationary and the
dynamic-vs-static detector recommends dynamic quantization for them. A
LayerNorm after ``fc2`` removes the per-sample scale, so ``fc3`` and ``fc4``
see stationary data and keep static quantization.
"""

from __future__ import annotations

import torch
from torch import nn

DESCRIPTION = (
    "4-layer MLP (Linear+ReLU, LayerNorm after layer 2) on an input stream whose scale and offset drift: "
    "exercises the dynamic-vs-static detector"
)

IN_FEATURES = 256
HIDDEN = 1024


class DriftingMLP(nn.Module):
    """(N, 256) embeddings -> (N, 10) logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(IN_FEATURES, HIDDEN)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.relu2 = nn.ReLU()
        self.norm = nn.LayerNorm(HIDDEN)
        self.fc3 = nn.Linear(HIDDEN, HIDDEN // 2)
        self.relu3 = nn.ReLU()
        self.fc4 = nn.Linear(HIDDEN // 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.fc1(x))
        x = self.norm(self.relu2(self.fc2(x)))
        x = self.relu3(self.fc3(x))
        return self.fc4(x)


def build_model() -> nn.Module:
    """The float MLP in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DriftingMLP()
    return model.eval()


def calibration_batches(num_batches: int = 24, batch_size: int = 64) -> list[torch.Tensor]:
    """Batches (64, 256): gain grows geometrically 0.25 -> 8, offset moves 0 -> 1.5."""
    generator = torch.Generator().manual_seed(3)
    batches = []
    for index in range(num_batches):
        progress = index / max(num_batches - 1, 1)
        gain = 0.25 * 32.0**progress
        offset = 1.5 * progress
        batches.append(gain * torch.randn(batch_size, IN_FEATURES, generator=generator) + offset)
    return batches
