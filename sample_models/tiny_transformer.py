"""A small transformer encoder with a per-token classification head.

Two ``nn.TransformerEncoderLayer`` blocks (d_model 64, 4 heads, feed-forward
128, batch_first) and a Linear head applied to every token. Inputs are
(batch, tokens, features) = (8, 16, 64), so every Linear sees 3-D tensors
whose channel axis is the last one: the detectors must not take axis 1 (the
token axis) for channels. ``self_attn`` modules are MultiheadAttention (their
``out_proj`` weight is used functionally and its module is never called), and
the inputs carry a slow positional signal plus token noise.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DESCRIPTION = (
    "2-layer nn.TransformerEncoder (d_model 64, 4 heads) + per-token Linear head on (batch, tokens, features) "
    "inputs: exercises last-axis channels of Linear/LayerNorm/MultiheadAttention for every detector"
)

D_MODEL = 64
TOKENS = 16


class TinyTransformerTagger(nn.Module):
    """(N, 16, 64) token features -> (N, 16, 8) per-token tag logits."""

    def __init__(self, num_tags: int = 8) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=D_MODEL, nhead=4, dim_feedforward=128, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, num_tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(tokens))


def build_model() -> nn.Module:
    """The float tagger in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TinyTransformerTagger()
    return model.eval()


def calibration_batches(num_batches: int = 16, batch_size: int = 8) -> list[torch.Tensor]:
    """Token features (8, 16, 64): sinusoidal position signal plus Gaussian token content."""
    generator = torch.Generator().manual_seed(13)
    position = torch.arange(TOKENS, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, D_MODEL, 2, dtype=torch.float32) * (-math.log(100.0) / D_MODEL))
    encoding = torch.zeros(TOKENS, D_MODEL)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency)
    return [encoding + torch.randn(batch_size, TOKENS, D_MODEL, generator=generator) for _ in range(num_batches)]
