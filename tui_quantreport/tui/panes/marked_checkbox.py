"""A checkbox whose state reads without colour: ``▐X▌`` when ticked, ``▐ ▌`` when not.

Textual's checkbox draws the same ``X`` in both states and tells them apart by colour only,
which a monochrome terminal, a screen reader's text or a colour-blind user cannot see.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class MarkedCheckbox(Checkbox):
    """A :class:`~textual.widgets.Checkbox` with a mark only when ticked."""

    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "X" if self.value else " "
        return super()._button
