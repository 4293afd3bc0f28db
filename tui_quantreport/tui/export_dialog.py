"""The export dialog (``e``): a path and a format; the report is written atomically.

Beside JSON and Markdown it offers the plan's configuration for torchao, PT2E and
torch.ao (issue 8): the dialog then dismisses with a :class:`ConfigRequest` and
the main screen exports in a worker (the recommended plan needs a measurement).

A failed write (missing directory, no permission, a directory in the way)
leaves no partial file (the engine's :func:`write_atomic` sees to that) and the
dialog stays open with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.export import render, write_atomic
from tui_quantreport.engine.report import Report

#: The formats offered, with their file suffix, in the order shown.
EXPORT_FORMATS: dict[str, tuple[str, str]] = {"json": ("JSON", ".json"), "markdown": ("Markdown", ".md")}
#: Configuration targets (engine/apply), offered after the report formats.
CONFIG_TARGETS: dict[str, tuple[str, str]] = {
    "torchao": ("torchao config (.py + .json + .safetensors)", ".py"),
    "pt2e": ("PT2E snippet (.py)", ".py"),
    "qconfig_mapping": ("torch.ao QConfigMapping (.py)", ".py"),
}


@dataclass(frozen=True)
class ConfigRequest:
    """Export the plan for ``target`` to ``path`` (the main screen does it in a worker)."""

    target: str
    path: str


#: File suffixes that decide the format whatever the radio buttons say.
FORMAT_OF_SUFFIX = {".json": "json", ".md": "markdown", ".markdown": "markdown"}


class ExportDialog(ModalScreen["str | ConfigRequest | None"]):
    """Dismisses with the written path, a :class:`ConfigRequest`, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, report: Report, path: str, *, configs: bool = False) -> None:
        super().__init__()
        self.configs = configs
        self.report = report
        self.default_path = path
        self.format = "json"

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static(Text("Export the report, or the plan as a configuration" if self.configs else "Export the report", style="bold"), id="export-title")
            yield Label("Format")
            with RadioSet(id="export-format"):
                for index, (fmt, (title, _)) in enumerate(EXPORT_FORMATS.items()):
                    yield RadioButton(title, value=index == 0, id=f"format-{fmt}")
                if self.configs:
                    for target, (title, _) in CONFIG_TARGETS.items():
                        yield RadioButton(title, id=f"format-{target}")
            yield Label("Path")
            yield Input(self.default_path, id="export-path", select_on_focus=False)
            yield Static("", id="export-error")
            with Horizontal(id="export-buttons"):
                yield Button("Export", variant="primary", id="export")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#export-error").display = False
        self.query_one("#export-path", Input).focus()

    @on(RadioSet.Changed)
    def _format_chosen(self, event: RadioSet.Changed) -> None:
        self.format = (event.pressed.id or "format-json").removeprefix("format-")
        path_input = self.query_one("#export-path", Input)
        path = Path(path_input.value)
        if self.format in CONFIG_TARGETS:
            stem = path.name.split(".")[0] or "model"
            path_input.value = str(path.with_name(f"{stem}.{self.format}{CONFIG_TARGETS[self.format][1]}"))
        elif path.suffix in {suffix for _, suffix in EXPORT_FORMATS.values()}:
            path_input.value = str(path.with_suffix(EXPORT_FORMATS[self.format][1]))

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export")
    def action_export(self) -> None:
        """Render the report in the chosen format and write it; on failure, say why and stay open."""
        path = self.query_one("#export-path", Input).value.strip()
        if not path:
            self._error("Give a path to write the report to.")
            return
        if self.format in CONFIG_TARGETS:
            self.dismiss(ConfigRequest(self.format, path))
            return
        # A typed suffix wins over the radio buttons: "report.md" is written as Markdown.
        fmt = FORMAT_OF_SUFFIX.get(Path(path).suffix.lower(), self.format)
        try:
            written = write_atomic(path, render(self.report, fmt))
        except UserError as exc:
            self._error(str(exc))
            return
        self.dismiss(str(written))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def _error(self, text: str) -> None:
        error = self.query_one("#export-error", Static)
        error.update(Text(text))
        error.display = True
