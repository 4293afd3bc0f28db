"""The sidebar: detectors on and off, their parameters, and the calibration settings.

Everything here is read from the engine's detector registry (each detector's
title, glyph, description and :class:`Param` list), so a detector added to the
engine appears with its parameters without a change to this file. It reacts to
the main screen's ``detectors``, ``settings`` (which are ticked) and ``report``
(which parameters need a new calibration).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.reactive import var
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Label, Static

from tui_quantreport.engine.defaults import MIN_GAIN_DB
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Report
from tui_quantreport.tui.badges import badge
from tui_quantreport.tui.messages import CalibrateRequested, DetectorToggled
from tui_quantreport.tui.model_session import DetectorInfo
from tui_quantreport.tui.panes.choice_field import ChoiceField
from tui_quantreport.tui.panes.marked_checkbox import MarkedCheckbox
from tui_quantreport.tui.panes.param_field import APP_OWNER, ParamField

if TYPE_CHECKING:
    from tui_quantreport.engine.settings import Settings

#: The app's own settings, validated like detector parameters.
CH_AXIS = Param(
    "ch_axis",
    None,
    "channel axis override (auto: decided per tensor from its module, producer and consumer)",
    kind="axis",
    observed=True,
)
BATCHES = Param("batches", None, "calibrate on at most this many batches (empty: all of them)", kind="int", low=1)
#: The measured-severity threshold: re-judges the kept measurement, never measures again.
MIN_GAIN = Param(
    "min_gain_db",
    MIN_GAIN_DB,
    "a finding whose advice gains less than this many dB of measured SQNR is minor: shown, not badged",
    kind="float",
    low=0.0,
)

#: What the target field says under it.
TARGET_HELP = "where the plan runs: it uses only what that target runs, measured the way it runs it"

DETECTORS_STALE = "No data yet for {names} (enabled since the last calibration): press c to calibrate."


class DetectorSidebar(VerticalScroll):
    """Checkboxes for the detectors, inputs for their parameters, and the Calibrate action."""

    detectors: var[Sequence[DetectorInfo]] = var(tuple)
    settings: var[Settings | None] = var(None, always_update=True)
    report: var[Report | None] = var(None, always_update=True)
    max_batches: var[int | None] = var(None)
    min_gain_db = var(MIN_GAIN.default)
    #: The deployment target, and the registry's targets to choose from (plain names).
    target = var("")
    target_names: var[Sequence[str]] = var(tuple)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._titles: dict[str, str] = {}
        self._populated = False

    def compose(self) -> ComposeResult:
        yield Static("Loading detectors…", classes="sidebar-note")

    def watch_settings(self, settings: Settings | None) -> None:
        if settings is None or not self.detectors:
            return
        if not self._populated:
            self.populate(self.detectors, settings, self.max_batches)
        else:
            self.show_enabled(settings.enabled)
            self.show_values(settings)

    def watch_min_gain_db(self, value: float) -> None:
        self._show_value("", MIN_GAIN.name, value)

    def watch_target(self, value: str) -> None:
        self._show_value("", "target", value)

    def watch_max_batches(self, value: int | None) -> None:
        self._show_value("", BATCHES.name, value)

    def watch_report(self, report: Report | None) -> None:
        if report is not None and self._populated:
            self.show_stale(report.stale_params)

    def populate(self, detectors: Sequence[DetectorInfo], settings: Settings, max_batches: int | None) -> None:
        """Fill the sidebar from the registry's ``detectors`` and the current engine ``settings``."""
        self._populated = True
        self.remove_children()
        widgets: list[Widget] = [Label("Detectors", classes="section-title")]
        for index, detector in enumerate(detectors):
            enabled = detector.name in settings.enabled
            box = MarkedCheckbox(
                Content.assemble(badge(detector.glyph, index), " ", detector.title),
                value=enabled,
                id=f"detector-{detector.name}",
            )
            box.tooltip = f"{detector.title}: {detector.description}"
            fields = [self._field(detector.name, p, settings.params[detector.name][p.name]) for p in detector.params]
            group = Vertical(*fields, id=f"params-{detector.name}", classes="param-group")
            group.display = enabled
            widgets += [box, group]
        self._titles = {detector.name: detector.title for detector in detectors}
        note = Static("", id="detectors-stale", classes="sidebar-note -stale")
        note.display = False
        widgets += [
            note,
            *self._target_widgets(),
            Label("Measured error", classes="section-title"),
            ParamField("", MIN_GAIN, self.min_gain_db),
            Label("Calibration", classes="section-title"),
            ParamField("", CH_AXIS, settings.ch_axis),
            ParamField("", BATCHES, max_batches, blank="all"),
            Button("Calibrate  (c)", id="calibrate", variant="primary"),
        ]
        self.mount_all(widgets)

    def _target_widgets(self) -> list[Widget]:
        """The deployment target's section (none before the registry's names are known)."""
        if not self.target_names:
            return []
        param = Param(
            "target", self.target or self.target_names[0], TARGET_HELP, kind="choice", choices=tuple(self.target_names)
        )
        return [Label("Deployment", classes="section-title"), ChoiceField("", param, self.target)]

    @staticmethod
    def _field(owner: str, param: Param, value: Any) -> ParamField | ChoiceField:
        if param.kind == "choice":
            return ChoiceField(owner, param, value)
        return ParamField(owner, param, value)

    def show_enabled(self, enabled: Collection[str]) -> None:
        """Tick exactly the ``enabled`` detectors (after a change from the command palette)."""
        for box in self.query(Checkbox):
            name = (box.id or "").removeprefix("detector-")
            if box.value != (name in enabled):
                box.value = name in enabled

    def show_values(self, settings: Settings) -> None:
        """Show the values of ``settings`` in their fields (after a reset of the saved settings)."""
        for detector in self.detectors:
            for param in detector.params:
                self._show_value(detector.name, param.name, settings.params[detector.name][param.name])
        self._show_value("", CH_AXIS.name, settings.ch_axis)

    def _show_value(self, owner: str, name: str, value: Any) -> None:
        for field in self.query(f"#field-{owner or APP_OWNER}-{name}"):
            if isinstance(field, (ParamField, ChoiceField)):
                field.show_value(value)

    def show_stale(self, stale: Collection[str]) -> None:
        """Mark the parameters whose values need a new calibration (``Report.stale_params``)."""
        for field in self.query(".param-field"):
            if isinstance(field, (ParamField, ChoiceField)):
                key = f"{field.owner}.{field.param.name}" if field.owner else field.param.name
                field.set_stale(key in stale)
        missing = [title for name, title in self._titles.items() if name in stale]
        for note in self.query("#detectors-stale").results(Static):
            note.update(Content(DETECTORS_STALE.format(names=", ".join(missing))))
            note.display = bool(missing)

    @on(Checkbox.Changed)
    def _toggled(self, event: Checkbox.Changed) -> None:
        event.stop()
        name = (event.checkbox.id or "").removeprefix("detector-")
        for group in self.query(f"#params-{name}"):
            group.display = event.value
        self.post_message(DetectorToggled(name, event.value))

    @on(Button.Pressed, "#calibrate")
    def _calibrate(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(CalibrateRequested())
