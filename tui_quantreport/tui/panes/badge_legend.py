"""The legend under the tree: which badge belongs to which detector."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.reactive import var
from textual.widgets import Static

from tui_quantreport.engine.report import Report
from tui_quantreport.tui.badges import badge
from tui_quantreport.tui.model_session import DetectorInfo


class BadgeLegend(Static):
    """One line per detector: its badge and title; disabled detectors are shown struck out.

    Reacts to ``detectors`` (the registry, in order) and ``report`` (which are enabled).
    """

    detectors: var[Sequence[DetectorInfo]] = var(tuple)
    report: var[Report | None] = var(None, always_update=True)

    def watch_detectors(self) -> None:
        self._redraw()

    def watch_report(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        enabled = self.report.detectors if self.report is not None else ()
        lines = [
            Content.assemble(
                badge(detector.glyph, index),
                (f" {detector.title}", "" if detector.name in enabled else "dim strike"),
            )
            for index, detector in enumerate(self.detectors)
        ]
        self.update(Content("\n").join(lines))
