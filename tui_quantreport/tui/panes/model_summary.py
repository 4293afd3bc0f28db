"""The model-level view, shown when the tree's root is selected.

Counts of recommendations per detector, each detector's one-line summary, and
the modules where the most detectors recommend a change.
"""

from __future__ import annotations

from collections.abc import Mapping

from textual.content import Content
from textual.widgets import Static

from tui_quantreport.engine.report import Level, Report
from tui_quantreport.tui.badges import badge, badge_row

#: How many modules the "matter most" list names.
TOP_MODULES = 10


class ModelSummary(Static):
    """Findings per detector and the modules that matter most, for the whole model."""

    def show_report(self, report: Report, detector_index: Mapping[str, int]) -> None:
        """Render the summary of ``report``."""
        heading: list[Content | str | tuple[str, str]] = [
            (report.spec, "bold"),
            f"  {report.model_class}, {report.user_module_count:,} modules, ",
        ]
        if report.batches:
            heading.append(f"calibrated on {report.batches:,} batches.")
        else:
            heading += [
                "not calibrated yet: press ",
                ("c", "bold reverse"),
                " to run the calibration batches through the model.",
            ]
        parts: list[Content] = [Content.assemble(*heading), Content("")]

        for name in report.detectors:
            parts += self._detector_lines(report, name, detector_index.get(name, 0))
        if not report.detectors:
            parts.append(Content.styled("No detector is enabled: tick one in the sidebar.", "dim"))

        ranked = self._modules_that_matter(report, detector_index)
        if ranked:
            parts += [Content(""), Content.styled("Modules that matter most", "bold underline")]
            for fqn, chips in ranked:
                parts.append(Content.assemble("  ", badge_row(chips), "  ", fqn))
            parts.append(Content.styled("Press n / N to walk through every recommendation.", "dim"))
        if report.stale_params:
            parts += [
                Content(""),
                Content.styled(
                    "Settings changed since the last calibration need new data ("
                    + ", ".join(report.stale_params)
                    + "): press c to calibrate again.",
                    "$warning",
                ),
            ]
        self.update(Content("\n").join(parts))

    @staticmethod
    def _detector_lines(report: Report, name: str, index: int) -> list[Content]:
        """A detector's count line and its summary. Measured, the count is what is badged; minor
        findings (and duplicates) are counted apart, and the detector's own summary (which counts
        every flag) is labelled as the heuristic it is."""
        detector = report.detectors[name]
        recommended = detector.recommended
        levels = [report.severity(name, fqn) for fqn in recommended]
        measured = any(level is not None for level in levels)
        badged = [fqn for fqn in recommended if report.badged(name, fqn)]
        count = len(badged)
        line: list[Content | str | tuple[str, str]] = [
            badge(detector.glyph, index),
            " ",
            (detector.title, "bold"),
            "  ",
            (f"{count:,} recommended" if count else "nothing recommended", "bold $warning" if count else "dim"),
        ]
        if measured:
            minor = sum(1 for sev in levels if sev is not None and sev.level is Level.MINOR)
            duplicate = sum(1 for sev in levels if sev is not None and sev.level is Level.DUPLICATE)
            if minor:
                line.append((f" · {minor:,} minor (measured gain below {report.min_gain_db:g} dB)", "dim"))
            if duplicate:
                line.append((f" · {duplicate:,} reported on another module", "dim"))
        summary = detector.summary if report.batches or count else "Waiting for calibration."
        if measured:
            summary = f"Detector heuristic, before measurement: {summary}"
        return [Content.assemble(*line), Content.styled(f"  {summary}", "" if count and not measured else "dim")]

    @staticmethod
    def _modules_that_matter(
        report: Report, detector_index: Mapping[str, int]
    ) -> list[tuple[str, list[tuple[str, int]]]]:
        """The engine's ranking (most recommending detectors first), as badge chips."""
        return [
            (fqn, [(report.detectors[name].glyph, detector_index.get(name, 0)) for name in names])
            for fqn, names in report.ranked_modules()[:TOP_MODULES]
        ]
