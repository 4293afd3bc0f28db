"""One validated parameter input: a label with the valid range, an input, an inline message.

The value is checked with the engine's :meth:`Param.parse` (so the message is
the same sentence the command line prints). A bad value shows the message
under the input and the last good value stays in force; a good one is posted
as :class:`~tui_quantreport.tui.messages.ParamChanged` on Enter or when focus
leaves the input; after Enter the keyboard goes back to the module tree (so the
next ``n`` moves the tree instead of being typed into the field).
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, Label, Static

from tui_quantreport.engine.errors import ParamError
from tui_quantreport.engine.params import Param
from tui_quantreport.tui.messages import ParamChanged
from tui_quantreport.tui.panes.ordered_input import OrderedInput

#: Owner name used in widget ids for the app's own settings (not a detector's).
APP_OWNER = "app"

STALE_NOTE = "needs new data: press c to calibrate"


def field_id(owner: str, name: str) -> str:
    """The id of the input of parameter ``name`` of ``owner`` (a detector name, or "" for the app)."""
    return f"param-{owner or APP_OWNER}-{name}"


#: People's names for the parameters (the snake_case name stays the command line's spelling).
LABELS: dict[tuple[str, str], str] = {
    ("per_channel_detector", "backend"): "Backend",
    ("per_channel_detector", "weight_scheme"): "Weight scheme",
    ("dynamic_vs_static_detector", "tolerance"): "Tolerance (S)",
    ("input_weight_equalization_detector", "ratio_threshold"): "Band ratio",
    ("outlier_detector", "ratio_threshold"): "Outlier ratio threshold",
    ("outlier_detector", "reference_percentile"): "Reference percentile",
    ("outlier_detector", "fraction_batches_used_threshold"): "Batches a channel must use",
    ("", "ch_axis"): "Channel axis",
    ("", "batches"): "Calibration batches",
    ("", "min_gain_db"): "Minimum gain (dB)",
    ("", "target"): "Target",
}

#: The app's settings the command line spells otherwise (``--min-gain``, for the app and ``report``).
CLI_NAMES: dict[str, str] = {"min_gain_db": "--min-gain"}


def human_label(owner: str, param: Param) -> str:
    """What a person calls parameter ``param`` of ``owner`` ("Outlier ratio", not ``ratio_threshold``)."""
    return LABELS.get((owner, param.name)) or param.name.replace("_", " ").capitalize()


def cli_spelling(owner: str, param: Param) -> str:
    """How the command line spells the parameter: ``--param outlier_detector.ratio_threshold=…``."""
    if not owner:
        return CLI_NAMES.get(param.name) or f"--{param.name.replace('_', '-')}"
    return f"--param {owner}.{param.name}=…"


def format_value(param: Param, value: Any) -> str:
    """A parameter value as the user would type it."""
    if value is None:
        return "auto" if param.kind == "axis" else ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class ParamField(Vertical):
    """A labelled input for one :class:`Param`, validated as the user types."""

    BINDINGS = [Binding("escape", "screen.focus_tree", "Back to the tree")]

    def __init__(self, owner: str, param: Param, value: Any, *, blank: str | None = None) -> None:
        """``owner`` is the detector's name ("" for the app's settings); ``blank`` is what an empty input means."""
        super().__init__(id=f"field-{owner or APP_OWNER}-{param.name}", classes="param-field")
        self.owner = owner
        self.param = param
        self.value = value
        self.blank = blank
        self.stale = False
        self.input = OrderedInput(
            format_value(param, value),
            placeholder=blank or "",
            id=field_id(owner, param.name),
            select_on_focus=True,
            compact=True,
        )
        self.input.tooltip = (
            param.help
            + (" (⟳ changing it needs a new calibration)" if param.observed else "")
            + f". Command line: {cli_spelling(owner, param)}"
        )
        self.message = Static("", classes="param-message")

    def compose(self) -> ComposeResult:
        observed = " ⟳" if self.param.observed else ""
        yield Label(
            Content.assemble(f"{human_label(self.owner, self.param)}{observed} ", (self.param.describe_range(), "dim")),
            classes="param-label",
        )
        yield self.input
        yield self.message
        # Shown while the field has focus (see app.tcss): what it means, and its command-line name.
        yield Static(
            Content.styled(f"{self.param.help} ({cli_spelling(self.owner, self.param)})", "dim"), classes="param-help"
        )

    def parse(self, text: str) -> Any:
        """The value ``text`` stands for, or :class:`ParamError`."""
        if self.blank is not None and not text.strip():
            return None
        return self.param.parse(text, self.owner)

    @on(Input.Changed)
    def _check(self, event: Input.Changed) -> None:
        event.stop()
        try:
            self.parse(event.value)
        except ParamError as exc:
            self._say(str(exc), error=True)
        else:
            self._say("")

    @on(Input.Submitted)
    async def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.commit():
            await self.run_action("screen.focus_tree")

    @on(Input.Blurred)
    def _blurred(self, event: Input.Blurred) -> None:
        event.stop()
        self.commit()

    def commit(self) -> bool:
        """Apply the input's text if it is valid; otherwise say why and keep the last good value."""
        text = self.input.value
        try:
            value = self.parse(text)
        except ParamError as exc:
            self._say(f"{exc}; keeping {format_value(self.param, self.value) or self.blank}", error=True)
            return False
        self._say("")
        if value != self.value:
            self.value = value
            self.post_message(ParamChanged(self.owner, self.param.name, value))
        return True

    def show_value(self, value: Any) -> None:
        """Show ``value`` set elsewhere (a reset, the palette): no change is posted back."""
        if value != self.value:
            self.value = value
            self.input.value = format_value(self.param, value)
            self._say("")

    def set_stale(self, stale: bool) -> None:
        """Say whether the current value needs data the last calibration did not record."""
        self.stale = stale
        if not self.message.has_class("-error"):
            self._say("")

    def _say(self, text: str, error: bool = False) -> None:
        message = self.message
        if not text and self.stale:
            text = STALE_NOTE
        message.update(Content(text))
        message.set_class(error, "-error")
        message.set_class(not error and bool(text), "-stale")
        message.display = bool(text)
