"""The legend under the tree: which badge belongs to which detector."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import Static

from tui_quantreport.tui.badges import badge


class BadgeLegend(Static):
    """One line per detector: its badge and title; disabled detectors are shown struck out."""

    def show_detectors(self, detectors: Sequence[Any], enabled: Collection[str]) -> None:
        """``detectors`` are the registry's classes in order; ``enabled`` their names that run."""
        text = Text()
        for index, detector in enumerate(detectors):
            if index:
                text.append("\n")
            text.append_text(badge(detector.glyph, index))
            title = Text(f" {detector.title}")
            if detector.name not in enabled:
                title.stylize("dim strike")
            text.append_text(title)
        self.update(text)
