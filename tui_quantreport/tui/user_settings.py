"""The user's saved settings: theme, enabled detectors and parameters, minimum gain, per user.

Kept in ``$XDG_CONFIG_HOME/tui-quantreport/settings.json`` (``~/.config/…``
when the variable is unset). Saved whenever they change in the app; read when
the app starts, under the command line's options (an option given on the
command line wins). A file that cannot be read or no longer validates is
ignored with a notice, never a crash. ``Reset saved settings`` in the palette
deletes it and returns to the defaults.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "settings.json"


def settings_path() -> Path:
    """Where the settings live for this user."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tui-quantreport" / FILE_NAME


@dataclass(frozen=True)
class UserSettings:
    """What is saved: all optional (absent means "the default")."""

    theme: str | None = None
    enabled: tuple[str, ...] | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    ch_axis: Any = None
    #: The measured-severity threshold (``--min-gain``), None for the default.
    min_gain_db: float | None = None

    def as_options(self) -> tuple[str | None, list[str]]:
        """The saved detectors and parameters as command-line text (``--detectors``, ``--param``)."""
        detectors = ",".join(self.enabled) if self.enabled is not None else None
        params = [f"{det}.{name}={value}" for det, values in self.params.items() for name, value in values.items()]
        return detectors, params


def load() -> tuple[UserSettings, str | None]:
    """The saved settings, and a sentence when the file was there but unusable."""
    path = settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return UserSettings(), None
    except (OSError, ValueError) as exc:
        return UserSettings(), f"ignored saved settings {path}: {exc}"
    if not isinstance(data, dict):
        return UserSettings(), f"ignored saved settings {path}: not a JSON object"
    enabled = data.get("enabled")
    raw = data.get("params")
    params: dict[str, Any] = raw if isinstance(raw, dict) else {}
    gain = data.get("min_gain_db")
    notice = None
    if gain is not None and not _valid_gain(gain):
        notice = f"ignored the saved min_gain_db {gain!r} in {path}: not a finite number of dB, 0 or more"
        gain = None
    return UserSettings(
        theme=data.get("theme") if isinstance(data.get("theme"), str) else None,
        enabled=tuple(enabled) if isinstance(enabled, list) else None,
        params={k: dict(v) for k, v in params.items() if isinstance(v, dict)},
        ch_axis=data.get("ch_axis"),
        min_gain_db=float(gain) if gain is not None else None,
    ), notice


def _valid_gain(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def save(settings: UserSettings) -> Path:
    """Write ``settings`` (creating the directory); OSError propagates to the caller."""
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "theme": settings.theme,
        "enabled": list(settings.enabled) if settings.enabled is not None else None,
        "params": settings.params,
        "ch_axis": settings.ch_axis,
        "min_gain_db": settings.min_gain_db,
    }
    from tui_quantreport.engine.errors import UserError
    from tui_quantreport.engine.export import write_atomic

    try:
        return write_atomic(path, json.dumps(data, indent=2) + "\n", what="settings")
    except UserError as exc:
        raise OSError(str(exc)) from None


def reset() -> None:
    """Forget the saved settings."""
    try:
        settings_path().unlink()
    except FileNotFoundError:
        pass
