"""Model files that fail in every way the command line must explain."""

import torch
from torch import nn


def raises():
    raise RuntimeError("weights file missing")


def not_a_module():
    return {"fc": 1}


def no_batches():
    return []


def wrong_shape_batches():
    # The second batch has 5 features where the first Linear expects 4.
    return [torch.randn(2, 4), torch.randn(2, 5)]


def build_model():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def calibration_batches():
    return wrong_shape_batches()
