"""The scheme picker (``p``): choose how the selected module (or subtree) is quantized, or float."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from tui_quantreport.tui.panes.sqnr_panel import FLOAT, sqnr_text


class SchemePicker(ModalScreen[str | None]):
    """An option per scheme with the module's local SQNR under it; dismisses with the scheme."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        target: str,
        schemes: Sequence[str],
        local: Mapping[str, Any] | None,
        current: str,
        refused: Mapping[str, str] | None = None,
    ) -> None:
        """``refused`` maps a scheme that cannot apply here to why: shown, and not selectable."""
        super().__init__()
        self.target = target
        self.schemes = [*schemes, FLOAT]
        self.local = local or {}
        self.current = current
        self.refused = dict(refused or {})

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Static(Content.assemble(("Scheme for ", "bold"), (self.target, "bold $accent")), id="picker-title")
            options = []
            for scheme in self.schemes:
                why = self.refused.get(scheme)
                if why is not None:
                    options.append(
                        Option(
                            Content.assemble(f"{scheme:<20} ", (f"cannot apply: {why}", "dim")),
                            id=scheme,
                            disabled=True,
                        )
                    )
                    continue
                measured = "keep in float" if scheme == FLOAT else sqnr_text(self.local.get(scheme))
                mark = "  ◀ now" if scheme == self.current else ""
                options.append(Option(Content.assemble(f"{scheme:<20} ", (measured, "dim"), mark), id=scheme))
            yield OptionList(*options, id="picker-options")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.current in self.schemes:
            options.highlighted = self.schemes.index(self.current)
        self.set_focus(options)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
