"""The header: Textual's, with a title that repaints in place.

The title is one line across the whole width (``HeaderTitle``'s own styles: ``width: 100%``, no
wrap), so a new plan SQNR in it changes no size; Textual's header lays out the whole screen on
every change of its title (on a toggle: when the plan goes pending, and when its SQNR comes back).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.visual import VisualType
from textual.widgets import Header

# Not exported by textual.widgets; textual is pinned to 8.2 (pyproject), where it is this class.
from textual.widgets._header import HeaderTitle

from tui_quantreport.tui.panes.in_place import update_in_place


class InPlaceTitle(HeaderTitle):
    """The header's title (its styles, its place), laid out again only if its height changes."""

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        if layout:
            update_in_place(self, content)
        else:
            super().update(content, layout=False)


class AppHeader(Header):
    """Textual's header (icon, title, no clock) with :class:`InPlaceTitle` as its title."""

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            yield InPlaceTitle() if type(widget) is HeaderTitle else widget
