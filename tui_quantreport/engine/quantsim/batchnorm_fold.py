"""BatchNorm folding, as the targets that fold it before quantizing do (PT2E's ``prepare_pt2e``
folds an eval-mode conv -> BatchNorm pair into the conv's weight and bias before it annotates the
graph, so the int8 weight is the folded one).

:func:`fold_batchnorm` returns a copy of the model in which each convolution whose output goes
straight into a BatchNorm (consecutive children of an ``nn.Sequential``: the pattern the sample
models and torchvision-style blocks use) carries the folded weight and bias from torch's own
``fuse_conv_bn_weights`` (what PT2E's fold calls), and the BatchNorm passes its input through.
Module names and classes are kept, so plans and catalogs of the original model apply.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _identity(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return x


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv fqn, BatchNorm fqn) of every foldable pair: consecutive ``nn.Sequential`` children,
    the conv plain (its class's own forward), the BatchNorm tracking running statistics with
    as many features as the conv has output channels."""
    pairs = []
    for prefix, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
            if (
                type(conv) in _CONV
                and type(bn) in _BN
                and bn.track_running_stats
                and bn.running_mean is not None
                and bn.running_var is not None
                and bn.num_features == conv.out_channels
                and not conv.transposed
            ):
                dot = f"{prefix}." if prefix else ""
                pairs.append((dot + conv_name, dot + bn_name))
    return pairs


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` itself when it has no foldable pair, else a copy with every pair folded (eval)."""
    pairs = conv_bn_pairs(model)
    if not pairs:
        return model
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    folded = copy.deepcopy(model)
    with torch.no_grad():
        for conv_fqn, bn_fqn in pairs:
            conv, bn = folded.get_submodule(conv_fqn), folded.get_submodule(bn_fqn)
            assert isinstance(conv, _CONV) and isinstance(bn, _BN) and bn.running_mean is not None
            assert bn.running_var is not None
            weight, bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            conv.weight, conv.bias = weight, bias
            bn.forward = _identity  # type: ignore[method-assign, assignment]
    return folded
