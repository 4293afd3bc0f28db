"""``--ch-axis``: the channel axis, set for the whole model or per module pattern.

By default every observation point's channel axis is decided from what the
tensor is (see :mod:`~tui_quantreport.engine.layout`). An override replaces
that decision for the modules it names:

    --ch-axis -1                                  every point: the last axis
    --ch-axis 'model.layers.*.mlp.act_fn=-1'      only modules matching the pattern
    --ch-axis 'encoder.*=-1,encoder.conv*=1'      several, comma-separated (or repeat the option)

Patterns are shell-style (:func:`fnmatch.fnmatchcase`) over fully qualified
module names; the last matching rule wins; a bare integer is the pattern ``*``.
An axis out of a tensor's range is never clamped: the point reports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from tui_quantreport.engine.errors import ParamError

GLOBAL = "*"


@dataclass(frozen=True)
class AxisOverrides:
    """Channel-axis overrides: ``(pattern, axis)`` rules, the last match wins."""

    rules: tuple[tuple[str, int], ...]

    @classmethod
    def parse(cls, value: object) -> AxisOverrides | None:
        """Overrides from an int, an :class:`AxisOverrides`, text (``"-1"``, ``"a.*=-1,b=1"``) or a list of those.

        ``None``, ``""`` and ``"auto"`` mean no override. Raises :class:`ParamError` on bad text.
        """
        if value is None or isinstance(value, AxisOverrides):
            return value  # type: ignore[return-value]
        if isinstance(value, bool):
            raise ParamError(f"the channel axis must be 'auto', an integer or PATTERN=AXIS, not {value!r}")
        if isinstance(value, int):
            return cls(((GLOBAL, value),))
        items: Iterable[object] = value if isinstance(value, (list, tuple)) else [value]
        rules: list[tuple[str, int]] = []
        for item in items:
            parsed = cls.parse(item) if not isinstance(item, str) else None
            if parsed is not None:
                rules.extend(parsed.rules)
                continue
            for part in str(item).split(","):
                part = part.strip()
                if not part or part.lower() in ("auto", "none"):
                    continue
                pattern, sep, axis_text = part.rpartition("=")
                if not sep:
                    pattern, axis_text = GLOBAL, part
                pattern = pattern.strip()
                if sep and not pattern:
                    raise ParamError(f"--ch-axis {part!r}: the module pattern before '=' is empty")
                try:
                    axis = int(axis_text.strip())
                except ValueError:
                    raise ParamError(
                        f"the channel axis must be 'auto', an integer or PATTERN=AXIS "
                        f"(e.g. 'model.layers.*.mlp.act_fn=-1'), not {part!r}"
                    ) from None
                rules.append((pattern, axis))
        return cls(tuple(rules)) if rules else None

    def for_module(self, fqn: str) -> tuple[int, str] | None:
        """The axis set for module ``fqn`` and the rule that set it, or None."""
        for pattern, axis in reversed(self.rules):
            if pattern == GLOBAL or fnmatchcase(fqn, pattern):
                return axis, (str(axis) if pattern == GLOBAL else f"{pattern}={axis}")
        return None

    @property
    def global_axis(self) -> int | None:
        """The axis when the overrides are one global axis, else None."""
        if len(self.rules) == 1 and self.rules[0][0] == GLOBAL:
            return self.rules[0][1]
        return None

    def __str__(self) -> str:
        return ",".join(str(axis) if pattern == GLOBAL else f"{pattern}={axis}" for pattern, axis in self.rules)
