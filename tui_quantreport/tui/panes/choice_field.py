"""A parameter with a fixed set of values (the backend, say), as a select box."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual.widgets import Label, Select, Static

from tui_quantreport.engine.params import Param
from tui_quantreport.tui.messages import ParamChanged
from tui_quantreport.tui.panes.param_field import (
    APP_OWNER,
    cli_spelling,
    field_id,
    human_label,
)


class _Select(Select):
    """A Select that tolerates being torn down while it mounts.

    Textual 8.2's Select sets its initial value on mount, and the watcher then
    updates a label that is gone if the app is quitting at that moment (``q``
    right after a model loads). Nothing is on screen any more, so skip it.
    """

    def _watch_value(self, value: Any) -> None:
        try:
            super()._watch_value(value)
        except NoMatches:
            pass


class ChoiceField(Vertical):
    """A labelled select for a ``choice`` :class:`Param`; a change is posted as ``ParamChanged``."""

    BINDINGS = [Binding("escape", "screen.focus_tree", "Back to the tree")]

    def __init__(self, owner: str, param: Param, value: Any) -> None:
        super().__init__(id=f"field-{owner or APP_OWNER}-{param.name}", classes="param-field")
        self.owner = owner
        self.param = param
        self.value = value

    def compose(self) -> ComposeResult:
        yield Label(human_label(self.owner, self.param), classes="param-label")
        select = _Select(
            [(choice, choice) for choice in self.param.choices],
            value=self.value,
            allow_blank=False,
            compact=True,
            id=field_id(self.owner, self.param.name),
        )
        select.tooltip = f"{self.param.help}. Command line: {cli_spelling(self.owner, self.param)}"
        yield select
        yield Static(
            Content.styled(f"{self.param.help} ({cli_spelling(self.owner, self.param)})", "dim"), classes="param-help"
        )

    @on(Select.Changed)
    def _changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != self.value and event.value is not Select.NULL:
            self.value = event.value
            self.post_message(ParamChanged(self.owner, self.param.name, event.value))

    def show_value(self, value: Any) -> None:
        """Show ``value`` set elsewhere (a reset, the palette): no change is posted back."""
        if value != self.value:
            self.value = value
            for select in self.query(_Select):
                select.value = value

    def set_stale(self, stale: bool) -> None:
        """Choices never need new data; kept so the sidebar can treat every field alike."""
