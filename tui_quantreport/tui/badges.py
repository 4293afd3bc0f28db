"""Detector badges: a glyph on a colour, one colour per detector in registry order.

Colours follow the registry's order, so a detector added to the engine gets
the next colour with no change here. The tree, the legend, the sidebar and the
detail view all draw badges with :func:`badge`, so a detector looks the same
everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text

#: Badge backgrounds, assigned to detectors in registry order (then reused).
BADGE_COLOURS: tuple[str, ...] = (
    "#c678dd",  # violet
    "#56b6c2",  # cyan
    "#98c379",  # green
    "#e5a84b",  # amber
    "#61afef",  # blue
    "#e06c75",  # red
    "#d19a66",  # orange
    "#abb2bf",  # grey
)


def badge_style(index: int) -> Style:
    """The style of the badge of the detector at position ``index`` of the registry."""
    return Style(color="#1e1e1e", bgcolor=BADGE_COLOURS[index % len(BADGE_COLOURS)], bold=True)


def badge(glyph: str, index: int) -> Text:
    """The glyph of a detector as a one-cell coloured chip."""
    return Text(glyph, style=badge_style(index))


def badge_row(glyphs: Sequence[tuple[str, int]]) -> Text:
    """Chips for several detectors, separated by a space: ``[P] [D]``."""
    text = Text()
    for position, (glyph, index) in enumerate(glyphs):
        if position:
            text.append(" ")
        text.append_text(badge(glyph, index))
    return text


def badge_rgb(index: int) -> tuple[int, int, int]:
    """The badge colour of detector ``index`` as an RGB triple (for plots)."""
    colour = BADGE_COLOURS[index % len(BADGE_COLOURS)].lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)
