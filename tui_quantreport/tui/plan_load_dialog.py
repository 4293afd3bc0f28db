"""Load a plan file into the app (the palette's "Load a plan file"): a path, Enter loads.

The dialog only reads the file's JSON; the main screen checks it against the model and adopts it
(:func:`~.model_session.adopt_plan`). A file that cannot be read or is not a plan says why, in one
line, and the dialog stays open.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.plan import read_plan_file


class PlanLoadDialog(ModalScreen[tuple[dict[str, Any], str] | None]):
    """Dismisses with (the plan's JSON, its path), or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, path: str = "") -> None:
        super().__init__()
        self.default_path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="plan-load-box"):
            yield Static(Content.styled("Load a plan file", "bold"))
            yield Static(
                Content.styled(
                    "A plan written by e (What-if plan) or by report --plan-out; it replaces the plan on "
                    "screen (u undoes).",
                    "dim",
                )
            )
            yield Label("Path")
            yield Input(self.default_path, id="plan-load-path", select_on_focus=False)
            yield Static("", id="plan-load-error")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#plan-load-error").display = False
        self.set_focus(self.query_one("#plan-load-path", Input))

    @on(Input.Submitted, "#plan-load-path")
    def _submitted(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(read_plan_file(event.value))
        except UserError as exc:
            error = self.query_one("#plan-load-error", Static)
            error.update(Content(str(exc)))
            error.display = True

    def action_cancel(self) -> None:
        self.dismiss(None)
