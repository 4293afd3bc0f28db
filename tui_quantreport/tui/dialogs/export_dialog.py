"""The export dialog (``e``): what to write (a list of targets), and where.

Each :class:`ExportTarget` names a file kind (the JSON report, the Markdown
report…) and how to write it; the main screen builds the list, so a new kind of
file (a plan, a config) is one more entry. A target writes what is current
*when Export is pressed*, not when the dialog opened: a calibration that
finishes while the dialog is open is in the file, and while one runs the dialog
says so. The path starts absolute; a typed suffix picks the matching target; an
existing file is overwritten only after a second Enter. A failed write leaves
no partial file (the engine's :func:`write_atomic`) and the dialog stays open
with the reason.

Beside the reports and the plan it offers the plan's configuration for
torchao, PT2E and torch.ao (issue 8): such a target is *deferred*, the dialog
dismisses with a :class:`ConfigRequest` and the main screen exports it in a
worker (the recommended plan needs a measurement).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.dom import DOMNode
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, RadioButton, RadioSet, Static

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.escape import printable
from tui_quantreport.tui.panes.ordered_input import OrderedInput


@dataclass(frozen=True)
class ExportTarget:
    """One kind of file the dialog can write."""

    key: str  # short id, used in widget ids: "json"
    title: str  # shown beside its radio button: "JSON report"
    suffix: str  # the file suffix it is written with: ".json"
    write: Callable[[Path], Path] | None  # writes the file (atomically), returns the path; UserError on failure
    deferred: bool = False  # True: the dialog dismisses with a ConfigRequest instead of writing


@dataclass(frozen=True)
class ConfigRequest:
    """Export the plan for ``target`` to ``path`` (the main screen does it in a worker)."""

    target: str
    path: str


def target_for_suffix(targets: Sequence[ExportTarget], path: str) -> ExportTarget | None:
    """The target whose suffix ``path`` ends with (the longest match: ``.plan.json`` before ``.json``)."""
    name = path.strip().lower()
    matches = [t for t in targets if name.endswith(t.suffix.lower())]
    return max(matches, key=lambda t: len(t.suffix)) if matches else None


class ExportDialog(ModalScreen["str | ConfigRequest | None"]):
    """Dismisses with the written path (absolute), a :class:`ConfigRequest`, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        # Priority: the path field would take them to scroll; the radio list keeps its own (check_action).
        Binding("up", "pick(-1)", "Previous kind", show=False, priority=True),
        Binding("down", "pick(1)", "Next kind", show=False, priority=True),
    ]

    def __init__(
        self,
        targets: Sequence[ExportTarget],
        path: str,
        owner: DOMNode | None = None,
        *,
        title: str = "Export",
        action: str = "Export",
    ) -> None:
        """``owner`` is watched for ``calibrating`` (to say the file will hold the results as they are);
        ``title`` heads the dialog and ``action`` names its button (``Save statistics`` / ``Save``)."""
        super().__init__()
        self.title_text = printable(title)
        self.action_text = action
        self.targets = tuple(targets)
        self.default_path = path
        self.target = self.targets[0]
        self.owner = owner
        self._confirm_overwrite: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static(Content.styled(self.title_text, "bold"), id="export-title")
            if len(self.targets) > 1:
                yield Label("What")
                with RadioSet(id="export-format"):
                    for index, target in enumerate(self.targets):
                        yield RadioButton(target.title, value=index == 0, id=f"format-{target.key}")
            else:  # one kind of file (the statistics): said, not offered as a choice
                yield Static(Content.styled(self.targets[0].title, "dim"), id="export-what")
            yield Label("Path")
            yield OrderedInput(self.default_path, id="export-path", select_on_focus=False)
            yield Static("", id="export-note")
            yield Static("", id="export-error")
            with Horizontal(id="export-buttons"):
                yield Button(self.action_text, variant="primary", id="export")
                yield Button("Cancel", id="cancel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-error").display = False
        self.query_one("#export-note").display = False
        self.set_focus(self.query_one("#export-path", Input))
        if self.owner is not None:
            self.watch(self.owner, "calibrating", self._show_calibrating)

    def on_key(self, event: events.Key) -> None:
        """Keys typed before the path field had focus (right after ``e``) go to it, in order."""
        field = self.query_one("#export-path", Input)
        if self.focused is None and event.key != "escape":
            event.stop()
            event.prevent_default()
            self.set_focus(field)
            field.post_message(events.Key(event.key, event.character))

    def _show_calibrating(self, calibrating: bool) -> None:
        note = self.query_one("#export-note", Static)
        note.update(
            Content.styled(
                "A calibration is running: the file will hold the results as they are when you press "
                "Export (the finished calibration if it ends first).",
                "$warning",
            )
        )
        note.display = calibrating

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pick" and isinstance(self.focused, RadioSet):
            return False  # the radio list moves its own highlight
        return True

    def action_pick(self, step: int) -> None:
        """↑ / ↓ pick the previous or next kind of file, wherever the focus is (the dialog opens in
        the path field, where they would do nothing)."""
        if len(self.targets) < 2:
            return
        index = (self.targets.index(self.target) + step) % len(self.targets)
        self.query_one(f"#format-{self.targets[index].key}", RadioButton).value = True

    @on(RadioSet.Changed)
    def _target_chosen(self, event: RadioSet.Changed) -> None:
        key = (event.pressed.id or "").removeprefix("format-")
        self.target = next((t for t in self.targets if t.key == key), self.targets[0])
        path_input = self.query_one("#export-path", Input)
        current = target_for_suffix(self.targets, path_input.value)
        if current is not None and current is not self.target:
            value = path_input.value.strip()
            path_input.value = value[: len(value) - len(current.suffix)] + self.target.suffix

    @on(Input.Changed, "#export-path")
    def _path_typed(self, event: Input.Changed) -> None:
        """A typed suffix picks its target (``report.md`` ticks Markdown)."""
        self._confirm_overwrite = None
        self.query_one("#export-error").display = False
        # The longest matching suffix decides: "x.plan.json" is the plan, not the JSON report.
        target = target_for_suffix(self.targets, event.value)
        if target is not None and target is not self.target:
            self.target = target
            self.query_one(f"#format-{target.key}", RadioButton).value = True

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export")
    def action_export(self) -> None:
        """Write the chosen target; ask before overwriting; on failure, say why and stay open."""
        text = self.query_one("#export-path", Input).value.strip()
        if not text:
            self._error("Give a path to write to.")
            return
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        # A typed suffix wins over the radio buttons: "report.md" is written as Markdown.
        target = target_for_suffix(self.targets, text) or self.target
        problem = unwritable(path)
        if problem is not None:
            self._error(problem)
            return
        if path.is_file() and self._confirm_overwrite != path:
            self._confirm_overwrite = path
            self._error(f"{path} exists: press Enter ({self.action_text}) again to overwrite it, or change the path.")
            return
        if target.deferred or target.write is None:  # written by the main screen, in a worker
            self.dismiss(ConfigRequest(target.key, str(path)))
            return
        try:
            written = target.write(path)
        except UserError as exc:
            self._error(str(exc))
            return
        self.dismiss(str(written))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def _error(self, text: str) -> None:
        error = self.query_one("#export-error", Static)
        error.update(Content(text))
        error.display = True


def unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written, in one sentence (None when it can, as far as can be told
    before writing): a folder, a missing or read-only folder, a read-only file."""
    if path.is_dir():
        return f"Cannot write {path}: it is a folder; add a file name."
    parent = path.parent
    if not parent.exists():
        return f"Cannot write {path}: the folder {parent} does not exist."
    if not parent.is_dir():
        return f"Cannot write {path}: {parent} is not a folder."
    if path.exists() and not os.access(path, os.W_OK):
        return f"Cannot write {path}: the file is read-only."
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        return f"Cannot write {path}: no permission to write in {parent}."
    return None
