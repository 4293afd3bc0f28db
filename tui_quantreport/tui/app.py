"""The tui-quantreport app: starts loading the model, then shows the main screen.

The state and the keys live in :class:`~.main_screen.MainScreen`; this class
holds what is app-wide (the stylesheet, the command palette's provider) and
starts building the model as soon as it is constructed, so that importing
torch overlaps Textual's own start-up. This module imports no torch: the first
frame is painted while the loader imports it.
"""

from __future__ import annotations

from argparse import Namespace
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.reactive import Reactive

from tui_quantreport.engine.escape import printable
from tui_quantreport.engine.report import Report
from tui_quantreport.tui import heap, user_settings
from tui_quantreport.tui.commands import QuantReportCommands
from tui_quantreport.tui.main_screen import PROBE_BATCHES, MainScreen, default_export_path
from tui_quantreport.tui.model_session import ModelSession

if TYPE_CHECKING:
    from tui_quantreport.engine.settings import Settings

__all__ = ["QuantReportApp", "default_export_path"]


class QuantReportApp(App[None]):
    """Module-by-module quantization advice for one PyTorch model."""

    TITLE = "tui-quantreport"

    #: The header's text (the plan's SQNR, its size, its counts). Textual's own ``sub_title``
    #: repaints the whole screen on every change (~25-40 ms with a 2,000-module tree, on each
    #: toggle twice); the header's title, the one widget showing it, repaints itself.
    sub_title: Reactive[str] = Reactive("", compute=False, repaint=False)

    def validate_title(self, title: str) -> str:
        """The window title is written to the terminal: never an escape sequence from a name."""
        return printable(str(title))

    def validate_sub_title(self, sub_title: str) -> str:
        return printable(str(sub_title))

    def notify(self, message: str, *, title: str = "", **options: Any) -> None:  # type: ignore[override]
        """Every toast is printable: names from a model or a file cannot move the terminal."""
        message = "\n".join(printable(line) for line in str(message).split("\n"))
        super().notify(message, title=printable(str(title)), **options)

    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {QuantReportCommands}

    def __init__(self, spec: str, options: Namespace | None = None) -> None:
        """``spec`` names the model (see the engine's spec forms); ``options`` are the command line's."""
        super().__init__()
        self.spec = spec
        self.options = options
        #: Set when the app exits on a bad command-line option: the line the CLI prints.
        self.error_line = ""
        # Start importing torch and building the model now, in a background thread, so that the
        # work overlaps Textual's own start-up; the main screen's loader worker collects the result.
        self._loading = ModelSession.load_in_background(spec, options)
        saved, _ = user_settings.load()
        if saved.theme in self.available_themes:
            self.theme = saved.theme

    def on_unmount(self) -> None:
        heap.unsettled()  # what the session held is the collector's again (a test runs many apps)

    def get_default_screen(self) -> MainScreen:
        max_batches = getattr(self.options, "batches", None)
        probes = getattr(self.options, "probe_batches", None)
        plan = None
        if getattr(self.options, "plan", None):
            from tui_quantreport.engine import read_plan_file
            from tui_quantreport.engine.errors import UserError

            try:
                plan = read_plan_file(self.options.plan)  # type: ignore[union-attr]
            except UserError as exc:  # the command line checked it first: changed since
                self.call_later(self.notify, str(exc), title="Plan not loaded", severity="error", markup=False)
        return MainScreen(self.spec, self._loading, max_batches, PROBE_BATCHES if probes is None else probes, plan)

    @property
    def main(self) -> MainScreen:
        """The main screen, which owns the report state (the bottom of the screen stack)."""
        screen = self.screen_stack[0]
        assert isinstance(screen, MainScreen)
        return screen

    # Read-only views of the main screen's state, for hooks and tests.

    @property
    def report(self) -> Report | None:
        return self.main.report

    @property
    def settings(self) -> Settings | None:
        return self.main.settings

    @property
    def calibrating(self) -> bool:
        return self.main.calibrating

    @property
    def max_batches(self) -> int | None:
        return self.main.max_batches

    def watch_theme(self) -> None:
        if self.screen_stack and isinstance(self.screen_stack[0], MainScreen):
            self.main.save_user_settings()

    async def action_quit(self) -> None:
        """Quit (also ctrl+q), asking a running calibration to stop between batches."""
        self.main.cancel_work()
        self.exit()
