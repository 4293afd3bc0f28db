"""A torch-free copy of a model's module tree, kept between runs so the app can paint the tree
before torch is imported (issue 10: launch to a populated tree).

Importing torch takes 1-2 s; building the model and its catalog needs it. After a model has
been opened once, its tree (the plain :class:`ModuleInfo` facts, no statistics) is written to
``$XDG_CACHE_HOME/tui-quantreport/trees/`` (``~/.cache/…``), keyed by the spec and the model
file's path, size and modification time (a bundled sample: its file in ``sample_models``).
The next launch reads it back in a few milliseconds and shows it while the model loads; the
real catalog replaces it as soon as it is built, so a stale copy can only ever be shown for
that moment. Specs naming an importable module (``package.module:factory``) are not kept:
no file to check them against without importing them. Every failure here means "no copy".
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from tui_quantreport import __version__
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.export import write_atomic
from tui_quantreport.engine.report import ModuleSummary, Report
from tui_quantreport.engine.spec import SAMPLES_PACKAGE, locate

FORMAT = "tui-quantreport.tree/1"
_FIELDS = tuple(f.name for f in fields(ModuleSummary) if f.name != "points")


def cache_dir() -> Path:
    """Where the copies live for this user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tui-quantreport" / "trees"


def _source(spec: str) -> Path | None:
    """The file a spec's model comes from: the file it names, or a bundled sample's; else None."""
    kind, target, _ = locate(spec)
    if kind == "file":
        return Path(target)
    if target.startswith(f"{SAMPLES_PACKAGE}."):
        found = importlib.util.find_spec(target)
        return Path(found.origin).resolve() if found is not None and found.origin else None
    return None  # package.module:factory: no file to check it against without importing it


def key_of(spec: str) -> dict[str, Any] | None:
    """What a copy must match to be shown for ``spec`` (None: this spec is never kept)."""
    try:
        source = _source(spec)
        if source is None:
            return None
        st = source.stat()
    except Exception:  # a bad spec: loading the model says why, not this
        return None
    return {
        "spec": spec,
        "source": str(source),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "tool": __version__,
    }


def _path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / f"{digest}.json"


def read(spec: str) -> Report | None:
    """The kept tree of ``spec`` as an uncalibrated report with no detectors, or None."""
    key = key_of(spec)
    if key is None:
        return None
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("key") != key:
            return None
        names = data["fields"]
        modules: dict[str, ModuleSummary] = {}
        for row in data["modules"]:
            values = dict(zip(names, row))
            values["children"] = tuple(values["children"])
            info = ModuleSummary(**{n: values[n] for n in _FIELDS if n in values})
            modules[info.fqn] = info
        if "" not in modules:
            return None
        return Report(spec=spec, model_class=str(data["model_class"]), modules=modules, batches=0, detectors={})
    except Exception:  # missing, unreadable, or written by another version: no copy
        return None


def write(spec: str, report: Report) -> Path | None:
    """Keep ``report``'s tree for the next launch (atomically); None when not kept."""
    key = key_of(spec)
    if key is None:
        return None
    rows = []
    for module in report.modules.values():
        values = asdict(module)
        rows.append([values[n] for n in _FIELDS])
    data = {"format": FORMAT, "key": key, "model_class": report.model_class, "fields": _FIELDS, "modules": rows}
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, json.dumps(data, separators=(",", ":")), what="tree cache")
    except (OSError, UserError, ValueError):
        return None
