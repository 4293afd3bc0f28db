"""The recommendations for one module: each enabled detector's verdict, reason and deciding numbers."""

from __future__ import annotations

from collections.abc import Mapping

from textual.content import Content
from textual.widgets import Static

from tui_quantreport.engine import signed_db
from tui_quantreport.engine.report import (
    NOT_CALIBRATED,
    Finding,
    Report,
    verdict_caveat,
)
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
                Content.styled(
                    f"No enabled detector judges a {kind} (enabled: {enabled}). Move to a Linear, "
                    "a Conv or a leaf module, or press n for the next recommendation.",
                    "dim",
                )
            )
            return
        blocks = [self._finding(f, report, detector_index.get(f.detector, 0)) for f in findings]
        self.update(Content("\n").join(blocks))

    @staticmethod
    def _finding(finding: Finding, report: Report, index: int) -> Content:
        detector = report.detectors[finding.detector]
        word, style = STATUS_WORDS[finding.status]
        caveat = verdict_caveat(report, finding)
        if caveat == NOT_CALIBRATED:
            # Before any calibration "never called during calibration" would read as a verdict.
            return Content.assemble(
                badge(detector.glyph, index),
                " ",
                (detector.title, "bold"),
                "  ",
                (caveat, "$warning"),
                "\n",
                ("This detector judges what calibration records: press c to calibrate.", "dim"),
                "\n",
            )
        if caveat is not None:
            word, style = caveat, "bold $warning"
        else:
            measured = report.severity(finding.detector, finding.module)
            if measured is not None and finding.recommended and measured.level.value in ("minor", "duplicate"):
                # The heuristic recommends; the measurement says it gains too little (or is reported
                # elsewhere): the headline says that, not "change recommended" above a contradiction.
                word, style = (
                    ("suggested, measured gain too small", "dim")
                    if measured.level.value == "minor"
                    else ("reported on another module", "dim")
                )
        parts: list[Content | str | tuple[str, str]] = [
            badge(detector.glyph, index),
            " ",
            (detector.title, "bold"),
            "  ",
            (word, style),
            "\n",
        ]
        if caveat is not None:
            parts += [
                (
                    "Its settings changed since the last calibration: press c to calibrate again. "
                    "Until then this is what the old data says:",
                    "$warning",
                ),
                "\n",
            ]
        parts += [(finding.headline, "bold" if finding.recommended else ""), "\n", finding.reason, "\n"]
        severity = report.severity(finding.detector, finding.module)
        if severity is not None and (severity.level.value != "none" or severity.contradicts):
            gain = f" ({signed_db(severity.gain_db)} dB)" if severity.gain_db is not None else ""
            loud = (severity.badged and severity.level.value == "major") or severity.contradicts
            word = "not flagged" if severity.contradicts else severity.level.value
            parts += [
                ("  measured: ", "dim"),
                (f"{word}{gain}", "bold $warning" if loud else "dim"),
                " ",
                (severity.note, "dim"),
                "\n",
            ]
        for evidence in finding.evidence:
            marker = "▶" if evidence.decides else "·"
            strong = "bold" if evidence.decides else ""
            parts += [
                (f"  {marker} {evidence.label} = ", strong),
                (evidence.shown, strong),
                (f"   ({evidence.threshold})", "dim"),
                "\n",
            ]
        return Content.assemble(*parts)
