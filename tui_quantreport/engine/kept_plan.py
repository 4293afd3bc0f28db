"""The plan the user edited in the app, kept between runs (relaunching on the same model brings
the edits back).

Keyed like the kept tree (:mod:`.launch_tree`): the spec and the model file's path, size and
modification time (a bundled sample: its file), under ``$XDG_CACHE_HOME/tui-quantreport/plans/``.
The file holds the plan's JSON (the plan file format, ``origin`` ``"edited"``); the app adopts it
only when it was made for the same model (class and parameter fingerprint) and names only
modules the model has. Only edited plans are kept: returning to the recommended plan forgets the
copy. Torch-free; every failure here means "no copy".
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tui_quantreport.engine import launch_tree

FORMAT = "tui-quantreport.kept-plan/1"


def cache_dir() -> Path:
    """Where the kept plans live for this user."""
    return launch_tree.cache_dir().parent / "plans"


def _path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / f"{digest}.json"


def read(spec: str) -> dict[str, Any] | None:
    """The plan data kept for ``spec`` (the plan file's JSON), or None."""
    key = launch_tree.key_of(spec)
    if key is None:
        return None
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("key") != key or not isinstance(data.get("plan"), dict):
            return None
        return dict(data["plan"])
    except Exception:  # missing, unreadable, or written by another version: no copy
        return None


def write(spec: str, plan_data: dict[str, Any]) -> Path | None:
    """Keep ``plan_data`` for ``spec`` (atomically); None when not kept."""
    key = launch_tree.key_of(spec)
    if key is None:
        return None
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".plan-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, "key": key, "plan": plan_data}, f, allow_nan=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except (OSError, ValueError):
        return None
    return path


def forget(spec: str) -> None:
    """Drop the plan kept for ``spec`` (the plan is the recommended one again)."""
    key = launch_tree.key_of(spec)
    if key is None:
        return
    try:
        _path(key).unlink(missing_ok=True)
    except OSError:
        pass
