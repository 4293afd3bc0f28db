"""The plan on screen: its SQNR and size in the header, edits, undo/redo, loading a plan file, the plan of record.

A part of :class:`~tui_quantreport.tui.main_screen.MainScreen` (its state is in
:class:`~tui_quantreport.tui.main_state.MainState`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.worker import get_current_worker

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.report import PLAN_EDITED, PLAN_RECOMMENDED
from tui_quantreport.tui.dialogs.scheme_picker import SchemePicker
from tui_quantreport.tui.messages import (
    MeasurementFailed,
    PlanEvaluated,
)
from tui_quantreport.tui.model_session import (
    Measured,
    adopt_plan,
)
from tui_quantreport.tui.panes.calibration_bar import CalibrationBar
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.panes.sqnr_panel import FLOAT, sqnr_text

if TYPE_CHECKING:
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.report import Report


from tui_quantreport.tui.controllers.export import default_export_path
from tui_quantreport.tui.main_state import (
    PLAN_DELAY,
    MainState,
)
from tui_quantreport.tui.workers import run_in_thread, said


class PlanController(MainState):
    """The plan on screen: its SQNR and size in the header, edits, undo/redo, loading a plan file, the plan of record."""

    def _adopt_waiting_plan(self, measured: Measured) -> None:
        """After a measurement: the plan file given with ``--plan`` (or loaded before measuring),
        else the edited plan kept from the last run on this model, replaces the recommended one."""
        from tui_quantreport.engine import read_kept_plan

        if self._plan_to_load is not None:
            data, source = self._plan_to_load
            self._plan_to_load = None
            self.load_plan(data, source)
            return
        if self._target_changed:  # measured for a new target: its recommendation, not edits made for another
            self._target_changed = False
            return
        kept = read_kept_plan(self.spec)
        if kept is None or measured.analysis is None:
            return
        try:
            plan = adopt_plan(measured, kept, "the plan kept from the last run")
        except UserError:
            return  # made for another version of the model: the recommended plan stands
        if plan != measured.recommended:
            self.set_plan(plan)
            self.notify(
                f"Your edited plan of this model is back ({len(plan.kept_float):,} kept float): u undoes it.",
                title="Plan restored",
                markup=False,
            )

    def watch_plan_sqnr(self) -> None:
        self._show_plan_in_header()

    def watch_plan_pending(self) -> None:
        self._show_plan_in_header()

    def watch_target(self) -> None:
        self._show_plan_in_header()

    def watch_verified(self) -> None:
        self._show_plan_in_header()

    def _show_plan_in_header(self) -> None:
        """The plan's end-to-end SQNR as deployed on the target (the simulation takes the target's
        recipe), with the last verification's achieved SQNR beside it, in the header, in the longest
        form that fits the terminal's width (the counts, the model's name, the target and the size
        give way, in that order; the SQNR stays)."""
        plan = self.plan
        if plan is None:
            self.app.sub_title = self.spec
            return
        size_text = self._plan_size_text(plan)
        sqnr = sqnr_text(self.plan_sqnr) + size_text
        quantized, kept = len(plan.quantized), len(plan.kept_float)
        total = quantized + kept
        running, short_running = (" (recomputing…)", " …") if self.plan_pending else ("", "")
        deployed = f"{sqnr_text(self.plan_sqnr)} on {self.target}{self._verified_text(plan)}"
        targeted = (
            [
                f"{self.spec} · plan {deployed}{size_text}{running} · {quantized:,} quantized, {kept:,} float",
                f"{self.spec} · plan {deployed}{size_text}{running}",
                f"plan {deployed}{size_text}{running} · {kept:,}/{total:,} float",
                f"plan {deployed}{size_text}{short_running}",
            ]
            if self.target
            else []
        )
        forms = [
            *targeted,
            f"{self.spec} · plan {sqnr}{running} · {quantized:,} quantized, {kept:,} float",
            f"{self.spec} · plan {sqnr}{short_running} · {kept:,}/{total:,} float",
            f"plan {sqnr}{running} · {kept:,}/{total:,} float",
            f"plan {sqnr}{short_running} · {kept:,}/{total:,} float",
            f"plan {sqnr}{short_running}",
        ]
        room = header_room(self.app.size.width, str(self.app.title))
        self.app.sub_title = next((form for form in forms if len(form) <= room), forms[-1])

    def _verified_text(self, plan: Plan) -> str:
        """`` · verify 31.0 dB`` when the last ``v`` verified this target (`` (another plan)`` when
        the plan has changed since), or ""."""
        verified = self.verified
        if verified is None or verified.target != self.target:
            return ""
        db = f"{verified.achieved_db:.1f} dB" if verified.achieved_db is not None else "n/a"
        return f" · verify {db}" + ("" if dict(verified.modules) == dict(plan.modules) else " (another plan)")

    def plan_size(self, plan: Plan) -> tuple[float, float | None, float | None] | None:
        """The model's size under ``plan`` (the engine's count): (MB as deployed, MB in float,
        average bits per weight); None when unknown (a stats file's plan edited since it was saved)."""
        measured = self.measured
        if measured is None:
            return None
        if measured.analysis is not None:
            # Kept for the last plan: the header asks on each redraw (pending, then its SQNR), and
            # summing 600 modules' sizes is ~2 ms of the UI thread.
            kept = self._plan_size_of
            if kept is not None and kept[0] is plan and kept[1] is measured:
                return kept[2]
            size = measured.analysis.plan_size(plan)
            result = size.mb, size.float_mb, size.bits_per_weight
            self._plan_size_of = (plan, measured, result)
            return result
        error = measured.error
        if error is not None and error.plan_size_mb is not None and dict(plan.modules) == dict(error.plan):
            return error.plan_size_mb, error.float_size_mb, error.plan_bits_per_weight
        return None

    def _plan_size_text(self, plan: Plan) -> str:
        """`` · 0.17 MB, 13.0 b/w``: the model's size under ``plan``, or ""."""
        size = self.plan_size(plan)
        if size is None:
            return ""
        mb, _, bpw = size
        return f" · {mb:.3g} MB" + (f", {bpw:.1f} b/w" if bpw is not None else "")

    def subtree(self, fqn: str) -> list[str]:
        """The quantizable modules at or below ``fqn`` ("" is the whole model)."""
        if self.plan is None:
            return []
        return [m for m in self.plan.modules if not fqn or m == fqn or m.startswith(fqn + ".")]

    def set_plan(self, plan: Plan, *, undoable: bool = True) -> None:
        """Make ``plan`` current and recompute its end-to-end SQNR in a worker: at once for a single
        change; changes in quick succession (held key, several toggles) are coalesced and the last
        one is evaluated once the plan rests for :data:`PLAN_DELAY` (a running evaluation of an
        older plan is cancelled). ``u`` undoes it (unless ``undoable`` is False: undo and redo
        themselves); an edited plan is kept for the next launch on this model."""
        if undoable and self.plan is not None and plan != self.plan:
            self._undo.append(self.plan)
            self._redo.clear()
        self._keep_plan(plan)
        # What was being measured for the plan replaced (the module limiting it, its depth plot) is
        # stale: cancelled, so the new plan's evaluation does not wait for the model behind it.
        for group in ("limit", "depth"):
            self.app.workers.cancel_group(self, group)
        self._limit_plan = self._depth_plan = None  # measured again for whichever plan comes back
        with self.app.batch_update():  # the panes and the header follow in one repaint
            self.plan = plan
            if self.sensitivity is not None:  # measured for another plan (assigning None again redraws)
                self.sensitivity = None
            self.plan_pending = True
        now = time.monotonic()
        burst = now - self._last_plan_change < PLAN_DELAY
        self._last_plan_change = now
        if self._plan_timer is not None:
            self._plan_timer.reset()
        elif burst:
            self._plan_timer = self.set_timer(PLAN_DELAY, self._evaluate_current_plan)
        else:
            self._evaluate_current_plan()

    def _keep_plan(self, plan: Plan) -> None:
        """Keep an edited plan for the next launch on this model (forget it when recommended)."""
        measured = self.measured
        if measured is None or measured.analysis is None:
            return
        self._write_kept_plan(None if plan == measured.recommended else plan)

    @work(thread=True, exclusive=True, group="keep-plan", exit_on_error=False, description="keep the plan")
    def _write_kept_plan(self, plan: Plan | None) -> None:
        """Write ``plan`` (its data made here, off the UI thread) or forget the kept one (None)."""
        from tui_quantreport.engine import forget_kept_plan, write_kept_plan

        if plan is None:
            forget_kept_plan(self.spec)
        else:
            write_kept_plan(self.spec, {**plan.to_json_data(), "origin": PLAN_EDITED})

    def action_undo_plan(self) -> None:
        """Undo the last change to the plan (``U`` redoes it)."""
        if not self._undo or self.plan is None:
            self.notify("Nothing to undo: the plan has not been changed.")
            return
        self._redo.append(self.plan)
        self.set_plan(self._undo.pop(), undoable=False)

    def action_redo_plan(self) -> None:
        """Redo the plan change undone last."""
        if not self._redo or self.plan is None:
            self.notify("Nothing to redo.")
            return
        self._undo.append(self.plan)
        self.set_plan(self._redo.pop(), undoable=False)

    def action_load_plan(self) -> None:
        """Ask for a plan file and make it the plan on screen (after the measurement, if none yet)."""
        from tui_quantreport.tui.dialogs.plan_load_dialog import PlanLoadDialog

        def chosen(result: tuple[dict[str, object], str] | None) -> None:
            if result is not None:
                self.load_plan(*result)

        default = str(Path.cwd() / default_export_path(self.spec).replace(".quantreport.json", ".plan.json"))
        self.app.push_screen(PlanLoadDialog(default), chosen)

    def load_plan(self, data: Mapping[str, object], source: str) -> None:
        """Make the plan file ``data`` (read from ``source``) the plan on screen; before the error
        is measured it waits for the measurement. Problems are said in one line."""
        measured = self.measured
        if measured is None:
            self._plan_to_load = (data, source)
            self.query_one(CalibrationBar).say(
                f"The plan {source} is used once the error is measured: press c to calibrate."
            )
            return
        if measured.analysis is None:
            self._needs_the_model("Loading a plan")
            return
        try:
            plan = adopt_plan(measured, data, f"plan {source}")
        except UserError as exc:
            self.notify(str(exc), title="Plan not loaded", severity="error", markup=False)
            return
        self.set_plan(plan)
        self.notify(
            f"Loaded {source}: {len(plan.quantized):,} quantized, {len(plan.kept_float):,} kept float (u undoes).",
            title="Plan loaded",
            markup=False,
        )

    def _evaluate_current_plan(self) -> None:
        self._plan_timer = None
        if self.plan is not None and self.measured is not None:
            self._evaluate_plan(self.measured, self.plan)

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False, description="plan SQNR")
    def _evaluate_plan(self, measured: Measured, plan: Plan) -> None:
        worker = get_current_worker()
        analysis = measured.analysis
        if analysis is None:
            return  # read back from a stats file: edits are refused before they get here
        run_in_thread(  # cancelled: a newer plan replaced this one
            self,
            lambda: PlanEvaluated(plan, analysis.plan_sqnr(plan, should_cancel=lambda: worker.is_cancelled)),
            lambda exc: MeasurementFailed(said(exc)),
        )

    @on(PlanEvaluated)
    def _plan_evaluated(self, message: PlanEvaluated) -> None:
        if message.plan is self.plan:
            with self.app.batch_update():  # the header and the panes in one repaint
                self.plan_pending = False
                self.plan_sqnr = message.sqnr
            # Once the header is painted: the measurement of what limits the plan would otherwise
            # share the interpreter with that repaint.
            self.call_after_refresh(self.request_limit)

    def _plan_targets(self, purpose: str) -> tuple[Plan, Measured, str, list[str]] | None:
        """The plan, the measurement, the selected module and the quantizable modules of its subtree
        for a plan edit; None (said, when there are no modules) when there is nothing to edit."""
        plan, measured = self.plan, self.measured
        if plan is None or measured is None:
            return None
        if measured.analysis is None:
            self._needs_the_model("Editing the plan")
            return None
        fqn = self.query_one(ModuleTree).current_fqn
        targets = self.subtree(fqn)
        if not targets:
            self.notify(f"{fqn or 'The model'} has no quantizable module (Linear, Conv…){purpose}.", markup=False)
            return None
        return plan, measured, fqn, targets

    def _needs_the_model(self, what: str) -> None:
        reason = self.model.unavailable if self.model is not None else None
        self.notify(f"{what} needs the model: {reason or 'the plan was read back from a stats file'}", markup=False)

    def action_toggle_float(self) -> None:
        """Keep the selected module (and its subtree) in float, or quantize it again as recommended."""
        edit = self._plan_targets(" to keep in float")
        if edit is None:
            return
        plan, measured, _, targets = edit
        if any(plan.modules[m] != FLOAT for m in targets):
            new = plan.with_scheme(targets, FLOAT)
        else:
            new = plan
            for m in targets:
                new = new.with_scheme([m], measured.scheme_of(m))
        self.set_plan(new)

    def action_pick_scheme(self) -> None:
        """Choose the scheme of the selected module (and its subtree) from a list with local SQNR."""
        edit = self._plan_targets("")
        if edit is None:
            return
        plan, measured, fqn, targets = edit
        from tui_quantreport.engine import SCHEMES

        local = measured.local.get(fqn) if fqn in plan.modules else None
        current = plan.modules.get(fqn, "") if fqn in plan.modules else ""
        label = fqn if fqn in plan.modules else f"{fqn or 'the model'} ({len(targets):,} modules)"

        def chosen(scheme: str | None) -> None:
            if scheme is not None and self.plan is not None:
                self.set_plan(self.plan.with_scheme(targets, scheme))

        self.app.push_screen(
            SchemePicker(label, list(SCHEMES), local, current, refused_schemes(measured, targets)), chosen
        )

    @property
    def plan_origin(self) -> str:
        """``"recommended"`` while the plan is the measurement's recommendation, else ``"edited"``."""
        measured, plan = self.measured, self.plan
        return PLAN_RECOMMENDED if measured is None or plan is None or plan == measured.recommended else PLAN_EDITED

    def plan_source(self) -> str:
        """The plan in words, for exported files and the verify result: ``edited in the app, …``."""
        if self.plan is None:
            return ""
        what = "edited in the app" if self.plan_origin == PLAN_EDITED else "recommended by the measurement"
        size = self.plan_size(self.plan)
        sized = (
            f", {size[0]:.3g} MB" + (f" at {size[2]:.2f} bits per weight" if size[2] is not None else "")
            if size
            else ""
        )
        return f"{what}, {len(self.plan.kept_float):,} kept float{sized}"

    def plan_of_record(self) -> Plan | None:
        """The plan on screen (with its edits) and its predicted end-to-end SQNR (None while it is
        recomputed): the plan the exports, the stats file and ``v`` use."""
        plan = self.plan
        if plan is None:
            return None
        db = self.plan_sqnr.db if self.plan_sqnr is not None and not self.plan_pending else None
        probes = self.measured.probe_batches if self.measured is not None else plan.probe_batches
        return plan.with_prediction(db, probes)

    def plan_data_of_record(self) -> dict[str, object] | None:
        """The plan file's JSON of :meth:`plan_of_record`, with its ``origin`` and its ``size``
        (MB as deployed, MB in float, average bits per weight; absent when unknown)."""
        plan = self.plan_of_record()
        if plan is None:
            return None
        size = self.plan_size(plan)
        sized = {"size": {"mb": size[0], "float_mb": size[1], "bits_per_weight": size[2]}} if size else {}
        return {**plan.to_json_data(), "origin": self.plan_origin, **sized}

    def report_of_record(self) -> Report | None:
        """The report as exported: its measured section holds the plan on screen (recommended or
        edited, with its predicted SQNR) and the sensitivity measured in the app."""
        report, plan = self.report, self.plan_of_record()
        if report is None or report.measured is None or plan is None or self.measured is None:
            return report
        # The plan's size is the report's own "plan_size" (not repeated in the plan's data).
        data = {k: v for k, v in (self.plan_data_of_record() or {}).items() if k != "size"}
        sqnr = self.plan_sqnr if not self.plan_pending else None
        if sqnr is None:
            reason = "SQNR undefined: the plan was still being evaluated"
        else:
            reason = "exact (no error)" if sqnr.infinite else sqnr.reason
        sensitivity = (
            {fqn: (s.db, s.reason) for fqn, s in self.sensitivity.items()} if self.sensitivity is not None else None
        )
        measured = report.measured.with_plan(data, plan.predicted_sqnr_db, reason, self.plan_origin, sensitivity)
        size = self.plan_size(plan)
        if size is not None:  # the plan of record's size, not the recommended plan's
            measured = replace(measured, plan_size_mb=size[0], float_size_mb=size[1], plan_bits_per_weight=size[2])
        return replace(report, measured=measured)


def refused_schemes(measured: Measured, targets: Sequence[str]) -> dict[str, str]:
    """The schemes that cannot apply to one of ``targets`` (static or dynamic on an Embedding's
    indices, say) or that the deployment target does not run there (a CUDA-only format on a CPU
    target, weight-only Conv2d on torchao's CPU target), each with why: the picker shows them and
    does not offer them."""
    from tui_quantreport.engine import SCHEMES

    analysis = measured.analysis
    if analysis is None:
        return {}
    by_target = analysis.refusals()
    refused: dict[str, str] = {}
    for name, scheme in SCHEMES.items():
        reasons = [
            why
            for fqn in targets
            if fqn in analysis.targets
            and (why := scheme.unsupported(analysis.targets[fqn].kind) or by_target.get(fqn, {}).get(name)) is not None
        ]
        if reasons:
            refused[name] = (
                reasons[0] if len(targets) == 1 else f"{len(reasons):,} of {len(targets):,} modules: {reasons[0]}"
            )
    return refused


#: Cells of the header that are not its title: the icon on the left, the clock's space on the right.
HEADER_SIDES = 8 + 10


def header_room(width: int, title: str) -> int:
    """Cells the header leaves for the sub-title after ``title — ``, on a ``width``-column terminal."""
    return width - HEADER_SIDES - len(title) - len(" — ")
