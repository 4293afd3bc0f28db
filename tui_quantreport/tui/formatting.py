"""How numbers, shapes and verdicts are written in the app (formatting only, no statistics)."""

from __future__ import annotations

from collections.abc import Sequence

from tui_quantreport.engine.report import Status

#: A verdict in words, and the style it is written in (theme variables).
STATUS_WORDS: dict[Status, tuple[str, str]] = {
    Status.RECOMMEND: ("change recommended", "bold $warning"),
    Status.OK: ("no change needed", "$success"),
    Status.NOT_OBSERVED: ("not observed", "dim"),
    Status.NOT_APPLICABLE: ("not applicable", "dim"),
    Status.INFO: ("information, no change applies", "$primary"),
}

SHAPES_SHOWN = 3


def number(value: float | int | None) -> str:
    """A number in at most four significant digits; ``undefined`` for None."""
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def shapes(seen: Sequence[Sequence[int]]) -> str:
    """Tensor shapes seen, e.g. ``(8, 3, 16, 16)``; a count of the rest when there are many."""
    if not seen:
        return "–"
    shown = ", ".join("(" + ", ".join(str(d) for d in shape) + ")" for shape in seen[:SHAPES_SHOWN])
    rest = len(seen) - SHAPES_SHOWN
    return shown + (f" +{rest} more" if rest > 0 else "")
