"""Exports and the deployment target: the reports, the plan file, the stats file, the target the
plan is made for (the sidebar's choice, ``--target``), and the plan applied with it (export, verify).

A part of :class:`~tui_quantreport.tui.main_screen.MainScreen` (its state is in
:class:`~tui_quantreport.tui.main_state.MainState`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.notifications import SeverityLevel
from textual.worker import get_current_worker

from tui_quantreport.engine import render, write_atomic
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.escape import printable
from tui_quantreport.tui.dialogs.export_dialog import ConfigRequest, ExportDialog, ExportTarget
from tui_quantreport.tui.panes.calibration_bar import CalibrationBar
from tui_quantreport.tui.screens.verify_screen import VerifyScreen

if TYPE_CHECKING:
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.report import Measured as MeasuredError
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.stats import Stats
    from tui_quantreport.tui.model_session import Loaded


from tui_quantreport.tui.main_state import (
    MainState,
    Verified,
)
from tui_quantreport.tui.workers import run_in_thread, said


class ExportController(MainState):
    """Exports and the deployment target (see the module docstring)."""

    def choose_target(self, loaded: Loaded) -> None:
        """The target of a model just loaded: ``--target``, else the saved choice (one the registry
        no longer knows is said and dropped), else torchao on the model's device; for a stats file,
        the target its plan was measured for."""
        from tui_quantreport.engine import TARGETS, TargetError, default_target, model_device
        from tui_quantreport.engine import resolve_target as resolve

        session = loaded.session
        if session.loaded_model is not None:
            default = default_target(model_device(session.loaded_model.model)).name
        else:
            saved = loaded.measured.recommended.target if loaded.measured is not None else None
            default = saved if saved in TARGETS else default_target().name
        chosen = default
        if loaded.target and session.loaded_model is not None:
            try:
                chosen = resolve(loaded.target).name
            except TargetError as exc:
                self.notify(f"Ignored the saved target: {exc}", title="Settings", severity="warning", markup=False)
        self._default_target = default
        session.target = chosen
        self.target_names = tuple(TARGETS)
        self.target = chosen

    def set_target(self, name: str) -> None:
        """Make the plan for target ``name``: the measurement runs again the way that target runs the
        model (only the schemes it runs; the title's SQNR is the one it achieves). Kept for next time."""
        model, previous = self.model, self.target
        if model is None or name == previous or not name:
            return
        if model.unavailable is not None or model.measurement_unavailable is not None:
            self.target = previous  # the field shows the target still in force
            why = model.unavailable or model.measurement_unavailable
            self.notify(f"Changing the target needs to measure the model: {why}", markup=False)
            return
        if self.measuring:
            self.target = previous
            self.notify("A measurement is running: Esc cancels it, then pick the target again.")
            return
        self.target = name
        model.target = name
        self.save_user_settings()
        bar = self.query_one(CalibrationBar)
        if self.calibrating:  # the measurement that follows the calibration is made for it
            return
        if self.stats is None or not self.stats.batches or self.probe_batches <= 0:
            bar.say(f"The plan will be made for {name}: press c to calibrate.")
            return
        self._target_changed = True
        self.measured, self.plan, self.plan_sqnr, self.sensitivity = None, None, None, None
        self._frontier = None
        self.start_measurement()

    def action_focus_target(self) -> None:
        """Focus the deployment target in the sidebar (showing the sidebar if needed)."""
        from tui_quantreport.tui.panes.param_field import field_id

        main = self.query_one("#main")
        if main.has_class("-narrow") != main.has_class("-sidebar-toggled"):
            main.toggle_class("-sidebar-toggled")  # the sidebar was hidden: show it
        field = self.query_one(f"#{field_id('', 'target')}")
        self.set_focus(field)
        # At the sidebar's top, so the list opens below it (the sidebar may have just been shown).
        self.call_after_refresh(self.query_one("#sidebar").scroll_to_widget, field, animate=False, top=True)

    def export_targets(self) -> list[ExportTarget]:
        """What ``e`` can write. Each target reads the state when it writes, not when the dialog opened."""

        def report_writer(fmt: str) -> Callable[[Path], Path]:
            def write(path: Path) -> Path:
                report = self.report_of_record()
                if report is None:
                    raise UserError("nothing to export: the model is still loading")
                enabled = report.detectors
                disabled = [d.title for d in self.detectors if d.name not in enabled]
                return write_atomic(path, render(report, fmt, disabled), inputs=self._inputs())

            return write

        def write_plan(path: Path) -> Path:
            data = self.plan_data_of_record()
            if data is None:
                raise UserError("no plan yet: calibrate first (c), the plan follows the measurement")
            return write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n", inputs=self._inputs())

        targets = [
            ExportTarget("json", "JSON report", ".json", report_writer("json")),
            ExportTarget("markdown", "Markdown report", ".md", report_writer("markdown")),
        ]
        if self.plan is not None:
            targets.append(ExportTarget("plan", "What-if plan (JSON)", ".plan.json", write_plan))
        # The plan as a configuration (engine/apply), exported in a worker by _start_apply.
        from tui_quantreport.engine import TARGETS

        targets += [ExportTarget(t.name, t.file_label, t.suffix, None, deferred=True) for t in TARGETS.values()]
        return targets

    def action_export(self) -> None:
        """Open the export dialog (it writes the report current when Export is pressed)."""
        if self.report is None:
            self.notify("Nothing to export yet: the model is still loading.")
            return
        path = str(Path.cwd() / default_export_path(self.report.spec))
        self.app.push_screen(ExportDialog(self.export_targets(), path, owner=self), self._exported)

    def _exported(self, path: str | ConfigRequest | None) -> None:
        if isinstance(path, ConfigRequest):
            self._start_apply("export", path.target, path.path)
        elif path:
            self.notify(f"Wrote {path}", title="Exported", markup=False)

    def _inputs(self) -> list[str]:
        """The files this session read (the model's source): no export writes over them."""
        from tui_quantreport.engine import source_path

        return [p for p in (source_path(self.spec),) if p]

    def action_save_stats(self) -> None:
        """Ask where to save the current statistics (``<model>.qstats`` prefilled; an existing file is
        overwritten only after a second Enter), then write them in a worker, to reopen without the model."""
        if self.model is None or self.stats is None or self.settings is None or not self.stats.batches:
            self.notify("Nothing to save yet: press c to calibrate first.")
            return
        target = ExportTarget(
            "qstats", "Statistics file (.qstats): reopens without the model", ".qstats", None, deferred=True
        )
        path = str(Path.cwd() / default_stats_path(self.model.spec))
        self.app.push_screen(
            ExportDialog([target], path, owner=self, title="Save statistics", action="Save"), self._stats_path_chosen
        )

    def _stats_path_chosen(self, chosen: str | ConfigRequest | None) -> None:
        """Write the statistics current now (not when the dialog opened) to the chosen path."""
        if not isinstance(chosen, ConfigRequest):
            return  # Esc: nothing written
        if self.stats is None or self.settings is None or not self.stats.batches:
            return
        report = self.report_of_record()
        error = report.measured if report is not None and self.measured is not None else None
        self._save_stats(self.stats, self.settings, chosen.path, error)

    @work(thread=True, group="save", exit_on_error=False, description="save the statistics")
    def _save_stats(self, stats: Stats, settings: Settings, path: str, error: MeasuredError | None = None) -> None:
        model = self.model
        if model is None:
            return

        def save() -> None:
            written = model.save_stats(stats, settings, path, error)
            self.app.call_from_thread(
                self.notify,
                f"Wrote the statistics of {stats.batches:,} batches to {printable(written)}",
                title="Saved",
                markup=False,
            )

        def failed(exc: BaseException) -> None:  # any failure is said, never a silent worker error
            self.app.call_from_thread(
                self.notify, printable(said(exc)), title="Statistics not saved", severity="error", markup=False
            )

        run_in_thread(self, save, failed)

    def action_verify(self) -> None:
        """Apply the plan with its target's library to a copy of the model and measure it (in a worker;
        Esc cancels). The target: the sidebar's (``--target``, else torchao on the model's device)."""
        from tui_quantreport.engine import default_target

        self._start_apply("verify", self.target or default_target().name, None)

    def _start_apply(self, kind: str, target: str, path: str | None) -> None:
        if self.model is None:
            return
        if (why := self.model.apply_unavailable) is not None:  # a stats file, or an exported graph
            self.notify(why, markup=False)
            return
        if self.calibrating or self.applying:
            self.notify("Busy: wait for the running calibration or verification (Esc cancels it).")
            return
        self.applying = True
        self._cancel.clear()
        what = f"Verifying the {target} export" if kind == "verify" else f"Exporting the {target} configuration"
        if self.plan is None:  # nothing measured yet: the recommended plan is measured first
            what += " of the recommended plan (calibrating and measuring it first)"
        self.query_one(CalibrationBar).start(f"{what}…")
        self._apply(kind, target, path, self.plan_of_record(), self.plan_source())

    @work(thread=True, exclusive=True, group="apply", exit_on_error=False, description="apply the plan")
    def _apply(self, kind: str, target: str, path: str | None, plan: Plan | None, source: str) -> None:
        from tui_quantreport.engine import apply_in_app

        worker = get_current_worker()
        model = self.model
        if model is None:
            return

        def verified(result: Any) -> None:
            modules = dict(plan.modules) if plan is not None else {}
            self.app.call_from_thread(setattr, self, "verified", Verified(result.target, modules, result.achieved_db))

        def apply() -> None:
            title, text, note = apply_in_app(
                kind,
                target,
                path,
                model.loaded_model,
                model.catalog,
                plan,
                progress=self.post_calibration_progress,
                should_cancel=lambda: self._cancel.is_set() or worker.is_cancelled,
                source=source,
                on_result=verified,
            )
            self.app.call_from_thread(self._applied, title, text, note, "information")

        run_in_thread(  # the user's model can raise anything: said, never a traceback
            self,
            apply,
            lambda exc: self.app.call_from_thread(self._applied, None, None, said(exc), "error"),
            lambda: self.app.call_from_thread(self._applied, None, None, "Cancelled.", "warning"),
        )

    def _applied(self, title: str | None, text: str | None, note: str, severity: SeverityLevel) -> None:
        self.applying = False
        self.query_one(CalibrationBar).stop(
            note.splitlines()[0] if note else "", "error" if severity == "error" else ""
        )
        if text is not None and title is not None:
            self.app.push_screen(VerifyScreen(title, text))
        elif note:
            self.notify(note, severity=severity, timeout=10, markup=False)


def default_export_path(spec: str) -> str:
    """A file name for a report of ``spec`` in the current directory: ``showcase.quantreport.json``."""
    target = spec.rpartition(":")[0] if ":" in spec and not spec.endswith(".py") else spec
    stem = Path(target).stem or "model"
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
    return f"{stem}.quantreport.json"


def default_stats_path(spec: str) -> str:
    """A stats file name for ``spec`` in the current directory: ``showcase.qstats``."""
    return default_export_path(spec).removesuffix(".quantreport.json") + ".qstats"
