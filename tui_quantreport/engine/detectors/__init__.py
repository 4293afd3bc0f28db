"""The detector registry, built from the detectors' own declarations.

Every module in this package (except ``base``) holds one
:class:`~.base.Detector` subclass; the registry imports them all and orders
them by their ``order``. The names, short names, glyphs and report keys that
the command line, the app, the exporters and the tests use all come from those
classes, so adding a detector is one new file here (plus its tests).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from tui_quantreport.engine.detectors.base import Detector, EvaluationContext, Judgement, Unjudged
from tui_quantreport.engine.errors import ParamError


def discover() -> list[type[Detector]]:
    """The concrete Detector subclasses defined in this package's modules, in their declared order."""
    found: list[type[Detector]] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Detector)
                and value.__module__ == module.__name__
                and not inspect.isabstract(value)
            ):
                found.append(value)
    found.sort(key=lambda cls: (cls.order, cls.name))
    _check_unique(found)
    return found


def _check_unique(classes: list[type[Detector]]) -> None:
    """Names, aliases and glyphs identify a detector: two detectors may not share one."""
    for what, values in (
        ("name or alias", [n for cls in classes for n in dict.fromkeys((cls.name, *cls.aliases))]),
        ("glyph", [cls.glyph for cls in classes]),
    ):
        seen: set[str] = set()
        for value in values:
            if value in seen:
                raise RuntimeError(f"two detectors declare the {what} {value!r}")
            seen.add(value)


DETECTORS: dict[str, type[Detector]] = {cls.name: cls for cls in discover()}

#: Short names accepted on the command line: "outlier" for "outlier_detector".
ALIASES: dict[str, str] = {alias: cls.name for cls in DETECTORS.values() for alias in cls.aliases}


def short_names() -> list[str]:
    """One short name per detector, in registry order ("per_channel", "outlier", …)."""
    return [cls.short_name() for cls in DETECTORS.values()]


def resolve_detector(name: str) -> str:
    """The registry name for ``name`` (full or short), or a :class:`ParamError`."""
    key = name.strip().lower()
    if key in DETECTORS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    raise ParamError(f"unknown detector {name!r}; choose from {', '.join(short_names())} (or their full names)")


__all__ = [
    "ALIASES",
    "DETECTORS",
    "Detector",
    "EvaluationContext",
    "Judgement",
    "Unjudged",
    "resolve_detector",
    "short_names",
]
