"""The tree filter box: shown by ``/``, filters the tree by module name or class as you type."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.widgets import Input

from tui_quantreport.tui.messages import FilterChanged, FilterClosed
from tui_quantreport.tui.panes.ordered_input import OrderedInput


class FilterInput(OrderedInput):
    """An input that reports its text as a :class:`FilterChanged`; Escape clears it, Enter keeps it."""

    BINDINGS = [Binding("escape", "close(True)", "Clear filter")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="filter: name or class  (Enter keeps, Esc clears)", id=id)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(FilterChanged(event.value.strip()))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(FilterClosed(cleared=False))

    def action_close(self, cleared: bool) -> None:
        """Leave the filter box, clearing the filter when ``cleared``."""
        if cleared:
            self.value = ""
        self.post_message(FilterClosed(cleared=cleared))
