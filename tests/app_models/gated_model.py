"""A tiny MLP whose calibration waits, after its first batch, until a test opens ``GATE``.

Lets a test act while a calibration is certainly running (no timing involved).
"""

import threading

import torch
from torch import nn

BATCHES = 5
GATE = threading.Event()


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


def calibration_batches():
    generator = torch.Generator().manual_seed(0)
    for index in range(BATCHES):
        if index == 1:
            GATE.wait(timeout=60)
        yield torch.randn(2, 4, generator=generator)
