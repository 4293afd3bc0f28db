"""SQNR along the network's depth under the plan: a row per quantizable module, in model order.

Each row draws the module's local SQNR under its plan scheme as a bar (what it adds by itself) and
the SQNR of the data reaching it, everything before it quantized as planned, as a ``●`` (what has
built up); the last row is the model's output, the plan's end-to-end SQNR. A module the plan keeps
in float is drawn as ``float`` with no bar. The scale is the range of the values shown (not from
0), so 36.2 and 36.8 dB look different; exact (no error) points sit at the right edge as ``∞``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from textual.content import Content
from textual.reactive import var
from textual.widgets import Static

from tui_quantreport.engine.escape import printable
from tui_quantreport.tui.panes.channel_plot import plot_column

LOCAL_STYLE = "$primary-lighten-2"
CUMULATIVE_STYLE = "bold $warning"
FLOAT_STYLE = "$accent"
#: The last row: the model's output (the plan's end-to-end SQNR).
OUTPUT = "model output"


@dataclass(frozen=True)
class DepthPoint:
    """One module along depth: local SQNR under its plan scheme (None: float or undefined) and the
    SQNR of its input under the plan (+inf: exact, None: not measured)."""

    module: str
    scheme: str
    local_db: float | None
    cumulative_db: float | None


class DepthPlot(Static):
    """Local and cumulative SQNR per module along depth; ``output_db`` is the end-to-end SQNR."""

    points: var[Sequence[DepthPoint]] = var((), always_update=True)
    output_db: var[float | None] = var(None)
    note = var("")

    def watch_points(self) -> None:
        self._redraw()

    def watch_output_db(self) -> None:
        self._redraw()

    def watch_note(self) -> None:
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        self.update(Content("\n").join(self.lines(self.content_size.width or 80)))

    def lines(self, width: int) -> list[Content]:
        points = self.points
        title = Content.assemble(
            ("SQNR along depth", "bold"),
            ("  █ local (plan's scheme)  ", "dim"),
            ("●", CUMULATIVE_STYLE),
            (" reaching the layer (everything before it quantized as planned)", "dim"),
        )
        out = [title]
        if self.note:
            out.append(Content.styled(self.note, "dim"))
        if not points:
            return out
        values = [p.local_db for p in points] + [p.cumulative_db for p in points] + [self.output_db]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        lo = math.floor(min(finite, default=0.0)) - 1.0
        hi = math.ceil(max(finite, default=1.0)) + 1.0
        name_width = min(max(len(OUTPUT), *(len(p.module) for p in points)), max(12, width // 3))
        value_width = 14
        bar_width = max(width - name_width - value_width - 3, 10)
        rows = [(p.module, p.scheme, p.local_db, p.cumulative_db) for p in points]
        rows.append((OUTPUT, "", None, self.output_db))
        for module, scheme, local, cumulative in rows:
            shown = printable(module)
            name = shown if len(shown) <= name_width else "…" + shown[-(name_width - 1) :]
            cells: list[tuple[str, str]] = [(" ", "")] * bar_width
            if local is not None and math.isfinite(local):
                end = plot_column(local, lo, hi, bar_width)
                cells[: end + 1] = [("█", LOCAL_STYLE)] * (end + 1)
            elif scheme == "float":
                label = "float"
                cells[: len(label)] = [(ch, FLOAT_STYLE) for ch in label]
            if cumulative is not None:
                at = bar_width - 1 if math.isinf(cumulative) else plot_column(cumulative, lo, hi, bar_width)
                cells[at] = ("●", CUMULATIVE_STYLE)
            local_text = "float" if scheme == "float" else _db(local)
            value = f"{local_text:>6} {_db(cumulative):>6}"
            out.append(Content.assemble(f"{name:<{name_width}} ", *cells, f" {value:>{value_width}}"))
        axis = [" "] * bar_width
        low, high = f"{lo:g} dB", f"{hi:g} dB"
        axis[: len(low)] = list(low)
        axis[bar_width - len(high) :] = list(high)
        out.append(Content.styled(" " * (name_width + 1) + "".join(axis) + f" {'local':>6} {'reach':>6}", "dim"))
        return out


def depth_points(
    plan: Mapping[str, str], local: Mapping[str, Mapping[str, float | None]], cumulative: Mapping[str, float | None]
) -> list[DepthPoint]:
    """A point per module of ``plan`` (model order), from the local SQNR per scheme and the
    cumulative SQNR per module (+inf: exact)."""
    return [
        DepthPoint(fqn, scheme, local.get(fqn, {}).get(scheme) if scheme != "float" else None, cumulative.get(fqn))
        for fqn, scheme in plan.items()
    ]


def _db(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞"
    return f"{value:.1f}"
