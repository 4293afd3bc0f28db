"""The command palette's provider (``ctrl+p``): the app's actions, detector toggles, and jumps.

Detector toggles come from the registry, and "Go to" entries from the current
report's recommendations, so both follow the model and the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

if TYPE_CHECKING:
    from tui_quantreport.tui.app import QuantReportApp

#: A palette entry: its name, a line of help, and what it runs.
Command = tuple[str, str, Callable[[], object]]


class QuantReportCommands(Provider):
    """Offers the app's actions in the command palette."""

    def commands(self) -> list[Command]:
        """Every command available now, actions first."""
        app = cast("QuantReportApp", self.app)
        found: list[Command] = [
            ("Calibrate", "Run the calibration batches through the model (c)", app.action_calibrate),
            ("Cancel calibration", "Stop between batches and keep the previous results (Esc)",
             app.action_cancel_calibration),
            ("Export report", "Write the report as JSON or Markdown to a file (e)", app.action_export),
            ("Next finding", "Move to the next module with a recommendation (n)", app.action_next_finding),
            ("Previous finding", "Move to the previous module with a recommendation (N)",
             app.action_previous_finding),
            ("Filter modules", "Filter the module tree by name or class (/)", app.action_filter),
            ("Edit the tolerance", "The dynamic-vs-static tolerance in the sidebar (t)", app.action_focus_tolerance),
            ("Show or hide observers", "Observers and fake quantizers of a prepared model (o)",
             app.action_toggle_helpers),
            ("Show or hide the sidebar", "Detectors, parameters and calibration settings (b)",
             app.action_toggle_sidebar),
            ("Help", "Every key binding (?)", app.action_help),
            ("Quit", "Leave the app, cancelling any calibration (q)", app.action_quit),
        ]
        enabled = app.settings.enabled if app.settings is not None else ()
        for detector in app.detectors:
            verb = "Disable" if detector.name in enabled else "Enable"
            found.append(
                (f"{verb} detector: {detector.title}", detector.description,
                 partial(app.set_detector_enabled, detector.name, detector.name not in enabled))
            )
        if app.report is not None:
            advice: dict[str, list[str]] = {}
            for detector in app.report.detectors.values():
                for fqn in detector.recommended:
                    advice.setdefault(fqn, []).append(detector.title)
            for fqn in app.report.recommended_modules():
                help_text = "Recommended by: " + ", ".join(advice[fqn])
                found.append((f"Go to {fqn}", help_text, partial(app.go_to_module, fqn)))
        return found

    async def discover(self) -> Hits:
        for name, help_text, callback in self.commands():
            if not name.startswith("Go to"):
                yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, highlight(matcher, name), callback, help=help_text)


def highlight(matcher: Matcher, name: str) -> Content:
    """``name`` with the matched letters highlighted, shown literally.

    ``Matcher.highlight`` parses its candidate as markup, and a module name may
    look like markup (``[bold red]boom[/]``, ``[/link]``): this marks the same
    letters on plain content.
    """
    content = Content(name)
    score, offsets = matcher.fuzzy_search.match(matcher.query, name)
    if not score:
        return content
    style = matcher.match_style
    for offset in offsets:
        if not name[offset].isspace():
            content = content.stylize(style, offset, offset + 1)
    return content
