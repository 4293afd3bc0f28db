"""A tabular regressor on raw, unnormalized features: input-weight equalization.

The 24 input features arrive without normalization: 16 are already on a
standardized scale (standard deviation 0.5 to 1.5) and 8 are measured in tiny
units (standard deviation 0.01 to 0.03), so the input channel ranges of
``input_proj`` are badly unbalanced, while its weight columns are not.

The equalization detector computes, per input channel c,
``s_c = sqrt(w_c / W) / sqrt(i_c / I)``, marks a channel when
``threshold <= s_c <= 1 / threshold`` (threshold 0.5, as the reference
computes it) and recommends the module when at least 40% of its channels are
marked:

- ``input_proj``: the 16 standardized channels have s_c between 1.0 and 1.8
  and are marked; the 8 tiny-unit channels have s_c between 7.5 and 12.4 and
  are not. 16/24 channels: recommended.
- ``hidden``: an L1-regularized layer whose input columns have mostly been
  shrunk towards zero (70% of the columns at 2% of the others' magnitude):
  those columns have s_c around 0.27; with a few dead ReLU inputs (i_c = 0),
  only 13/64 channels are marked: not recommended.
"""

from __future__ import annotations

import torch
from torch import nn

DESCRIPTION = (
    "Tabular MLP regressor on raw features whose channel ranges are badly unbalanced: "
    "exercises the input-weight equalization detector (input_proj recommended, hidden not)"
)

NUM_FEATURES = 24
NUM_STANDARDIZED = 16


class TabularRegressor(nn.Module):
    """(N, 24) raw features -> (N, 4) regression targets."""

    def __init__(self, num_targets: int = 4) -> None:
        super().__init__()
        self.input_proj = nn.Linear(NUM_FEATURES, 64)
        self.act1 = nn.ReLU()
        self.hidden = nn.Linear(64, 64)
        self.act2 = nn.ReLU()
        self.output = nn.Linear(64, num_targets)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.input_proj(features))
        x = self.act2(self.hidden(x))
        return self.output(x)


def build_model() -> nn.Module:
    """The float regressor in eval mode, with the L1-shrunk input columns of ``hidden``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TabularRegressor()
        shrunk = torch.randperm(64)[: int(0.7 * 64)]
    with torch.no_grad():
        model.hidden.weight[:, shrunk] *= 0.02
    return model.eval()


def _feature_scales() -> torch.Tensor:
    standardized = torch.linspace(0.5, 1.5, NUM_STANDARDIZED)
    tiny_units = torch.linspace(0.01, 0.03, NUM_FEATURES - NUM_STANDARDIZED)
    return torch.cat([standardized, tiny_units])


def calibration_batches(num_batches: int = 16, batch_size: int = 64) -> list[torch.Tensor]:
    """Feature rows (64, 24): positive measurements, Gaussian, centred 3 to 4 scales above zero."""
    generator = torch.Generator().manual_seed(11)
    scales = _feature_scales()
    offsets = scales * (3.0 + torch.rand(NUM_FEATURES, generator=generator))
    return [offsets + scales * torch.randn(batch_size, NUM_FEATURES, generator=generator) for _ in range(num_batches)]
