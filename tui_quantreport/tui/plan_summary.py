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

from collections.abc import Mapping
from typing import Any

from textual.content import Content
from textual.reactive import var
from textual.widgets import Static

from tui_quantreport.tui.model_session import Measured
from tui_quantreport.tui.sqnr_panel import FLOAT, sqnr_text

LAYERS_SHOWN = 24
KEEP_FLOAT_SHOWN = 12


class PlanSummary(Static):
    """The plan's headline, its keep-float list and an SQNR-by-layer bar chart."""

    measured: var[Measured | None] = var(None, always_update=True)
    plan: var[Any] = var(None, always_update=True)
    plan_sqnr: var[Any] = var(None, always_update=True)
    plan_pending = var(False)

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
            Content.styled(
                "f keeps the selected module (or subtree) in float, p picks its scheme, "
                "e saves the plan, S measures sensitivity.",
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
        self.update(Content("\n").join(lines))

    def _plot(self, measured: Measured, modules: Mapping[str, str]) -> list[Content]:
        """Local SQNR per layer under its plan scheme: a horizontal bar per layer."""
        from tui_quantreport.engine.quantsim.schemes import SCHEMES  # measured: torch is loaded already

        rows: list[tuple[str, str, float | None, str]] = []
        for fqn, scheme in modules.items():
            local = measured.local.get(fqn, {})
            if scheme == FLOAT:
                best = max(
                    (
                        s
                        for k, s in local.items()
                        if k in SCHEMES and SCHEMES[k].facts.preference is not None  # the schemes a plan picks
                    ),
                    key=lambda s: s.value,
                    default=None,
                )
                rows.append((fqn, "float", best.db if best is not None else None, "best if quantized"))
            else:
                sqnr = local.get(scheme)
                rows.append((fqn, scheme, sqnr.db if sqnr is not None else None, sqnr_text(sqnr)))
        title = "SQNR by layer (local, plan's scheme; higher is better)"
        if len(rows) > LAYERS_SHOWN:
            rows = sorted(rows, key=lambda r: (r[2] is not None, r[2] or 0.0))[:LAYERS_SHOWN]
            title = f"SQNR by layer: the {LAYERS_SHOWN} lowest of {len(modules):,} (local, plan's scheme)"
        out = [Content.styled(title, "bold")]
        width = max(min(self.content_size.width or 40, self.app.size.width // 2), 40)
        name_width = min(max((len(r[0]) for r in rows), default=8), max(12, width // 3))
        value_width = 9
        bar_width = min(max(width - name_width - value_width - 8, 4), 40)
        top = max([r[2] for r in rows if r[2] is not None] + [1.0])
        for fqn, scheme, db, _ in rows:
            name = fqn if len(fqn) <= name_width else "…" + fqn[-(name_width - 1) :]
            style = "$accent" if scheme == "float" else "$primary-lighten-2"
            length = 0 if db is None else max(0, round(max(db, 0.0) / top * bar_width))
            value = "undefined" if db is None else f"{db:.1f} dB"
            out.append(
                Content.assemble(
                    f"{name:<{name_width}} ",
                    ("█" * length, style),
                    " " * (bar_width - length),
                    f" {value:>{value_width}}",
                    (" float" if scheme == "float" else "", "$accent"),
                )
            )
        return out
