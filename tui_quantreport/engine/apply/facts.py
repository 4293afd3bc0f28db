"""What the exporters must know about the planned modules beyond the plan: their
type, whether torch reads their weight outside their own forward, and the rank of
the input they see (torchao's static activation scale has the input's rank)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.session import call_batch, first_tensor


@dataclass(frozen=True)
class ModuleFacts:
    fqn: str
    kind: str  # "Linear", "Conv1d", "Conv2d", "Conv3d" or the class name
    parent_class: str | None
    input_ndim: int | None  # None: never called on the probe batch


def _kind(module: nn.Module) -> str:
    for cls in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding):
        if isinstance(module, cls):
            return cls.__name__
    return type(module).__name__


def module_facts(model: nn.Module, fqns: Iterable[str], batch: Any | None) -> dict[str, ModuleFacts]:
    """Facts for ``fqns``; input ranks from one forward pass of ``batch`` (when given) on ``model``."""
    fqns = list(fqns)
    ndims: dict[str, int] = {}
    if batch is not None and fqns:
        handles = []
        for fqn in fqns:

            def hook(module, args, kwargs, fqn=fqn):
                tensor = first_tensor(args) if args else first_tensor(kwargs)
                if tensor is not None:
                    ndims.setdefault(fqn, tensor.dim())

            handles.append(model.get_submodule(fqn).register_forward_pre_hook(hook, with_kwargs=True))
        training = model.training
        try:
            model.eval()
            with torch.no_grad():
                call_batch(model, batch)
        except Exception as exc:  # noqa: BLE001 - any failure of user code is reported in one line
            raise UserError(
                f"the first calibration batch was rejected by the model: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            model.train(training)
            for handle in handles:
                handle.remove()
    result = {}
    for fqn in fqns:
        module = model.get_submodule(fqn)
        parent = model.get_submodule(fqn.rpartition(".")[0]) if "." in fqn else (model if fqn else None)
        result[fqn] = ModuleFacts(
            fqn, _kind(module), type(parent).__name__ if parent is not None else None, ndims.get(fqn)
        )
    return result


def parent_is(facts: ModuleFacts, names: Mapping[str, str] | Iterable[str]) -> bool:
    return facts.parent_class in set(names)
