"""The main screen's state: its reactives and the bookkeeping its controllers share.

:class:`MainState` is the base of every controller under :mod:`tui_quantreport.tui.controllers`
and of :class:`~tui_quantreport.tui.main_screen.MainScreen`, which puts them together. The panes
are bound to these reactives with ``data_bind`` (see :meth:`MainScreen.compose`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.reactive import var
from textual.screen import Screen
from textual.timer import Timer

from tui_quantreport.engine.defaults import PROBE_BATCHES as DEFAULT_PROBE_BATCHES
from tui_quantreport.tui.messages import (
    CalibrationProgress,
    FrontierMeasured,
)
from tui_quantreport.tui.model_session import (
    DetectorInfo,
    Loaded,
    Measured,
    ModelSession,
)
from tui_quantreport.tui.panes.detector_sidebar import MIN_GAIN
from tui_quantreport.tui.workers import said

if TYPE_CHECKING:
    from concurrent.futures import Future

    from tui_quantreport.engine.layers import LayerRow
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.quantsim import Sqnr
    from tui_quantreport.engine.quantsim.planner import Planner
    from tui_quantreport.engine.report import Report
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.stats import Stats
    from tui_quantreport.tui.panes.depth_plot import DepthPoint


@dataclass(frozen=True)
class Verified:
    """The last ``v``: the target and the plan it verified, and the SQNR it achieved (None: n/a)."""

    target: str
    modules: Mapping[str, str]
    achieved_db: float | None


@dataclass(frozen=True)
class LayerData:
    """What the "which layers hurt" screen shows (see :meth:`MainScreen.layer_data`)."""

    rows: Sequence[LayerRow]
    schemes: Sequence[str]
    points: Sequence[DepthPoint]
    output_db: float | None
    depth_note: str
    headline: str


#: Below this many columns the sidebar is collapsed.
NARROW_WIDTH = 100

NOT_CALIBRATED = "Not calibrated yet: press c to run the calibration batches through the model."

#: The parameter the ``t`` key edits: (detector, parameter).
TOLERANCE = ("dynamic_vs_static_detector", "tolerance")

#: How often the loader worker looks whether the app is quitting while the model loads (seconds).
LOAD_POLL = 0.05

#: Seconds the tree cursor must rest on a module before the detail view redraws.
DETAIL_DELAY = 0.04

#: Probe batches the error analysis runs on (the first K calibration batches).
PROBE_BATCHES = DEFAULT_PROBE_BATCHES

#: Plan changes closer than this many seconds are coalesced: the first is evaluated at once, the
#: last once the plan has rested this long.
PLAN_DELAY = 0.25


class MainState(Screen[None]):
    """The state of the main screen (reactives and the controllers' shared bookkeeping)."""

    # State ------------------------------------------------------------------

    #: The report shown: the last calibration judged with the current settings (None while loading).
    report: var[Report | None] = var(None, always_update=True)
    #: The engine settings (detectors and parameters), replaced (never mutated) on every change.
    settings: var[Settings | None] = var(None, always_update=True)
    #: The registry's detectors, in order (their position fixes their badge colour).
    detectors: var[Sequence[DetectorInfo]] = var(tuple)
    #: Each detector's position in the registry.
    detector_index: var[Mapping[str, int]] = var(dict)
    #: The module the detail view shows ("" for the model), once the tree's cursor rests on it.
    detail_fqn: var[str | None] = var(None)
    #: The tree filter ("" shows every module) and whether observers are shown.
    filter_text = var("")
    #: Pane widths set with < > [ ] (columns; 0: the stylesheet's own width).
    sidebar_width = var(0)
    tree_width = var(0)
    show_helpers = var(False)
    #: Calibrate on at most this many batches (None: all).
    max_batches: var[int | None] = var(None)
    #: Whether a calibration is running, and whether the model is loaded (both decide the footer's keys).
    calibrating = var(False, bindings=True)
    #: Whether an export or verification of the plan (``v``, ``e``) is running.
    applying = var(False, bindings=True)
    loaded = var(False, bindings=True)
    #: The measured error of the last calibration (None until measured), the what-if plan, its
    #: end-to-end SQNR (the last computed value stays while a new one is computed: ``plan_pending``),
    #: and the one-at-a-time sensitivity when measured.
    measured: var[Measured | None] = var(None, always_update=True, bindings=True)
    plan: var[Plan | None] = var(None, always_update=True)
    plan_sqnr: var[Sqnr | None] = var(None, always_update=True)
    plan_pending = var(False)
    sensitivity: var[Mapping[str, Sqnr] | None] = var(None, always_update=True)
    #: The SQNR along depth of ``depth_plan`` ({fqn: SQNR of its input under the plan}), measured
    #: while the "which layers hurt" screen is open; None until then.
    depth: var[Mapping[str, Sqnr] | None] = var(None, always_update=True)
    #: What limits the plan: the module, and the plan's end-to-end SQNR with it kept in float.
    limit: var[tuple[str, Sqnr] | None] = var(None, always_update=True)
    #: What ``n`` / ``N`` walk by: "gain" (the findings' measured gain) or "sensitivity".
    walk_by = var("gain")
    #: What a running measurement is doing ("" when none): Esc cancels it.
    measuring = var("", bindings=True)
    #: Findings whose measured gain is below this many dB are minor (shown, not badged); the
    #: recommended plan takes the cheapest scheme within it of the best. Changing it re-judges the
    #: kept measurement (engine ``severity.assess``), never measures again.
    min_gain_db = var(MIN_GAIN.default)
    #: The deployment target the plan is made for (a name of the registry: the sidebar's choice,
    #: ``--target``, else torchao on the model's device; "" until loaded) and the names offered.
    target = var("", always_update=True)
    target_names: var[Sequence[str]] = var(tuple)
    #: The last verification (``v``), shown beside the plan's SQNR while it is of the plan and target on screen.
    verified: var[Verified | None] = var(None)

    def __init__(
        self,
        spec: str,
        loading: Future[Loaded],
        max_batches: int | None = None,
        probe_batches: int = PROBE_BATCHES,
        plan_to_load: tuple[Mapping[str, object], str] | None = None,
    ) -> None:
        """``loading`` is the model being built in the background (see :meth:`ModelSession.load_in_background`);
        ``probe_batches`` is how many batches the measured error runs on (0: no measurement);
        ``plan_to_load`` a plan file's (JSON, path) to adopt once the error is measured (``--plan``)."""
        super().__init__()
        #: A plan file waiting for the measurement to be adopted: (its JSON, its path).
        self._plan_to_load = plan_to_load
        #: Plan edits to undo (older last) and undone edits to redo.
        self._undo: list[Plan] = []
        self._redo: list[Plan] = []
        self._depth_plan: Plan | None = None
        #: Sensitivity measured so far for ``_sens_plan`` (kept when cancelled: S resumes), and
        #: the seconds each module took (the estimate and the ETA come from them).
        self._sens_plan: Plan | None = None
        self._sens_done: dict[str, Sqnr] = {}
        self._sens_seconds: list[float] = []
        self._ask_after_timing = False
        self._limit_plan: Plan | None = None
        self.spec = spec
        self.probe_batches = probe_batches
        self.model: ModelSession | None = None
        self.stats: Stats | None = None  # the kept engine Stats snapshot
        self.load_failed = False
        self.set_reactive(MainState.max_batches, max_batches)
        self._loading = loading
        self._calibrate_when_loaded = False
        self._cancel = threading.Event()
        self._generation = 0
        self._gain_generation = 0
        self._recommended: list[str] = []
        self._detail_timer: Timer | None = None
        self._pending_fqn = ""
        self._plan_timer: Timer | None = None
        self._last_plan_change = float("-inf")
        #: The last plan's size (plan, measurement, size): the header asks for it on each redraw.
        self._plan_size_of: tuple[Plan, object, tuple[float, float | None, float | None] | None] | None = None
        self._measure_cancel = threading.Event()
        #: The planner's frontier for the current measurement (``F``), and the size of each plan picked from it.
        self._frontier: FrontierMeasured | None = None
        self._planner: tuple[Measured, Planner] | None = None
        #: The target torchao runs on the model's device (what no choice means), and whether the
        #: running measurement follows a change of target (the plan kept from last time is not adopted then).
        self._default_target = ""
        self._target_changed = False

    def post_calibration_progress(self, done: int, total: int | None) -> None:
        """A worker's calibration progress, posted to the screen (safe from any thread)."""
        self.post_message(CalibrationProgress(done, total))

    def said_from_thread(self, title: str) -> Callable[[BaseException], None]:
        """A worker's failure handler that says the exception in an error notification titled
        ``title`` (called in the worker thread; posts nothing)."""

        def say(exc: BaseException) -> None:
            self.app.call_from_thread(self.notify, said(exc), title=title, severity="error", markup=False)

        return say

    if TYPE_CHECKING:  # what the controllers ask of one another (each is defined in one controller)

        def start_measurement(self) -> None: ...  # controllers.measure
        def choose_target(self, loaded: Loaded) -> None: ...  # controllers.export
        def set_target(self, name: str) -> None: ...  # controllers.export
        def request_limit(self) -> None: ...  # controllers.measure
        def _reevaluate(self) -> None: ...  # controllers.session
        def save_user_settings(self) -> None: ...  # controllers.session
        def _adopt_waiting_plan(self, measured: Measured) -> None: ...  # controllers.plan
        def set_plan(self, plan: Plan, *, undoable: bool = True) -> None: ...  # controllers.plan
        def _needs_the_model(self, what: str) -> None: ...  # controllers.plan
        @property
        def plan_origin(self) -> str: ...  # controllers.plan
        def plan_source(self) -> str: ...  # controllers.plan
        def plan_of_record(self) -> Plan | None: ...  # controllers.plan
        def plan_data_of_record(self) -> dict[str, object] | None: ...  # controllers.plan
        def report_of_record(self) -> Report | None: ...  # controllers.plan


def calibrated_on(batches: int) -> str:
    """``Calibrated on 1 batch`` / ``Calibrated on 24 batches`` (the status line's first words)."""
    return f"Calibrated on {batches:,} batch{'es' if batches != 1 else ''}"
