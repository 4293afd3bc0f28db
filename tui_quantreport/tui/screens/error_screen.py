"""The error screen: the model could not be loaded or built. Says why; q quits."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui_quantreport.engine.escape import printable

#: The exit status of the app when it quits from this screen (a user error, like the command line's).
EXIT_STATUS = 2


class ErrorScreen(Screen[None]):
    """A full screen naming the spec and the cause, in the engine's words; no traceback."""

    BINDINGS = [
        Binding("q", "quit_app", "Quit"),
        Binding("escape", "quit_app", "Quit", show=False),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = printable(title)
        self.message = "\n".join(printable(line) for line in message.split("\n"))

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="error-box"):
            yield Static(Text(self.title_text, style="bold"), id="error-title")
            yield Static(Text(self.message), id="error-message")
            yield Static(
                Text(
                    "Check the model file (build_model() and calibration_batches()) or pick a bundled "
                    "sample (tui-quantreport samples), then start again. Press q to quit.",
                    style="dim",
                ),
                id="error-hint",
            )
        yield Footer()

    def action_quit_app(self) -> None:
        self.app.exit(return_code=EXIT_STATUS)
