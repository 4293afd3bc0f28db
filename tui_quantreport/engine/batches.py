"""Batches and the values flowing through a model: how one batch is fed, where its tensor is.

Small helpers every layer that runs a model shares (calibration, layout discovery, exported
graphs, the simulation, verification), kept below all of them so none imports another for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn


class ObserverFault(RuntimeError):
    """A bug in our own hooks: kept apart from errors in the user's model or batches."""


def call_batch(model: nn.Module, batch: Any) -> Any:
    """Run one batch: a tensor is passed as is, a tuple/list spread, a dict as keywords."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a module's inputs or outputs (nested tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):  # keyword inputs, and outputs like HuggingFace's ModelOutput
        value = tuple(value.values())
    if isinstance(value, (tuple, list)):  # never other iterables: iterating may consume them
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def batch_count(batches: Iterable[Any]) -> int | None:
    """How many batches an iterable holds, when it says so without being consumed."""
    try:
        return len(batches)  # type: ignore[arg-type]
    except TypeError:
        return None
