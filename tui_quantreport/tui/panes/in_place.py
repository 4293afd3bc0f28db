"""A Static's new content without a screen-wide layout where its size stays the same.

``Static.update`` asks for a layout of the whole screen by default (the content may change the
widget's height), and a layout repaints every widget: ~25-60 ms on a 120x40 screen with a
2,000-module tree, taken from the UI thread while a worker runs the model. A pane whose width
is set by its container and whose new content wraps to the same number of lines moves nothing:
only its own region is repainted.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.visual import VisualType
from textual.widgets import Static


def size_may_change(widget: Static, before: Size) -> bool:
    """Whether ``widget``, ``before`` in size and since given new content, needs a layout: its
    width set by its content (``auto``, or a fraction a layout may take as auto), not laid out
    yet, or its new content as wrapped at its width of another height (a height clamped by
    ``max-height`` included: laid out). No width in the styles fills the container (Textual's
    default)."""
    width, height = before
    rule = widget.styles.width
    if not width or (rule is not None and (rule.is_auto or rule.is_fraction)):
        return True
    # Textual measures a Static the same way (Widget.get_content_height: the styles as the rules).
    return widget.visual.get_height(widget.styles, width) != height  # type: ignore[arg-type]


def update_in_place(widget: Static, content: VisualType) -> None:
    """``widget.update(content)``, laying out the screen only where :func:`size_may_change`.
    (``Static.update`` itself, so a subclass's ``update`` may call this.)"""
    before = widget.content_size
    Static.update(widget, content, layout=False)
    if size_may_change(widget, before):
        widget.refresh(layout=True)
