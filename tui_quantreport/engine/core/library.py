"""torchao, imported only when an export, a verification or a measurement of its formats asks for it."""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Iterator
from types import ModuleType

from tui_quantreport.engine.errors import UserError

#: The range this project is tested with (pyproject pins the same).
TORCHAO_MIN = (0, 18)
TORCHAO_BELOW = (0, 19)
TORCHAO_RANGE = ">=0.18,<0.19"


class LibraryError(UserError):
    """The library a target needs is missing or too old."""


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def torchao_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version("torchao")
    except PackageNotFoundError:
        return None


def require_torchao(purpose: str) -> ModuleType:
    """Import torchao (quietly) or raise one sentence saying what is missing."""
    found = torchao_version()
    if found is None:
        raise LibraryError(f"{purpose} needs torchao, which is not installed: pip install 'torchao{TORCHAO_RANGE}'")
    if _version_tuple(found)[:2] < TORCHAO_MIN:
        raise LibraryError(
            f"{purpose} needs torchao {TORCHAO_RANGE}, found {found}: pip install 'torchao{TORCHAO_RANGE}'"
        )
    try:
        with quietly_importing():
            importlib.import_module("torchao.quantization")
            return importlib.import_module("torchao")
    except Exception as exc:  # noqa: BLE001 - a broken install is reported in one line
        raise LibraryError(f"{purpose} needs torchao, which failed to import: {type(exc).__name__}: {exc}") from None


@contextlib.contextmanager
def quietly_importing() -> Iterator[None]:
    """Import torchao's modules without their load-time warnings and log lines (its optional
    kernels, pytree registrations): they are not the report's output."""
    quiet = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
