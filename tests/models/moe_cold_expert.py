"""A mixture of experts whose router is fixed: expert 0 takes every token but one, expert 1
exactly one token, expert 2 none (never routed to). Experts are ``experts.N.up/down``."""

import torch
from torch import nn

DESCRIPTION = "hard-routed mixture of experts: a busy, a one-token and a cold expert"


class Expert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


class HardMoE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)
        self.experts = nn.ModuleList(Expert() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x).reshape(-1, 16)
        out = torch.zeros_like(h)
        # The first token of the first batch (its marker: feature 0 above 100) goes to expert 1.
        one = x.reshape(-1, 16)[:, 0] > 100
        out[~one] = self.experts[0](h[~one])
        if bool(one.any()):
            out[one] = self.experts[1](h[one])
        return out.reshape(x.shape)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return HardMoE().eval()


def calibration_batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(4, 10, 16, generator=g) for _ in range(4)]
    batches[0][0, 0, 0] = 1000.0
    return batches
