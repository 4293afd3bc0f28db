"""A tiny MLP whose calibration data arrives slowly (for cancelling and quitting mid-calibration).

``calibration_batches`` is a generator (its length is unknown to the app) that
sleeps before each batch and counts the batches it has produced in
``PRODUCED``, so a test can see that calibration really stopped.

A test that must act while calibration is surely still running sets
``HOLD_AFTER[0] = n`` and clears ``GATE``: the generator then waits for
``GATE`` before producing batch n + 1, however fast or slow the machine is.
"""

import threading
import time

import torch
from torch import nn

BATCHES = 60
DELAY = 0.05
PRODUCED = [0]
#: Hold before producing batch HOLD_AFTER[0] + 1 until GATE is set (None: never hold).
HOLD_AFTER: list[int | None] = [None]
GATE = threading.Event()
GATE.set()
#: The longest a held batch waits, so that a failing test cannot hang the suite.
HOLD_LIMIT_S = 60


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


def calibration_batches():
    generator = torch.Generator().manual_seed(0)
    for i in range(BATCHES):
        if HOLD_AFTER[0] is not None and i >= HOLD_AFTER[0]:
            GATE.wait(HOLD_LIMIT_S)
        time.sleep(DELAY)
        PRODUCED[0] += 1
        yield torch.randn(2, 4, generator=generator)
