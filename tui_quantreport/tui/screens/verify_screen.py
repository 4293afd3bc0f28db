"""The verification result (``v``): the plan applied with torchao to a copy of the model,
its achieved end-to-end SQNR next to the predicted one, and the findings."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui_quantreport.engine.escape import printable


class VerifyScreen(ModalScreen[None]):
    """Shows a :class:`~tui_quantreport.engine.apply.verify.VerifyResult` as text; Esc closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("enter", "close", "Close", show=False),
    ]
    DEFAULT_CSS = """
    VerifyScreen { align: center middle; }
    #verify-box { width: 90%; max-width: 110; height: auto; max-height: 90%; border: round $accent;
                  background: $surface; padding: 0 1; }
    #verify-text { height: auto; }
    #verify-scroll { height: auto; max-height: 30; }
    """

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = printable(title)
        self.text = "\n".join(printable(line) for line in text.split("\n"))

    def compose(self) -> ComposeResult:
        with Vertical(id="verify-box"):
            yield Static(Text(self.title_text, style="bold"), id="verify-title")
            with VerticalScroll(id="verify-scroll"):
                yield Static(Text(self.text), id="verify-text")
            yield Button("Close", id="verify-close")

    @on(Button.Pressed, "#verify-close")
    def action_close(self) -> None:
        self.dismiss(None)
