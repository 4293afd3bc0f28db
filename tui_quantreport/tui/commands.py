"""The command palette's provider (``ctrl+p``): every key's action, detector toggles, and jumps.

The actions are read from the main screen's bindings (the palette shows each
binding's tooltip and its key), detector toggles from the registry, and "Go to"
entries from the current report's recommendations, so all three follow the
bindings, the engine and the model without a change here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from tui_quantreport.engine.escape import printable

if TYPE_CHECKING:
    from tui_quantreport.tui.app import QuantReportApp

#: A palette entry: its name, a line of help, and what it runs.
Command = tuple[str, str, Callable[[], object]]


class QuantReportCommands(Provider):
    """Offers the app's actions in the command palette."""

    def commands(self) -> list[Command]:
        """Every command available now, actions first."""
        app = cast("QuantReportApp", self.app)
        main = app.main
        found: list[Command] = []
        seen: set[str] = set()
        for binding in main.BINDINGS:
            if not isinstance(binding, Binding) or binding.action in seen:
                continue
            seen.add(binding.action)
            if main.check_action(binding.action, ()) is not True:
                continue  # not available now (Cancel without a calibration, say)
            name = binding.tooltip or binding.description
            found.append(
                (
                    name,
                    f"{binding.description} ({app.get_key_display(binding)})",
                    partial(main.run_action, binding.action),
                )
            )
        found.append(
            (
                "Reset saved settings",
                "Forget the saved theme, detectors and parameters; back to the defaults",
                main.reset_user_settings,
            )
        )
        if main.loaded:
            found.append(
                (
                    "Load a plan file",
                    "Make a saved plan (.plan.json) the plan on screen: exports, stats and verify use it",
                    main.action_load_plan,
                )
            )
        found.append(("Copy the selected module's findings", "Its verdicts and reasons, as text", main.copy_findings))
        enabled = main.settings.enabled if main.settings is not None else ()
        for detector in main.detectors:
            verb = "Disable" if detector.name in enabled else "Enable"
            found.append(
                (
                    f"{verb} detector: {detector.title}",
                    detector.description,
                    partial(main.set_detector_enabled, detector.name, detector.name not in enabled),
                )
            )
        report = main.report
        if report is not None:
            advice: dict[str, list[str]] = {}
            for detector_report in report.detectors.values():
                for fqn in detector_report.recommended:
                    advice.setdefault(fqn, []).append(detector_report.title)
            for fqn in report.recommended_modules():
                help_text = "Recommended by: " + ", ".join(advice[fqn])
                found.append((f"Go to {printable(fqn)}", help_text, partial(main.go_to_module, fqn)))
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
