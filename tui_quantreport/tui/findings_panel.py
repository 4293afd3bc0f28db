"""The recommendations for one module: each enabled detector's verdict, reason and deciding numbers."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from tui_quantreport.engine.report import Finding, Report
from tui_quantreport.tui.badges import badge
from tui_quantreport.tui.formatting import STATUS_WORDS


class FindingsPanel(Static):
    """Every enabled detector's :class:`Finding` on the selected module, in registry order."""

    def show_module(self, report: Report, fqn: str, detector_index: Mapping[str, int]) -> None:
        """Render the findings of module ``fqn`` from ``report``."""
        findings = report.findings_for(fqn)
        if not findings:
            module = report.modules.get(fqn)
            kind = module.class_name if module is not None else "module"
            enabled = ", ".join(d.title for d in report.detectors.values()) or "none"
            self.update(
                Text(
                    f"No enabled detector judges a {kind} (enabled: {enabled}). Move to a Linear, "
                    "a Conv or a leaf module, or press n for the next recommendation.",
                    style="dim",
                )
            )
            return
        blocks = [self._finding(f, report, detector_index.get(f.detector, 0)) for f in findings]
        self.update(Group(*blocks))

    @staticmethod
    def _finding(finding: Finding, report: Report, index: int) -> Text:
        detector = report.detectors[finding.detector]
        word, style = STATUS_WORDS[finding.status]
        text = Text.assemble(badge(detector.glyph, index), " ", (detector.title, "bold"), "  ", (word, style), "\n")
        text.append(finding.headline, style="bold" if finding.recommended else "")
        text.append("\n")
        text.append(finding.reason)
        text.append("\n")
        for evidence in finding.evidence:
            marker = "▶" if evidence.decides else "·"
            text.append(f"  {marker} {evidence.label} = ", style="bold" if evidence.decides else "")
            text.append(evidence.shown, style="bold" if evidence.decides else "")
            text.append(f"   ({evidence.threshold})", style="dim")
            text.append("\n")
        return text
