"""The help screen (``?``): every key the app answers to, by where it works."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

#: A section of the help: its title and (keys, what they do) rows.
HelpSection = tuple[str, Sequence[tuple[str, str]]]


class HelpScreen(ModalScreen[None]):
    """A modal table of key bindings; Escape, q or ? closes it."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def __init__(self, sections: Sequence[HelpSection]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Text("tui-quantreport: keys", style="bold"), id="help-title")
            for title, rows in self.sections:
                table = Table.grid(padding=(0, 2))
                table.add_column(style="bold #e5a84b", no_wrap=True, min_width=14)
                table.add_column()
                for keys, description in rows:
                    table.add_row(keys, description)
                yield Static(Text(title, style="bold underline"), classes="help-section-title")
                yield Static(table, classes="help-section")
            yield Static(Text("Escape closes this screen.", style="dim"), id="help-footer")
