"""The calibration strip above the footer: what calibration did last, and its progress while it runs.

While something runs, the strip is one line (the text is cut with an ellipsis, never wrapped)
and ends with "Esc cancels", which is never cut; at narrow widths the bar is shorter and its
percentage is hidden (the count beside it says the same).
"""

from __future__ import annotations

from time import monotonic

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import ProgressBar, Static

#: How often the elapsed time is redrawn while calibrating (seconds).
TICK = 0.5


#: The last words of the strip while something runs (every run in the strip can be cancelled).
CANCEL_HINT = "Esc cancels"


class CalibrationBar(Horizontal):
    """A status line; while calibrating, a progress bar of batches done / total and the elapsed time."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.running = False
        self.done = 0
        self.total: int | None = None
        self._started = 0.0
        self._timer: Timer | None = None
        self.unit = "batches"
        self.eta: float | None = None  # seconds left, when known
        self._eta_at = 0.0

    def compose(self) -> ComposeResult:
        yield Static("Loading the model…", id="calibration-status")
        yield ProgressBar(show_eta=False, id="calibration-progress")
        yield Static("", id="calibration-count")
        yield Static(CANCEL_HINT, id="calibration-hint")

    def start(self, text: str, unit: str = "batches") -> None:
        """Show the progress bar at zero with ``text`` beside it; ``unit`` names what is counted."""
        self.running, self.done, self.total, self.eta = True, 0, None, None
        self.unit = unit
        self._started = monotonic()
        self.add_class("-running")
        self._status(text, "")
        self.query_one(ProgressBar).update(total=None, progress=0)
        self._count()
        self._timer = self.set_interval(TICK, self._count)

    def advance(self, done: int, total: int | None, eta: float | None = None) -> None:
        """``done`` batches of ``total`` (None: unknown) have run; ``eta``: seconds left, when known."""
        self.done, self.total = done, total
        self.eta, self._eta_at = eta, monotonic()
        self.query_one(ProgressBar).update(total=total, progress=done)
        self._count()

    def stop(self, text: str, kind: str = "") -> None:
        """Hide the progress bar and show ``text``; ``kind`` is "", "error" or "warning"."""
        self.running = False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.remove_class("-running")
        self._status(text, kind)

    def say(self, text: str, kind: str = "") -> None:
        """Show ``text`` (when not calibrating, or beside the progress bar)."""
        self._status(text, kind)

    def _status(self, text: str, kind: str) -> None:
        status = self.query_one("#calibration-status", Static)
        status.update(Text(text))
        status.set_class(kind == "error", "-error")
        status.set_class(kind == "warning", "-warning")

    def _count(self) -> None:
        of = f"/{self.total:,}" if self.total is not None else ""
        elapsed = monotonic() - self._started
        left = ""
        if self.eta is not None:
            remaining = max(0.0, self.eta - (monotonic() - self._eta_at))
            left = f" · about {remaining:.0f} s left" if remaining >= 1 else " · under 1 s left"
        self.query_one("#calibration-count", Static).update(f"{self.done:,}{of} {self.unit} · {elapsed:.1f} s{left}")
