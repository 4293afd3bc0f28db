"""The help screen (``?``): every key the app answers to, by where it works.

The rows are read from the bindings themselves (their tooltip, or else their
description), so a new binding shows up here without a change to this file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.table import Table
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, Static, Tree

from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.panes.filter_input import FilterInput
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.panes.param_field import ParamField

#: A section of the help: its title and (keys, what they do) rows.
HelpSection = tuple[str, Sequence[tuple[str, str]]]


class HelpScreen(ModalScreen[None]):
    """A modal table of key bindings; Escape, q or ? closes it."""

    COMPONENT_CLASSES = {"help-screen--key"}

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def __init__(self, sections: Sequence[HelpSection]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        key_style = self.get_component_rich_style("help-screen--key")
        with VerticalScroll(id="help-box"):
            yield Static(Content.styled("tui-quantreport: keys", "bold"), id="help-title")
            for title, rows in self.sections:
                table = Table.grid(padding=(0, 2))
                table.add_column(style=key_style, no_wrap=True, min_width=24)
                table.add_column()
                for keys, description in rows:
                    table.add_row(keys, description)
                yield Static(Content.styled(title, "bold underline"), classes="help-section-title")
                yield Static(table, classes="help-section")
            yield Static(Content.styled("Escape closes this screen.", "dim"), id="help-footer")
        yield Footer(compact=True)  # this screen's keys, not the main screen's (dead here)


def key_sections(app: App, anywhere: Iterable[BindingType], glyphs: Iterable[str] = ()) -> list[HelpSection]:
    """Every key of ``app`` by where it works; ``anywhere``: the main screen's own bindings, and
    ``glyphs``: the badge of every detector the model runs (both passed in by the main screen, so
    this screen imports neither it nor the engine)."""

    def rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
        return [
            (app.get_key_display(binding), binding.tooltip or binding.description)
            for binding in bindings
            if isinstance(binding, Binding) and binding.description
        ]

    from tui_quantreport.tui.panes.channel_plot import ChannelPlot
    from tui_quantreport.tui.panes.module_detail import ModuleDetail

    own = {b.key for b in ModuleTree.BINDINGS if isinstance(b, Binding)}
    tree_keys = [b for b in Tree.BINDINGS if isinstance(b, Binding) and b.key not in ("up", "down", *own)]
    badges = " ".join(glyphs) or "(once loaded)"  # the detectors are known once the model has loaded
    return [
        (
            "Anywhere",
            [
                *rows(anywhere),
                ("^p", "Command palette: every action, detector toggles, jump to a module"),
                ("tab / shift+tab", "Move between the tree, the detail view and the sidebar"),
            ],
        ),
        (
            "Module tree",
            [
                ("↑ / ↓", "Move between modules (the detail view follows)"),
                *rows(ModuleTree.BINDINGS),
                *rows(tree_keys),
                ("home / end / pgup / pgdn", "First, last, previous or next page of modules"),
            ],
        ),
        ("Filter box", [("enter", "Keep the filter and go back to the tree"), *rows(FilterInput.BINDINGS)]),
        (
            "Sidebar",
            [
                ("space / enter", "Tick or untick a detector, press the Calibrate button"),
                ("enter", "Apply the value typed in a parameter (so does leaving the field)"),
                *rows(ParamField.BINDINGS),
            ],
        ),
        (
            "Detail view",
            [
                ("↑ / ↓ / pgup / pgdn", "Scroll the findings, statistics and plots"),
                *rows(ModuleDetail.BINDINGS),
                ("tab", "Focus a plot; then:"),
                *rows(ChannelPlot.BINDINGS),
            ],
        ),
        (
            "Export dialog",
            [("enter", "Write the file (a second enter overwrites an existing one)"), *rows(ExportDialog.BINDINGS)],
        ),
        (
            "Symbols",
            [
                (badges, "A detector's badge: it recommends a change on that module"),
                ("▶", "In a finding: the number that decided the verdict, against its threshold"),
                ("·", "In a finding: a number also considered, that did not decide"),
                ("⟳", "In the sidebar: changing this parameter needs a new calibration (c)"),
                ("│", "In a plot: the threshold, at the column of its value"),
                ("◀ plan", "In measured error: the scheme the what-if plan uses for this module"),
            ],
        ),
        (
            "Mouse",
            [
                ("click", "Select a module, tick a detector, focus a field, press a button"),
                ("wheel", "Scroll the pane under the pointer"),
                ("ctrl+q", "Quit at once, from anywhere (also from a dialog)"),
            ],
        ),
    ]
