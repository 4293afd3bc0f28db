"""A model's fingerprint: what makes two models the same for a stats file or a plan."""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from tui_quantreport.engine.escape import printable
from tui_quantreport.engine.module_kinds import is_lazy, is_quant_helper

FINGERPRINT_VERSION = 2


def model_identity(model: nn.Module, class_name: str | None = None) -> tuple[tuple[str, ...], ...]:
    """What makes two models the same for a stats file or a plan, as rows: the root class, then in
    tree order every module's name and type, and every parameter's and buffer's name, shape and
    dtype. Observers' and fake quantizers' buffers are left out (they change shape while they
    calibrate); their names and types are kept. ``class_name`` overrides the root's (an exported
    graph names its original class)."""
    rows: list[tuple[str, ...]] = [("class", class_name or type(model).__name__)]
    for fqn, module in model.named_modules(remove_duplicate=False):
        cls = type(module)
        rows.append(("module", fqn, f"{cls.__module__}.{cls.__qualname__}"))
        for name, tensor in module.named_parameters(recurse=False):
            rows.append(("parameter", _join(fqn, name), _shape(tensor), str(tensor.dtype)))
        if not is_quant_helper(module):
            for name, buffer in module.named_buffers(recurse=False):
                rows.append(("buffer", _join(fqn, name), _shape(buffer), str(buffer.dtype)))
    return tuple(rows)


def model_fingerprint(model: nn.Module, class_name: str | None = None) -> str:
    """``"2:"`` and the first 16 hex digits of the sha256 of :func:`model_identity`."""
    return identity_fingerprint(model_identity(model, class_name))


def identity_fingerprint(identity: tuple[tuple[str, ...], ...]) -> str:
    digest = hashlib.sha256(f"tui-quantreport.fingerprint/{FINGERPRINT_VERSION}".encode())
    for row in identity:
        digest.update(json.dumps(row, ensure_ascii=True).encode() + b"\n")
    return f"{FINGERPRINT_VERSION}:{digest.hexdigest()[:16]}"


def is_versioned(fingerprint: str) -> bool:
    """True for a fingerprint of version 2 or later ("2:…"); False for a version 1 one (16 hex digits)."""
    return ":" in fingerprint


def legacy_fingerprint(model: nn.Module, class_name: str | None = None) -> str:
    """Version 1: sha256 (16 hex digits) of the class name and every parameter's name, shape and dtype."""
    digest = hashlib.sha256((class_name or type(model).__name__).encode("utf-8", "surrogatepass"))
    for name, tensor in model.named_parameters():
        shape = "lazy" if is_lazy(tensor) else "x".join(map(str, tensor.shape))
        digest.update(f"|{name}:{shape}:{tensor.dtype}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def first_difference(a: tuple[tuple[str, ...], ...], b: tuple[tuple[str, ...], ...]) -> str:
    """The first row where two identities differ, in words (names made printable)."""

    def said(row: tuple[str, ...] | None) -> str:
        if row is None:
            return "nothing"
        kind, *rest = row
        if kind == "class":
            return f"class {printable(rest[0])}"
        if kind == "module":
            return f"module '{printable(rest[0])}' of type {printable(rest[1])}"
        return f"{kind} '{printable(rest[0])}' of shape {rest[1]} and {rest[2]}"

    for i in range(max(len(a), len(b))):
        left = tuple(a[i]) if i < len(a) else None
        right = tuple(b[i]) if i < len(b) else None
        if left != right:
            return f"it has {said(left)} where this model has {said(right)}"
    return "the same modules and tensors, but a different fingerprint"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _shape(tensor: torch.Tensor) -> str:
    lazy = isinstance(tensor, (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer))
    return "lazy" if lazy else "x".join(map(str, tensor.shape))
