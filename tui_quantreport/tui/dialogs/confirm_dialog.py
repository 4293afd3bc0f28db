"""A small confirmation dialog (``S``): what a long measurement will cost, before it starts.

Enter starts, Esc cancels; the buttons do the same with the mouse. The buttons never take the
keyboard, so Enter always means "start" and nothing is started by a stray key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

from tui_quantreport.engine.escape import printable


class ConfirmDialog(ModalScreen[bool]):
    """A title and plain lines of text (shown literally); dismisses with True to go ahead."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "confirm", "Start", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, lines: Sequence[str], confirm: str = "Start") -> None:
        super().__init__()
        self.title_text = printable(title)
        self.lines = tuple(printable(line) for line in lines)
        self.confirm_label = confirm

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Content.styled(self.title_text, "bold"), id="confirm-title")
            yield Static(Content("\n").join(Content(line) for line in self.lines), id="confirm-text")
            with Horizontal(id="confirm-buttons"):
                start = Button(f"{self.confirm_label}  (Enter)", variant="primary", id="confirm")
                cancel = Button("Cancel  (Esc)", id="cancel")
                start.can_focus = cancel.can_focus = False
                yield start
                yield cancel
        yield Footer(compact=True)

    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
