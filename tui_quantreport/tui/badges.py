"""Detector badges: a glyph on a colour, one colour per detector in registry order.

The colours are the theme's own variables (``$primary``, ``$success``…), so a
badge follows the theme the user picks. Colours follow the registry's order,
so a detector added to the engine gets the next colour with no change here.
Everything that draws a badge (the tree, the legend, the sidebar, the detail
view) goes through this module, so a detector looks the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.style import Style as RichStyle
from textual.color import Color
from textual.content import Content
from textual.style import Style

#: Theme variables used as badge backgrounds, assigned to detectors in registry order (then reused).
BADGE_VARIABLES: tuple[str, ...] = (
    "primary-lighten-2",
    "error-lighten-1",
    "success",
    "accent",
    "secondary-lighten-2",
    "warning-darken-2",
    "success-darken-2",
    "foreground-darken-1",
)


def badge_style(index: int) -> str:
    """The Textual style of the badge of the detector at position ``index`` of the registry."""
    return f"bold $background on ${BADGE_VARIABLES[index % len(BADGE_VARIABLES)]}"


def badge(glyph: str, index: int) -> Content:
    """The glyph of a detector as a one-cell coloured chip."""
    return Content.styled(glyph, badge_style(index))


def badge_row(glyphs: Sequence[tuple[str, int]]) -> Content:
    """Chips for several detectors, separated by a space: ``[P] [D]``."""
    parts: list[Content | str] = []
    for position, (glyph, index) in enumerate(glyphs):
        if position:
            parts.append(" ")
        parts.append(badge(glyph, index))
    return Content.assemble(*parts)


def rich_badge_style(index: int, variables: Mapping[str, str]) -> RichStyle:
    """The badge style resolved against the theme's ``variables`` (for Rich text, e.g. tree labels)."""
    return Style.parse(badge_style(index), dict(variables)).rich_style


def badge_rgb(index: int, variables: Mapping[str, str]) -> tuple[int, int, int]:
    """The badge colour of detector ``index`` in the current theme, as an RGB triple."""
    return theme_rgb(BADGE_VARIABLES[index % len(BADGE_VARIABLES)], variables)


def theme_rgb(name: str, variables: Mapping[str, str]) -> tuple[int, int, int]:
    """Theme variable ``name`` (without ``$``) as an RGB triple."""
    return Color.parse(variables[name]).rgb
