"""The what-if plan at the model level: its end-to-end SQNR, what stays float, SQNR by layer.

Shown under the model summary when the tree's root is selected. The plot is
one row per quantizable layer (its local SQNR under the plan's scheme, or its
best scheme when kept float), in tree order; a model with more layers than
:data:`LAYERS_SHOWN` shows its lowest-SQNR layers, which are the ones to look at.

The bars are drawn as text here rather than with plotext: a plotext bar chart
puts layer names on an axis, where 24 names do not fit a 40-column pane, while
a row per layer keeps its full (or …-shortened) name, its dB and its scheme
readable at 80x24, and is asserted as plain text in the tests. plotext was
removed from the dependencies for that reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from textual.content import Content
from textual.reactive import var
from textual.widgets import Static

from tui_quantreport.engine.escape import printable
from tui_quantreport.tui.model_session import Measured
from tui_quantreport.tui.panes.channel_plot import plot_column
from tui_quantreport.tui.panes.in_place import update_in_place
from tui_quantreport.tui.panes.sqnr_panel import FLOAT, sqnr_text

LAYERS_SHOWN = 24
KEEP_FLOAT_SHOWN = 12
#: Keeping a module in float must gain at least this much for it to be named as what limits the plan.
LIMIT_GAIN_DB = 0.1


class PlanSummary(Static):
    """The plan's headline, its keep-float list and an SQNR-by-layer bar chart."""

    measured: var[Measured | None] = var(None, always_update=True)
    plan: var[Any] = var(None, always_update=True)
    plan_sqnr: var[Any] = var(None, always_update=True)
    plan_pending = var(False)
    sensitivity: var[Mapping[str, Any] | None] = var(None, always_update=True)
    #: What limits the plan: (module, the plan's SQNR with it kept in float).
    limit: var[Any] = var(None, always_update=True)

    def watch_sensitivity(self) -> None:
        self._redraw()

    def watch_limit(self) -> None:
        self._redraw()

    def watch_measured(self) -> None:
        self._redraw()

    def watch_plan(self) -> None:
        self._redraw()

    def watch_plan_sqnr(self) -> None:
        self._redraw()

    def watch_plan_pending(self) -> None:
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._stale = False

    def set_shown(self, shown: bool) -> None:
        """Show or hide the summary (only the root shows it); a hidden one is redrawn when shown."""
        self.set_class(not shown, "-hidden")
        if shown and self._stale:
            self._redraw()

    def _redraw(self) -> None:
        if self.has_class("-hidden"):  # hidden behind a module's view: redrawn when shown again
            self._stale = True
            return
        self._stale = False
        measured, plan = self.measured, self.plan
        self.set_class(measured is None or plan is None, "-empty")
        if measured is None or plan is None:
            return
        quantized = plan.quantized
        kept = plan.kept_float
        running = " (recomputing…)" if self.plan_pending else ""
        lines: list[Content] = [
            Content.styled("What-if plan", "bold underline"),
            Content.assemble(
                "End-to-end SQNR ",
                (sqnr_text(self.plan_sqnr), "bold"),
                running,
                f" on {measured.probe_batches} probe batches · {len(quantized):,} quantized · {len(kept):,} kept float",
            ),
            *self._limit_sentence(plan),
            Content.styled(
                "f keeps the selected module (or subtree) in float, p picks its scheme, u undoes, "
                "e saves the plan, S measures sensitivity, l lists which layers hurt.",
                "dim",
            ),
        ]
        if kept:
            shown = ", ".join(kept[:KEEP_FLOAT_SHOWN]) + (
                f" and {len(kept) - KEEP_FLOAT_SHOWN:,} more" if len(kept) > KEEP_FLOAT_SHOWN else ""
            )
            lines.append(Content.assemble("Keep float: ", (shown, "$accent")))
        else:
            lines.append(Content.styled("Keep float: none (every quantizable module is quantized).", "dim"))
        lines += [Content(""), *self._plot(measured, plan.modules)]
        update_in_place(self, Content("\n").join(lines))

    def _limit_sentence(self, plan: Any) -> list[Content]:
        """``X limits the plan; keeping it float gives Y dB`` (measured for the plan on screen)."""
        limit = self.limit
        if limit is None or self.plan_pending:
            return []
        fqn, sqnr = limit
        if fqn not in plan.quantized:
            return []
        now = self.plan_sqnr
        if sqnr.db is not None and now is not None and now.db is not None and sqnr.db - now.db < LIMIT_GAIN_DB:
            return [
                Content.styled(
                    f"No single module limits the plan: keeping the likeliest ones in float gains under "
                    f"{LIMIT_GAIN_DB:g} dB.",
                    "dim",
                )
            ]
        return [
            Content.assemble(
                (printable(fqn), "bold $warning"),
                " limits the plan; keeping it float gives ",
                (sqnr_text(sqnr), "bold"),
                f" (now {sqnr_text(self.plan_sqnr)}).",
            )
        ]

    def _plot(self, measured: Measured, modules: Mapping[str, str]) -> list[Content]:
        """Local SQNR per layer under its plan scheme (and its sensitivity, when measured): a bar
        per layer, scaled to the range of the values shown; a float layer is drawn as float."""
        sensitivity = self.sensitivity or {}
        rows: list[tuple[str, str, float | None, float | None]] = []
        for fqn, scheme in modules.items():
            sens = sensitivity.get(fqn)
            sens_db = sens.db if sens is not None else None
            if scheme == FLOAT:
                rows.append((fqn, FLOAT, None, sens_db))
            else:
                sqnr = measured.local.get(fqn, {}).get(scheme)
                rows.append((fqn, scheme, sqnr.db if sqnr is not None else None, sens_db))
        title = "SQNR by layer (local, plan's scheme; higher is better)"
        if len(rows) > LAYERS_SHOWN:
            rows = sorted(rows, key=lambda r: (r[1] == FLOAT, r[2] is not None, r[2] or 0.0))[:LAYERS_SHOWN]
            title = f"SQNR by layer: the {LAYERS_SHOWN} lowest of {len(modules):,} (local, plan's scheme)"
        out = [Content.styled(title, "bold")]
        width = max(min(self.content_size.width or 40, self.app.size.width // 2), 40)
        name_width = min(max((len(r[0]) for r in rows), default=8), max(12, width // 3))
        value_width = 9
        shows_sensitivity = bool(sensitivity)
        sens_width = 12 if shows_sensitivity else 0
        bar_width = min(max(width - name_width - value_width - sens_width - 3, 4), 40)
        shown = [r[2] for r in rows if r[2] is not None and math.isfinite(r[2])]
        lo = math.floor(min(shown, default=0.0)) - 1.0
        hi = math.ceil(max(shown, default=1.0)) + 1.0
        for fqn, scheme, db, sens_db in rows:
            text = printable(fqn)
            name = text if len(text) <= name_width else "…" + text[-(name_width - 1) :]
            if scheme == FLOAT:
                bar, value = ("float".ljust(bar_width), "$accent"), "float"
            else:
                length = 0 if db is None else plot_column(db, lo, hi, bar_width) + 1
                bar = ("█" * length + " " * (bar_width - length), "$primary-lighten-2")
                value = "undefined" if db is None else f"{db:.1f} dB"
            sens = ""
            if shows_sensitivity:
                sens = f"  sens {sens_db:.1f}" if sens_db is not None else "  sens —"
            out.append(Content.assemble(f"{name:<{name_width}} ", bar, f" {value:>{value_width}}", (sens, "dim")))
        if rows:
            low, high = f"{lo:g}", f"{hi:g} dB"
            axis = low + " " * max(1, bar_width - len(low) - len(high)) + high
            out.append(Content.styled(" " * (name_width + 1) + axis, "dim"))
        return out
