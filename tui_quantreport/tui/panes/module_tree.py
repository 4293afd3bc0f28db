"""The module tree: every module by fully qualified name, with its class and badges.

The tree reacts to its owner's state (bound with ``data_bind`` by the main
screen): ``report`` (badges and dimming), ``filter_text`` and ``show_helpers``
(which nodes exist). A badge (the detector's glyph on its colour) marks each
detector that recommends a change at a module. Modules no detector observed are dimmed after
a calibration; observers and fake quantizers of a ``torch.ao``-prepared model
are hidden unless asked for. Badges are kept beside the nodes and drawn in
:meth:`ModuleTree.render_label`, so a new report repaints the nodes whose
badges changed instead of rebuilding the tree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.reactive import var
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tui_quantreport.engine.escape import printable
from tui_quantreport.engine.report import ModuleSummary, Report
from tui_quantreport.tui.badges import rich_badge_style
from tui_quantreport.tui.messages import ModuleHighlighted

#: Nodes at this depth or above start expanded ("" is depth 0): the root and its children.
EXPANDED_DEPTH = 1

#: Styles of the parts of a label (the colours come from the app's theme).
NAME_STYLE = Style(bold=True)
CLASS_STYLE = Style(italic=True, dim=True)
DIMMED = Style(dim=True)
#: A name shortened to fit the pane keeps at least this many cells (then the badges follow).
MIN_NAME_CELLS = 4


class ModuleTree(Tree[str]):
    """The model's module tree; each node's data is the module's fqn ("" for the model)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right", "expand_or_enter", "Expand, or go to the first child", show=False),
        Binding("left", "collapse_or_leave", "Collapse, or go to the parent", show=False),
        Binding("enter", "screen.focus_detail", "Open the module's detail view (Esc comes back)", show=False),
        Binding("j", "cursor_down", "Next module (as ↓)", show=False),
        Binding("k", "cursor_up", "Previous module (as ↑)", show=False),
        Binding("g", "scroll_home", "First module", show=False),
        Binding("G", "scroll_end", "Last module", show=False, key_display="G"),
        Binding("J", "screen.scroll_detail(1)", "Scroll the detail view down", show=False, key_display="J"),
        Binding("K", "screen.scroll_detail(-1)", "Scroll the detail view up", show=False, key_display="K"),
    ]

    #: The report shown (None while loading); a new one repaints badges, a new model rebuilds.
    report: var[Report | None] = var(None, always_update=True)
    #: Each detector's position in the registry (fixes its badge colour).
    detector_index: var[Mapping[str, int]] = var(dict)
    #: Show only modules whose name or class contains this text (and their ancestors).
    filter_text = var("")
    #: Show the observers and fake quantizers of a prepared model.
    show_helpers = var(False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Loading the model…", data="", id=id)
        self.guide_depth = 3
        self.modules: Mapping[str, ModuleSummary] = {}
        self.nodes: dict[str, TreeNode[str]] = {}
        self._badges: dict[str, tuple[tuple[str, int], ...]] = {}
        self._dimmed: frozenset[str] = frozenset()
        self._badge_styles: dict[tuple[int, str], Style] = {}
        #: Per module with flagged descendants: their badges (registry order) and how many are flagged.
        self._rollup: dict[str, tuple[tuple[tuple[str, int], ...], int]] = {}

    # Reacting ---------------------------------------------------------------

    def watch_report(self, old: Report | None, report: Report | None) -> None:
        if report is None:
            return
        if old is None or not self.modules or old.modules.keys() != report.modules.keys():
            self.modules = report.modules
            self._badges, self._dimmed = self._marks(report)
            self._rollup = self._rollup_of(self._badges)
            self.rebuild()
        else:
            self.modules = report.modules
            self._show_marks(report)

    def watch_filter_text(self) -> None:
        if self.modules:
            self.rebuild()

    def watch_show_helpers(self) -> None:
        if self.modules:
            self.rebuild()

    # Building ---------------------------------------------------------------

    def rebuild(self) -> None:
        """Rebuild the nodes for the current filter and helper visibility, keeping the cursor's module."""
        keep = self.current_fqn
        self.clear()
        self.nodes = {"": self.root}
        root = self.modules.get("")
        if root is not None:
            self.root.set_label(self._label(root, is_root=True))
        shown = self._visible_modules()
        filtering = bool(self.filter_text)
        for module in self.modules.values():
            if not module.fqn or module.fqn not in shown:
                continue
            parent = self.nodes.get(module.parent or "")
            if parent is None:
                continue
            has_children = any(child in shown for child in module.children)
            self.nodes[module.fqn] = parent.add(
                self._label(module),
                data=module.fqn,
                expand=has_children and (filtering or module.depth <= EXPANDED_DEPTH),
                allow_expand=has_children,
            )
        self.root.expand()
        self.reveal(keep if keep in self.nodes else "")

    def _visible_modules(self) -> set[str]:
        """The fqns to show: helpers only when asked, and only matches of the filter and their ancestors."""
        candidates = [m for m in self.modules.values() if self.show_helpers or not m.is_quant_helper]
        if not self.filter_text:
            return {m.fqn for m in candidates}
        needle = self.filter_text.lower()
        shown: set[str] = {""}
        for module in candidates:
            if needle in module.fqn.lower() or needle in module.class_name.lower():
                fqn: str | None = module.fqn
                while fqn is not None and fqn not in shown:
                    shown.add(fqn)
                    fqn = self.modules[fqn].parent
        return shown

    def _label(self, module: ModuleSummary, is_root: bool = False) -> Text:
        name = module.name if not is_root else "(model)"
        text = Text.assemble((printable(name), NAME_STYLE), " ", (printable(module.class_name), CLASS_STYLE))
        if module.quantized:  # already quantized (torchao, converted PT2E): said, never badged
            text.append(f" [{printable(module.quantized)}]", CLASS_STYLE)
        return text

    # Badges -----------------------------------------------------------------

    def _show_marks(self, report: Report) -> None:
        """Repaint the badges and dimming for a new report of the same model."""
        badges, dimmed = self._marks(report)
        changed = {fqn for fqn in set(badges) | set(self._badges) if badges.get(fqn) != self._badges.get(fqn)}
        changed |= dimmed ^ self._dimmed
        self._badges, self._dimmed = badges, dimmed
        rollup = self._rollup_of(badges)
        changed |= {fqn for fqn in set(rollup) | set(self._rollup) if rollup.get(fqn) != self._rollup.get(fqn)}
        self._rollup = rollup
        for fqn in changed:
            node = self.nodes.get(fqn)
            if node is not None:
                node.refresh()

    def _marks(self, report: Report) -> tuple[dict[str, tuple[tuple[str, int], ...]], frozenset[str]]:
        """Badges per module (in registry order) and the modules to dim, read from ``report``."""
        badges: dict[str, list[tuple[str, int]]] = {}
        for name, detector in report.detectors.items():
            chip = (detector.glyph, self.detector_index.get(name, 0))
            for fqn in detector.recommended:
                if report.badged(name, fqn):  # measured as minor, or reported on another module: no badge
                    badges.setdefault(fqn, []).append(chip)
        dimmed: frozenset[str] = frozenset()
        if report.batches:
            dimmed = frozenset(fqn for fqn, m in report.modules.items() if fqn and not m.observed)
        return {fqn: tuple(chips) for fqn, chips in badges.items()}, dimmed

    def badges_of(self, fqn: str) -> tuple[str, ...]:
        """The glyphs shown beside module ``fqn``."""
        return tuple(glyph for glyph, _ in self._badges.get(fqn, ()))

    def is_dimmed(self, fqn: str) -> bool:
        return fqn in self._dimmed

    def _rollup_of(
        self, badges: Mapping[str, tuple[tuple[str, int], ...]]
    ) -> dict[str, tuple[tuple[tuple[str, int], ...], int]]:
        """For every ancestor of a flagged module: the badges found beneath it and the flagged count."""
        chips: dict[str, set[tuple[str, int]]] = {}
        counts: dict[str, int] = {}
        for fqn, marks in badges.items():
            module = self.modules.get(fqn)
            parent = module.parent if module is not None else None
            while parent is not None:
                chips.setdefault(parent, set()).update(marks)
                counts[parent] = counts.get(parent, 0) + 1
                up = self.modules.get(parent)
                parent = up.parent if up is not None else None
        return {fqn: (tuple(sorted(found, key=lambda chip: chip[1])), counts[fqn]) for fqn, found in chips.items()}

    def rollup_of(self, fqn: str) -> tuple[tuple[str, ...], int]:
        """The glyphs flagged beneath ``fqn`` and how many modules carry them (shown when collapsed)."""
        chips, count = self._rollup.get(fqn, ((), 0))
        return tuple(glyph for glyph, _ in chips), count

    def render_label(self, node: TreeNode[str], base_style: Style, style: Style) -> Text:
        """The node's name and class, dimmed when unobserved, then its badges; a collapsed node also
        shows the badges beneath it and how many modules there are flagged. A row wider than the
        pane shortens the name (with …), never the badges: they stay visible on deep rows."""
        text = super().render_label(node, base_style, style)
        fqn = node.data or ""
        if fqn in self._dimmed:
            text.stylize(DIMMED)
        own = Text()
        for glyph, index in self._badges.get(fqn) or ():
            own.append(" ")
            own.append(glyph, self._badge_style(index))
        rollup = Text()
        if node.allow_expand and not node.is_expanded and fqn in self._rollup:
            beneath, count = self._rollup[fqn]
            rollup.append("  ▸", DIMMED)
            for glyph, index in beneath:
                rollup.append(" ")
                rollup.append(glyph, self._badge_style(index))
            rollup.append(f" ×{count:,}", DIMMED)
        room = self._label_room(node)
        if room is not None and text.cell_len + own.cell_len + rollup.cell_len > room:
            keep = max(MIN_NAME_CELLS, room - own.cell_len - rollup.cell_len)
            text.truncate(keep, overflow="ellipsis")
            if text.cell_len + own.cell_len + rollup.cell_len > room:  # the roll-up gives way next
                rollup.truncate(max(0, room - text.cell_len - own.cell_len), overflow="ellipsis")
        text.append_text(own)
        text.append_text(rollup)
        return text

    def _label_room(self, node: TreeNode[str]) -> int | None:
        """Cells left for ``node``'s label in the pane, after its guides (None before layout)."""
        width = self.scrollable_content_region.width
        if width <= 0:
            return None
        depth = 0
        parent = node.parent
        while parent is not None:
            depth += 1
            parent = parent.parent
        return max(1, width - depth * self.guide_depth)

    def _badge_style(self, index: int) -> Style:
        """Badge ``index`` in the current theme's colours (Rich styles, as tree labels are Rich text)."""
        key = (index, self.app.theme)
        style = self._badge_styles.get(key)
        if style is None:
            style = self._badge_styles[key] = rich_badge_style(index, self.app.theme_variables)
        return style

    # Moving -----------------------------------------------------------------

    @property
    def current_fqn(self) -> str:
        """The fqn under the cursor ("" when the cursor is on the model or nowhere)."""
        node = self.cursor_node
        return node.data or "" if node is not None else ""

    def reveal(self, fqn: str) -> None:
        """Expand the ancestors of module ``fqn``, then move the cursor to it."""
        node = self.nodes.get(fqn)
        if node is None:
            return
        parent = node.parent
        while parent is not None:
            if not parent.is_expanded:
                parent.expand()
            parent = parent.parent
        _ = self.last_line  # lay the lines out now, so the node knows its line
        self.move_cursor(node)

    def jump(self, targets: Sequence[str], forward: bool) -> str | None:
        """Move to the next (or previous) of ``targets``, in their order, after the cursor's module
        (wrapping; from a module not in ``targets``, the first or the last); returns its fqn."""
        shown = [fqn for fqn in targets if fqn in self.nodes]
        if not shown:
            return None
        here = self.current_fqn
        if here in shown:
            position = shown.index(here) + (1 if forward else -1)
            chosen = shown[position % len(shown)]
        else:
            chosen = shown[0] if forward else shown[-1]
        self.reveal(chosen)
        return chosen

    def action_expand_or_enter(self) -> None:
        node = self.cursor_node
        if node is None or not node.allow_expand:
            return
        if not node.is_expanded:
            node.expand()
        else:
            self.action_cursor_down()

    def action_collapse_or_leave(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded and node.allow_expand and not node.is_root:
            node.collapse()
        else:
            self.action_cursor_parent()

    @on(Tree.NodeHighlighted)
    def _announce(self, event: Tree.NodeHighlighted[str]) -> None:
        self.post_message(ModuleHighlighted(event.node.data or ""))
