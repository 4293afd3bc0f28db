"""A tiny MLP whose calibration data arrives slowly (for cancelling and quitting mid-calibration).

``calibration_batches`` is a generator (its length is unknown to the app) that
sleeps before each batch and counts the batches it has produced in
``PRODUCED``, so a test can see that calibration really stopped.
"""

import time

import torch
from torch import nn

BATCHES = 60
DELAY = 0.05
PRODUCED = [0]


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


def calibration_batches():
    generator = torch.Generator().manual_seed(0)
    for _ in range(BATCHES):
        time.sleep(DELAY)
        PRODUCED[0] += 1
        yield torch.randn(2, 4, generator=generator)
