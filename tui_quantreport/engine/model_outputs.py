"""The model's output, as every end-to-end SQNR reads it: every floating-point tensor it returns.

One definition for the plan's SQNR, sensitivity (``engine/quantsim``) and ``verify``
(``engine/apply/verify.py``):

- :func:`output_tensors` names every floating-point tensor of a model's output,
  however nested: a plain tensor is ``"output"``; tuple/list items are named by
  their index, mapping (``dict``, transformers' ``ModelOutput``) items by their
  key, joined with dots (``"0"``, ``"logits"``, ``"encoder_last_hidden_state"``,
  ``"hidden_states.2"``). Anything else (integer tensors, ``None``, cache
  objects such as transformers' ``DynamicCache``) is not an output here.
- The **combined** SQNR is energy-weighted: 10 log10(sum_k ||y_k||^2 /
  sum_k ||y_k - y_hat_k||^2) over every output k and probe batch, i.e. the SQNR
  of all outputs laid end to end. An output with a large magnitude weighs more;
  the per-output SQNR says how each one fares on its own.
- ``output_key`` (``--output-key NAME``) picks the one output the user cares
  about: the end-to-end SQNR is then that output's alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tui_quantreport.engine.errors import UserError

#: The name of an output that is a tensor itself (not inside a tuple or mapping).
WHOLE = "output"
#: Nesting deeper than this is not followed (a cyclic structure, say).
MAX_DEPTH = 16


class OutputKeyError(UserError):
    """``--output-key`` names no floating-point output of the model."""


def output_tensors(value: Any) -> dict[str, torch.Tensor]:
    """{name: tensor} for every floating-point tensor in a model's output (detached), in order."""
    found: dict[str, torch.Tensor] = {}
    _walk(value, "", found, 0)
    return found


def _walk(value: Any, prefix: str, found: dict[str, torch.Tensor], depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            found[prefix or WHOLE] = value.detach()
        return
    items: Any = None
    if isinstance(value, Mapping):
        items = ((str(k), v) for k, v in value.items())
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        to_tuple = getattr(value, "to_tuple", None)  # a ModelOutput-like object that is not a Mapping
        if callable(to_tuple) and not isinstance(value, type):
            try:
                items = ((str(i), v) for i, v in enumerate(to_tuple()))
            except Exception:  # noqa: BLE001 - not an output we can read: left out
                items = None
    if items is None:
        return
    for key, item in items:
        _walk(item, f"{prefix}.{key}" if prefix else key, found, depth + 1)


def select(outputs: Mapping[str, torch.Tensor], output_key: str | None) -> dict[str, torch.Tensor]:
    """``outputs``, or only ``output_key``'s (an :class:`OutputKeyError` naming the outputs when missing)."""
    if output_key is None:
        return dict(outputs)
    if output_key in outputs:
        return {output_key: outputs[output_key]}
    names = ", ".join(list(outputs)[:12]) + (", ..." if len(outputs) > 12 else "")
    raise OutputKeyError(
        f"--output-key {output_key!r} is not a floating-point output of the model; its outputs are: {names or '(none)'}"
    )
