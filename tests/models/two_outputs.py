"""Two outputs of different magnitude (a dict, as a multi-head model returns): ``big`` is ten times
``small``; each head is a Linear of its own, so quantizing one leaves the other output exact."""

import torch
from torch import nn

DESCRIPTION = "two-output MLP: a dict of a large and a small head"


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(16, 32)
        self.head_big = nn.Linear(32, 8)
        self.head_small = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.enc(x))
        return {"big": self.head_big(h) * 10, "small": self.head_small(h), "ids": x.argmax(-1)}


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return TwoHeads().eval()


def calibration_batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(16, 16, generator=g) for _ in range(6)]
