"""The report: plain, immutable data that every front end renders.

Nothing here holds a tensor. A :class:`Report` is what the app's tree, detail
view and exporters read; building one never touches the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from tui_quantreport.engine.defaults import MIN_GAIN_DB
from tui_quantreport.engine.module_info import ModuleInfo


class Status(str, Enum):
    """A detector's verdict on one module."""

    RECOMMEND = "recommend"  # a change is recommended
    OK = "ok"  # observed, nothing to change
    NOT_OBSERVED = "not_observed"  # never called during calibration
    NOT_APPLICABLE = "not_applicable"  # the detector cannot judge (with a reason)
    INFO = "info"  # worth knowing, but no change applies to this module (no badge, not counted)


@dataclass(frozen=True)
class Evidence:
    """The deciding number against its threshold, e.g. ``S = 0.31 <= 0.5``."""

    label: str
    value: float | None
    threshold: str  # as people read it: "<= 0.5", "in [0.5, 2]", "> 3.5"
    decides: bool  # whether this comparison is the one that triggered the verdict
    shown: str = ""  # the value as people read it, in the threshold's unit ("43%", "yes")

    def __post_init__(self) -> None:
        if not self.shown:
            text = "undefined" if self.value is None else f"{self.value:.4g}"
            object.__setattr__(self, "shown", text)


@dataclass(frozen=True)
class Series:
    """Per-channel numbers worth a plot, with the band or line they are held against."""

    title: str
    values: tuple[float | None, ...]
    lower: float | None = None
    upper: float | None = None
    ylabel: str = ""


@dataclass(frozen=True)
class Finding:
    """One detector's verdict on one module, with its reason and numbers."""

    detector: str
    module: str
    status: Status
    headline: str
    reason: str
    values: dict[str, Any]
    evidence: tuple[Evidence, ...] = ()
    series: tuple[Series, ...] = ()

    @property
    def recommended(self) -> bool:
        return self.status is Status.RECOMMEND


class Findings(Mapping[str, Finding]):
    """A detector's findings by module fqn: verdicts known at once, details built on first read.

    On a model of thousands of modules the tree needs only each module's
    verdict; the reason text, evidence and plots of a module are built when
    someone looks at it (or exports), and then kept.
    """

    def __init__(self, statuses: Mapping[str, Status], build: Callable[[str], Finding]):
        self.statuses = dict(statuses)
        self._build = build
        self._built: dict[str, Finding] = {}

    def __getitem__(self, fqn: str) -> Finding:
        finding = self._built.get(fqn)
        if finding is None:
            if fqn not in self.statuses:
                raise KeyError(fqn)
            finding = self._built[fqn] = self._build(fqn)
        return finding

    def __iter__(self) -> Iterator[str]:
        return iter(self.statuses)

    def __len__(self) -> int:
        return len(self.statuses)

    def __contains__(self, fqn: object) -> bool:
        return fqn in self.statuses


@dataclass(frozen=True)
class DetectorReport:
    """One detector's findings over the model, keyed by module fqn."""

    name: str
    title: str
    glyph: str
    params: dict[str, Any]
    summary: str
    findings: Findings
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def recommended(self) -> list[str]:
        return [fqn for fqn, s in self.findings.statuses.items() if s is Status.RECOMMEND]


@dataclass(frozen=True)
class PointSummary:
    """What was seen at one side of a module, for the statistics table."""

    role: str  # "pre" or "post"
    calls: int
    shapes: tuple[tuple[int, ...], ...]
    minimum: float | None
    maximum: float | None
    comparison_stat: float | None
    channels: int | None
    axis: int | None
    finite: bool
    channel_min: tuple[float, ...] = ()
    channel_max: tuple[float, ...] = ()
    #: Why ``axis`` holds the channels ("Linear: features on the last axis", "follows its
    #: input's producer ...", "set by --ch-axis ..."), or why there is no per-channel view.
    axis_reason: str = ""
    #: The observed tensors' dtype ("float32"; "int64" for token ids, which are not activations).
    dtype: str = ""
    #: Calls whose tensor had no elements: skipped, not counted in ``calls``.
    empty: int = 0


@dataclass(frozen=True)
class ModuleSummary(ModuleInfo):
    """A module of the tree with what calibration saw at its input and output."""

    points: tuple[PointSummary, ...] = ()

    @property
    def params(self) -> int:
        """Parameters of the module and its children (shared ones once)."""
        return self.total_params

    @property
    def observed(self) -> bool:
        return any(p.calls for p in self.points)

    @property
    def calls(self) -> int:
        return max((p.calls for p in self.points), default=0)


class Level(str, Enum):
    """How much a finding matters, from measurement (see engine/severity.py)."""

    MAJOR = "major"  # a recommendation whose advice gains at least min_gain_db
    MINOR = "minor"  # a recommendation whose advice gains less: shown, not badged
    UNMEASURED = "unmeasured"  # a recommendation the simulation could not measure: badged, ranked last
    DUPLICATE = "duplicate"  # the same tensor is reported on another module
    NONE = "none"  # not a recommendation

    @property
    def badged(self) -> bool:
        return self in (Level.MAJOR, Level.UNMEASURED)


@dataclass(frozen=True)
class Severity:
    """A finding's measured consequence: the dB its advice gains, and what that means.

    ``gain_db`` is the local SQNR with the advice applied minus without it, at
    ``measured_on`` (the module that quantizes the tensor: the finding's own
    module, or for an input-outlier finding the Linear/Conv reading that
    tensor). ``note`` says it in words, including when the measurement
    contradicts the detector. ``reported_on`` names the module the finding is
    reported on instead, for a duplicate.
    """

    level: Level
    gain_db: float | None
    note: str
    measured_on: str | None = None
    reported_on: str | None = None
    #: Not a recommendation, yet its advice measurably gains at least the threshold: the
    #: measurement contradicts the detector (shown beside the detector's verdict).
    contradicts: bool = False

    @property
    def badged(self) -> bool:
        return self.level.badged


@dataclass(frozen=True)
class ModuleError:
    """Measured quantization error of one quantizable module (dB; None = undefined, see reasons)."""

    fqn: str
    sqnr_db: Mapping[str, float | None]
    #: scheme (or "clipped", "equalized", "sensitivity") -> "SQNR undefined: ..." where the value is None
    reasons: Mapping[str, str]
    clipped_db: float | None = None
    equalized_db: float | None = None
    sensitivity_db: float | None = None
    recommended_scheme: str = ""
    range_source: str = ""
    #: Why the plan did not take the module's best scheme ("" when it did), e.g. under-calibrated.
    scheme_reason: str = ""
    #: Rows (values per input channel) its input saw: in calibration, else on the probes (None: unknown).
    rows: int | None = None
    #: Whether the backend has a dynamic int8 kernel for this module (a convolution has none).
    dynamic_kernel: bool = True
    #: scheme -> deployed bits per weight of this module's weight (None: the scheme cannot take it)
    bits_per_weight: Mapping[str, float | None] = field(default_factory=dict)

    def value(self, key: str) -> float | None:
        """A scheme's SQNR, or "clipped" / "equalized"."""
        if key == "clipped":
            return self.clipped_db
        if key == "equalized":
            return self.equalized_db
        return self.sqnr_db.get(key)


#: A plan's ``origin``: the one the measurement recommends, or one the user changed.
PLAN_RECOMMENDED = "recommended"
PLAN_EDITED = "edited"


@dataclass(frozen=True)
class Measured:
    """What the quantization simulation measured for one report (plain data, no tensors)."""

    probe_batches: int
    modules: Mapping[str, ModuleError]
    #: leaf fqn -> the quantizable module that quantizes the tensor it reads (None: none does)
    quantizer_of: Mapping[str, str | None]
    #: The plan measured end to end (every quantizable fqn -> scheme or "float").
    plan: Mapping[str, str] = field(default_factory=dict)
    plan_sqnr_db: float | None = None
    plan_reason: str = ""
    plan_data: Mapping[str, Any] = field(default_factory=dict)
    sensitivity_measured: bool = False
    #: The plan's end-to-end SQNR of each model output on its own (``plan_sqnr_db`` combines them,
    #: energy-weighted; see engine/quantsim/outputs.py). None where undefined.
    plan_output_sqnr_db: Mapping[str, float | None] = field(default_factory=dict)
    #: The one output the end-to-end SQNR reads (``--output-key``), None for all of them.
    output_key: str | None = None
    #: What the quantized model is held against ("the float model", or how a QAT model was made float).
    reference: str = "the float model"
    #: The budgeted planner's result as plain JSON data (docs/planner.md); None when it did not run.
    planner: Mapping[str, Any] | None = None
    #: One sentence when the recommended or budgeted plan's end-to-end SQNR is below the warning
    #: threshold, naming the units that cost the most ("" otherwise).
    warning: str = ""

    #: The deployment target simulated and planned for ("" when measured before targets).
    target: str = ""
    #: fqn -> {scheme: why the target skips or refuses it}: never in the plan.
    refused: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def plan_origin(self) -> str:
        """Whether the plan is the ``"recommended"`` one or one the user ``"edited"`` (the plan
        data's ``origin``; plans written before it was recorded were the recommended one)."""
        return str(self.plan_data.get("origin") or PLAN_RECOMMENDED)

    def with_plan(
        self,
        plan_data: Mapping[str, Any],
        sqnr_db: float | None,
        reason: str,
        origin: str,
        sensitivity: Mapping[str, tuple[float | None, str]] | None = None,
    ) -> Measured:
        """This measurement with another plan as the plan of record (its JSON data, its end-to-end
        SQNR or why it is undefined, its ``origin``), and the one-at-a-time ``sensitivity``
        ({fqn: (dB or None, reason)}) measured for it, when given."""
        modules = dict(self.modules)
        if sensitivity is not None:
            for fqn, (db, why) in sensitivity.items():
                if fqn in modules:
                    e = modules[fqn]
                    reasons = {k: v for k, v in e.reasons.items() if k != "sensitivity"}
                    if db is None and why:
                        reasons["sensitivity"] = why
                    modules[fqn] = replace(e, sensitivity_db=db, reasons=reasons)
        entries = plan_data.get("modules") or {}
        return replace(
            self,
            modules=modules,
            plan={str(fqn): str(entry.get("scheme")) for fqn, entry in entries.items()},
            plan_sqnr_db=sqnr_db,
            plan_reason=reason if sqnr_db is None else "",
            plan_data={**plan_data, "origin": origin},
            sensitivity_measured=self.sensitivity_measured or sensitivity is not None,
        )

    #: The model's parameters under the plan (MB as deployed, MB in float, average bits per weight).
    plan_size_mb: float | None = None
    float_size_mb: float | None = None
    plan_bits_per_weight: float | None = None
    #: scheme -> its facts as plain data (what each measured scheme is, where it runs)
    schemes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """The whole analysis of one model after one calibration."""

    spec: str
    model_class: str
    modules: dict[str, ModuleSummary]
    batches: int
    detectors: dict[str, DetectorReport]
    stale_params: tuple[str, ...] = ()
    #: Measured error (None until measured; see engine/severity.py).
    measured: Measured | None = None
    #: (detector name, module fqn) -> the finding's severity, when measured.
    severities: Mapping[tuple[str, str], Severity] = field(default_factory=dict)
    min_gain_db: float = MIN_GAIN_DB

    def findings_for(self, fqn: str) -> list[Finding]:
        """Every enabled detector's finding on module ``fqn``, in registry order."""
        return [d.findings[fqn] for d in self.detectors.values() if fqn in d.findings]

    def severity(self, detector: str, fqn: str) -> Severity | None:
        """The measured severity of one finding (None when nothing was measured)."""
        return self.severities.get((detector, fqn))

    def badged(self, detector: str, fqn: str) -> bool:
        """Whether the finding earns a badge: recommended and, when measured, not minor or a duplicate."""
        det = self.detectors.get(detector)
        if det is None or det.findings.statuses.get(fqn) is not Status.RECOMMEND:
            return False
        sev = self.severities.get((detector, fqn))
        return sev is None or sev.badged

    def ranked_modules(self) -> list[tuple[str, list[str]]]:
        """Modules with badged recommendations, the most important first.

        Each entry is the module's fqn and the names of the detectors whose findings
        are badged there. Measured: by the largest measured gain of its findings
        (unmeasured ones after every measured one), then tree order. Not measured:
        most recommending detectors first, then tree order.
        """
        order = {fqn: i for i, fqn in enumerate(self.modules)}
        flagged: dict[str, list[str]] = {}
        for name, det in self.detectors.items():
            for fqn in det.recommended:
                if self.badged(name, fqn):
                    flagged.setdefault(fqn, []).append(name)
        if not self.severities:
            return sorted(flagged.items(), key=lambda item: (-len(item[1]), order.get(item[0], len(order))))

        def key(item: tuple[str, list[str]]) -> tuple:
            gains = [self.severities[(d, item[0])].gain_db for d in item[1] if (d, item[0]) in self.severities]
            measured = [g for g in gains if g is not None]
            return (0 if measured else 1, -max(measured, default=0.0), -len(item[1]), order.get(item[0], len(order)))

        return sorted(flagged.items(), key=key)

    def walk_order(self) -> list[str]:
        """The modules ``n`` / ``N`` visit: by severity when measured, else tree order."""
        if not self.severities:
            return self.recommended_modules()
        return [fqn for fqn, _ in self.ranked_modules()]

    def recommended_modules(self) -> list[str]:
        """Modules with at least one badged recommendation, in tree order."""
        flagged = {fqn for name, d in self.detectors.items() for fqn in d.recommended if self.badged(name, fqn)}
        return [fqn for fqn in self.modules if fqn in flagged]

    @property
    def user_module_count(self) -> int:
        return sum(1 for m in self.modules.values() if not m.is_quant_helper)


#: Why a finding cannot be read as a verdict yet (see :func:`verdict_caveat`).
NOT_CALIBRATED = "not calibrated"
NEEDS_RECALIBRATION = "needs recalibration"


def verdict_caveat(report: Report, finding: Finding) -> str | None:
    """``NOT_CALIBRATED`` when nothing was calibrated yet and the detector needs data,
    ``NEEDS_RECALIBRATION`` when the detector was enabled, or one of its observed parameters
    changed, after the last calibration (``report.stale_params``); else None."""
    detector = finding.detector
    if any(key == detector or key.startswith(detector + ".") for key in report.stale_params):
        return NEEDS_RECALIBRATION
    if report.batches == 0 and finding.status is Status.NOT_OBSERVED:
        return NOT_CALIBRATED
    return None
