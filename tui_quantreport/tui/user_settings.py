"""The user's saved settings: theme, enabled detectors and parameters, minimum gain, target, per user.

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
    #: The deployment target picked in the sidebar (``--target``), None for torchao on the model's device.
    target: str | None = None

    def as_options(self) -> tuple[str | None, list[str]]:
        """The saved detectors and parameters as command-line text (``--detectors``, ``--param``)."""
        detectors = ",".join(self.enabled) if self.enabled is not None else None
        params = [f"{det}.{name}={value}" for det, values in self.params.items() for name, value in values.items()]
        return detectors, params


#: A settings file is a few hundred bytes; anything over this is not one.
MAX_BYTES = 1024 * 1024


def load() -> tuple[UserSettings, str | None]:
    """The saved settings, and a sentence when the file was there but unusable (bounded: the size
    before reading, the JSON depth before parsing, each value's type; a bad value is dropped with a
    notice, never a crash)."""
    from tui_quantreport.engine import bounded
    from tui_quantreport.engine.errors import UserError
    from tui_quantreport.engine.escape import printable

    path = settings_path()
    shown = printable(str(path))
    if not os.path.lexists(path):
        return UserSettings(), None
    try:
        data = bounded.loads(bounded.read_text(path, "settings file", limit=MAX_BYTES), "settings file", max_depth=8)
    except UserError as exc:
        return UserSettings(), f"ignored saved settings {shown}: {printable(str(exc))}"
    if not isinstance(data, dict):
        return UserSettings(), f"ignored saved settings {shown}: not a JSON object"
    dropped = []
    enabled = data.get("enabled")
    if enabled is not None and not (isinstance(enabled, list) and all(isinstance(e, str) for e in enabled)):
        dropped.append("enabled")
        enabled = None
    raw = data.get("params")
    params: dict[str, dict[str, Any]] = {}
    if isinstance(raw, dict):
        for det, values in raw.items():
            if isinstance(values, dict) and all(_scalar(v) for v in values.values()):
                params[str(det)] = dict(values)
            else:
                dropped.append(f"params.{printable(str(det))}")
    elif raw is not None:
        dropped.append("params")
    ch_axis = data.get("ch_axis")
    if not _valid_axis(ch_axis):
        dropped.append("ch_axis")
        ch_axis = None
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        dropped.append("theme")
        theme = None
    gain = data.get("min_gain_db")
    notice = None
    if gain is not None and not _valid_gain(gain):
        notice = f"ignored the saved min_gain_db {printable(repr(gain))[:60]} in {shown}: not a finite number of dB, 0 or more"
        gain = None
    target = data.get("target")
    if target is not None and not isinstance(target, str):
        dropped.append("target")
        target = None
    if dropped:
        notice = f"ignored saved {', '.join(dropped)} in {shown}: not the expected kind of value"
    return UserSettings(
        theme=theme,
        enabled=tuple(enabled) if isinstance(enabled, list) else None,
        params=params,
        ch_axis=ch_axis,
        min_gain_db=float(gain) if gain is not None else None,
        target=target,
    ), notice


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _valid_axis(value: Any) -> bool:
    """None, an axis, or [PATTERN=]AXIS text (one string or a list of them), as --ch-axis takes."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str):
        return True
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


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
        "target": settings.target,
    }
    from tui_quantreport.engine import write_atomic
    from tui_quantreport.engine.errors import UserError

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
