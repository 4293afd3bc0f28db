"""A model file that shards its own calibration data: ``calibration_batches(rank, world_size)``.

Rank 1's data does not fit the model when ``FAIL_ON_RANK_1`` is set, to test that every rank
stops with one line naming the failing rank.
"""

import os

import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


def calibration_batches(rank=0, world_size=1):
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randn(5, 4, generator=gen) * (1 + i) for i in range(8)]
    if rank == 1 and os.environ.get("FAIL_ON_RANK_1"):
        return [torch.randn(2, 7)]
    return batches[rank::world_size]
