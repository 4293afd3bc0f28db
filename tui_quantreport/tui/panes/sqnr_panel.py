"""A module's measured error: its local SQNR under every scheme, the plan's choice, its sensitivity.

Plain data from the engine's error analysis (:class:`~.model_session.Measured`):
this widget only lays it out. Higher SQNR is better; "undefined" values carry
the engine's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from textual.content import Content
from textual.reactive import var
from textual.widgets import Static

from tui_quantreport.tui.model_session import Measured
from tui_quantreport.tui.panes.in_place import update_in_place

if TYPE_CHECKING:
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.quantsim import Sqnr

FLOAT = "float"
#: Rows that are not schemes: the simulated advice of the outlier and equalization detectors.
ADVICE_ROWS = {"clipped": "input clipped to percentiles", "equalized": "input-weight equalized"}


def sqnr_text(sqnr: Sqnr | None) -> str:
    """``31.2 dB``, ``exact`` (no error at all), or the engine's "SQNR undefined: …" reason."""
    if sqnr is None:
        return "–"
    if sqnr.db is not None:
        return f"{sqnr.db:.1f} dB"
    return "exact (no error)" if sqnr.infinite else sqnr.reason


#: A row's size and SQNR columns (" 8.25 b/w  " and "101.2 dB" at most); the name column gets the rest.
NUMBERS_WIDTH = len(" 8.25 b/w  ") + len("101.2 dB")
#: The name column is never cut below this.
MIN_NAME_WIDTH = 12


def _fitted(name: str, width: int) -> str:
    """``name`` in at most ``width`` columns, ending in "…" where cut."""
    return name if len(name) <= width else name[: width - 1] + "…"


class SqnrPanel(Static):
    """Local SQNR per scheme for the module ``fqn``, marking the plan's scheme; its sensitivity."""

    measured: var[Measured | None] = var(None, always_update=True)
    plan: var[Any] = var(None, always_update=True)
    sensitivity: var[Mapping[str, Any] | None] = var(None, always_update=True)
    fqn: var[str | None] = var(None)
    #: The pane's width the rows were last fitted to (0: not laid out then).
    _fitted_width = 0

    def watch_measured(self) -> None:
        self._redraw()

    def watch_plan(self) -> None:
        self._redraw()

    def watch_sensitivity(self) -> None:
        self._redraw()

    def watch_fqn(self) -> None:
        self._redraw()

    def on_resize(self) -> None:
        # The name column follows the pane's width; a new height alone (the pane's own redraw laid
        # out) changes nothing in the rows.
        if self.content_size.width != self._fitted_width:
            self._redraw()

    def _redraw(self) -> None:
        measured, fqn = self.measured, self.fqn
        local = measured.local.get(fqn) if measured is not None and fqn else None
        self.display = local is not None
        if measured is None or local is None or fqn is None:
            return
        plan: Plan | None = self.plan
        chosen = plan.modules.get(fqn, FLOAT) if plan is not None else FLOAT
        recommended = measured.scheme_of(fqn)
        lines: list[Content] = [
            Content.assemble(
                ("Measured error", "bold underline"),
                (f"  local SQNR on {measured.probe_batches} probe batches, higher is better", "dim"),
            ),
        ]
        bits = measured.error.modules[fqn].bits_per_weight if measured.error and fqn in measured.error.modules else {}
        # Formats that cannot take this module (no size: ineligible) get one line, not a row each; the
        # schemes the recommended plan chooses among always keep their row (an undefined value says why).
        from tui_quantreport.engine import SCHEMES  # measured: torch is loaded already

        ineligible = [
            s
            for s in local
            if s in bits and bits[s] is None and s in SCHEMES and SCHEMES[s].facts.preference is None and s != chosen
        ]
        rows = [
            (scheme, sqnr) for scheme, sqnr in local.items() if scheme not in ADVICE_ROWS and scheme not in ineligible
        ]
        lines += self._scheme_rows(rows, bits, chosen, recommended)
        if ineligible:
            lines.append(
                Content.styled(
                    f"  {len(ineligible)} formats cannot take it (reasons in the report JSON): {', '.join(ineligible)}",
                    "dim",
                )
            )
        if chosen == FLOAT:
            lines.append(
                Content.assemble(
                    "  ", ("kept in float by the plan", "bold $accent"), ("  (f toggles, p picks a scheme)", "dim")
                )
            )
        for key, title in ADVICE_ROWS.items():
            if key in local:
                lines.append(
                    Content.assemble(
                        f"  {title}: ",
                        sqnr_text(local[key]),
                        ("  (the detectors' advice, simulated)", "dim"),
                    )
                )
        sensitivity = self.sensitivity
        if sensitivity is not None and fqn in sensitivity:
            lines.append(
                Content.assemble(
                    "  only this module quantized: ",
                    (sqnr_text(sensitivity[fqn]), "bold"),
                    (" end to end (sensitivity)", "dim"),
                )
            )
        elif chosen != FLOAT:
            lines.append(Content.styled("  S measures each module's sensitivity (one pass per module).", "dim"))
        update_in_place(self, Content("\n").join(lines))

    def _scheme_rows(
        self, rows: list[tuple[str, Any]], bits: Mapping[str, float | None], chosen: str, recommended: str | None
    ) -> list[Content]:
        """One line per scheme: its name, its size in bits per weight, its SQNR and its marks."""
        # The name column as wide as the longest name shown (not every scheme's), and at most what
        # leaves the size and the SQNR room on the row (a longer name ends in "…"): at 80 columns
        # the pane is ~42 wide, and a row must fit in it whole.
        width = self._fitted_width = self.content_size.width
        name_width = max((len(scheme) for scheme, _ in rows), default=0)
        if width:  # laid out: the room the row leaves the name
            name_width = max(MIN_NAME_WIDTH, min(name_width, width - len("  ") - len(" ") - NUMBERS_WIDTH))
        lines: list[Content] = []
        for scheme, sqnr in rows:
            marks: list[tuple[str, str]] = []
            if scheme == chosen:
                marks.append(("◀ plan", "bold $accent"))
            if scheme == recommended and scheme != chosen:
                marks.append(("recommended", "dim"))
            size = bits.get(scheme)
            parts: list[str | tuple[str, str]] = [
                f"  {_fitted(scheme, name_width):<{name_width}} ",
                (f"{size:5.2f} b/w  " if size is not None else " " * 9, "dim"),
                (sqnr_text(sqnr), "bold" if scheme == chosen else ""),
            ]
            for mark in marks:
                parts += [" ", mark]
            lines.append(Content.assemble(*parts))
        return lines
