"""Detector parameters: a name, a default, a valid range, and a parser.

A :class:`Param` validates both typed values (from code) and text (from the
command line or an input box), so every front end reports a bad value with the
same sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tui_quantreport.engine.channel_axis import AxisOverrides
from tui_quantreport.engine.errors import ParamError


@dataclass(frozen=True)
class Param:
    """One tunable number (or choice) of a detector.

    ``observed`` marks parameters that change *what is recorded* during
    calibration (a percentile, a channel axis): changing one needs new data.
    All others are applied to the kept statistics at once.
    """

    name: str
    default: Any
    help: str
    kind: str = "float"  # "float" | "int" | "choice" | "axis"
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[str, ...] = ()
    observed: bool = False

    def describe_range(self) -> str:
        """The valid values in words, e.g. ``in (0, 1)`` or ``one of fbgemm, x86``."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "axis":
            return "'auto', AXIS or PATTERN=AXIS"
        if self.low is not None and self.high is not None:
            left = "[" if self.low_inclusive else "("
            right = "]" if self.high_inclusive else ")"
            return f"in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        if self.low is not None:
            return f"{'>=' if self.low_inclusive else '>'} {_fmt(self.low)}"
        if self.high is not None:
            return f"{'<=' if self.high_inclusive else '<'} {_fmt(self.high)}"
        return "any number"

    def parse(self, value: Any, owner: str = "") -> Any:
        """Return ``value`` converted and validated, or raise :class:`ParamError`."""
        label = f"{owner}.{self.name}" if owner else self.name
        if self.kind == "choice":
            text = str(value).strip().lower()
            if text not in self.choices:
                raise ParamError(f"{label} must be {self.describe_range()}, not {value!r}")
            return text
        if self.kind == "axis":
            try:
                return AxisOverrides.parse(value)
            except ParamError:
                raise ParamError(f"{label} must be {self.describe_range()}, not {value!r}") from None
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            raise ParamError(f"{label} must be a number {self.describe_range()}, not {value!r}") from None
        if not math.isfinite(number):
            raise ParamError(f"{label} must be a finite number {self.describe_range()}, not {value!r}")
        if self.kind == "int":
            if number != int(number):
                raise ParamError(f"{label} must be a whole number, not {value!r}")
            number = int(number)
        if not self._in_range(number):
            raise ParamError(f"{label} must be {self.describe_range()}, not {_fmt(number)}")
        return number

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (x == self.low and not self.low_inclusive)):
            return False
        if self.high is not None and (x > self.high or (x == self.high and not self.high_inclusive)):
            return False
        return True


def _fmt(x: float) -> str:
    return f"{x:g}"
