"""The quantization plan: which module gets which scheme, which stay float (torch-free).

One class, :class:`Plan`, for every part of the tool: the measured-error engine builds and
measures it, the app edits it (``with_scheme``), the exporters apply it (``with_schemes`` records
what a target changed), and it is saved and read as JSON, format ``tui-quantreport.plan/1``::

    {"format": "tui-quantreport.plan/1",
     "model": {"class": str, "fingerprint": str},
     "backend": "x86",
     "target": "torchao-cpu",          (absent in plans written before targets)
     "probe_batches": int, "predicted_sqnr_db": float | null,
     "modules": {fqn: {"scheme": a registered scheme name | "float",
                       "activation": {"scale": float, "zero_point": int, "dtype": "quint8",
                                      "quant_min": int, "quant_max": int} | null}}}

``activation`` holds the calibrated input qparams (:class:`ActivationQParams`), present exactly
for the modules a static scheme quantizes. :meth:`Plan.from_json_data` is the one reader of that
format: anything it cannot use is a :class:`PlanError` in one sentence, and strings from the file
are data (shown with ``repr`` or made printable).

The scheme and target names come from their torch-free facts (:mod:`.core.scheme_facts`,
:mod:`.core.targets`): this module imports nothing above the core.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tui_quantreport.engine import bounded
from tui_quantreport.engine.core.scheme_facts import FLOAT as FLOAT
from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.core.scheme_facts import needs_activation as needs_activation
from tui_quantreport.engine.core.targets import NAMES as TARGET_NAMES
from tui_quantreport.engine.defaults import BACKENDS, DEFAULT_BACKEND
from tui_quantreport.engine.errors import ParamError, UserError
from tui_quantreport.engine.escape import printable

PLAN_FORMAT = "tui-quantreport.plan/1"
#: More probe batches than anyone measures on; a larger count in a plan file is refused.
MAX_PROBE_BATCHES = 1_000_000
#: Deeper nesting than a plan file has (it has 4).
MAX_DEPTH = 8

_FLOAT32_MAX = 3.4028234663852886e38


def scheme_choices() -> tuple[str, ...]:
    """Every scheme a plan may name, ``"float"`` last (the schemes' facts, in the registry's order)."""
    return (*SCHEME_FACTS, FLOAT)


def target_names() -> tuple[str, ...]:
    """Every target name a plan may record (the targets, their old names, ``pt2e``)."""
    return TARGET_NAMES


class PlanError(UserError):
    """A plan that cannot be used (a file that is not a plan, one for another model), in one sentence."""


@dataclass(frozen=True)
class ActivationQParams:
    """The calibrated input qparams of a statically quantized module (torch.ao's convention)."""

    scale: float
    zero_point: int
    dtype: str  # "quint8" or "qint8"
    quant_min: int
    quant_max: int

    @property
    def reduce_range(self) -> bool:
        return self.quant_max - self.quant_min < 255

    def int8(self) -> tuple[float, int]:
        """The calibrated range on torchao's full int8 grid [-128, 127]: scale and zero point.

        An 8-bit plan (qnnpack, onednn) keeps its scale and shifts its zero point by 128. A
        7-bit plan (x86, fbgemm: torch.ao's reduce_range, a kernel constraint torchao does
        not have) is re-derived for 8 bits from the range its qparams represent, with
        torch's affine formula (``MinMaxObserver._calculate_qparams``), in float32.
        """
        if self.quant_max - self.quant_min == 255:
            return self.scale, self.zero_point - self.quant_min - 128
        import numpy as np

        scale = np.float32(self.scale)
        min_neg = min(np.float32(self.quant_min - self.zero_point) * scale, np.float32(0))
        max_pos = max(np.float32(self.quant_max - self.zero_point) * scale, np.float32(0))
        new_scale = max(np.float32(max_pos - min_neg) / np.float32(255), np.finfo(np.float32).eps)
        zero_point = int(min(max(-128 - int(np.round(min_neg / new_scale)), -128), 127))
        return float(new_scale), zero_point

    def range(self) -> tuple[float, float]:
        """The (min, max) these qparams represent: ``(q - zero_point) * scale`` at both ends, in float32."""
        import numpy as np

        scale = np.float32(self.scale)
        return (
            float(np.float32(self.quant_min - self.zero_point) * scale),
            float(np.float32(self.quant_max - self.zero_point) * scale),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "zero_point": self.zero_point,
            "dtype": self.dtype,
            "quant_min": self.quant_min,
            "quant_max": self.quant_max,
        }


@dataclass(frozen=True)
class Plan:
    """Every quantizable module's scheme (or ``"float"``), for one model.

    Equal plans (and their hash, :attr:`key`) decide the same measurement: the model, the backend,
    the target and the schemes; the qparams, the prediction and where the plan came from do not count.
    """

    modules: Mapping[str, str]
    model_class: str
    fingerprint: str
    backend: str = DEFAULT_BACKEND
    #: Calibrated input qparams per module (kept for every module that has them; a static scheme uses them).
    activation: Mapping[str, ActivationQParams] = field(default_factory=dict, repr=False, compare=False)
    probe_batches: int = 0
    predicted_sqnr_db: float | None = None
    #: The deployment target the plan was made for ("" in plans written before targets).
    target: str = ""
    #: Where the plan was read from ("" for a plan made in this process).
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        choices = scheme_choices()
        for fqn, scheme in self.modules.items():
            if scheme not in choices:
                raise ParamError(f"unknown scheme {scheme!r} for {fqn!r}; choose one of {', '.join(choices)}")
        object.__setattr__(self, "modules", MappingProxyType(dict(self.modules)))
        object.__setattr__(self, "activation", MappingProxyType(dict(self.activation)))

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self.key == other.key

    @property
    def key(self) -> tuple:
        """What decides the plan's measurement: a hashable key for caches."""
        return (self.model_class, self.fingerprint, self.backend, self.target, tuple(sorted(self.modules.items())))

    @property
    def quantized(self) -> dict[str, str]:
        """The modules that are quantized, with their schemes (plan order)."""
        return {fqn: s for fqn, s in self.modules.items() if s != FLOAT}

    @property
    def kept_float(self) -> tuple[str, ...]:
        return tuple(fqn for fqn, s in self.modules.items() if s == FLOAT)

    def activation_of(self, fqn: str) -> ActivationQParams | None:
        """The calibrated input qparams of ``fqn`` when its scheme is static (what the file records), else None."""
        scheme = self.modules.get(fqn)
        return self.activation.get(fqn) if scheme is not None and needs_activation(scheme) else None

    @property
    def static_activation(self) -> dict[str, ActivationQParams]:
        """{fqn: qparams} of the modules a static scheme quantizes (plan order)."""
        return {fqn: qp for fqn in self.modules if (qp := self.activation_of(fqn)) is not None}

    def with_schemes(self, changes: Mapping[str, str]) -> Plan:
        """A copy where each module of ``changes`` this plan covers uses its scheme there (no prediction)."""
        choices = scheme_choices()
        modules = dict(self.modules)
        for fqn, scheme in changes.items():
            if scheme not in choices:
                raise ParamError(f"unknown scheme {scheme!r}; choose one of {', '.join(choices)}")
            if fqn in modules:
                modules[fqn] = scheme
        return replace(self, modules=modules, predicted_sqnr_db=None)

    def with_scheme(self, fqns: Iterable[str], scheme: str) -> Plan:
        """A copy where every module in ``fqns`` (those this plan covers) uses ``scheme``."""
        return self.with_schemes(dict.fromkeys(fqns, scheme))

    def with_prediction(self, sqnr_db: float | None, probe_batches: int) -> Plan:
        return replace(self, predicted_sqnr_db=sqnr_db, probe_batches=probe_batches)

    def check_model(self, model_class: str, fingerprint: str) -> None:
        """Raise :class:`PlanError` when this plan was made for another model (its parameters differ)."""
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            raise PlanError(
                f"the plan is for {printable(self.model_class)} (fingerprint {printable(self.fingerprint)}), not this "
                f"{printable(model_class)} (fingerprint {printable(fingerprint)}): its parameters differ"
            )

    def to_json_data(self) -> dict[str, Any]:
        predicted = self.predicted_sqnr_db
        return {
            "format": PLAN_FORMAT,
            "model": {"class": self.model_class, "fingerprint": self.fingerprint},
            "backend": self.backend,
            **({"target": self.target} if self.target else {}),
            "probe_batches": self.probe_batches,
            "predicted_sqnr_db": predicted if predicted is not None and math.isfinite(predicted) else None,
            "modules": {
                fqn: {"scheme": scheme, "activation": qp.to_json() if (qp := self.activation_of(fqn)) else None}
                for fqn, scheme in self.modules.items()
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_data(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json_data(cls, data: Any, source: str = "plan") -> Plan:
        """A plan from parsed JSON; :class:`PlanError` (one sentence naming ``source``) when it is
        not a usable plan."""
        return _read(data, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        """Read a plan file within bounds (:func:`read_data`); :class:`PlanError` in one sentence otherwise."""
        return cls.from_json_data(read_data(path), os.fspath(path))


def read_data(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON of the plan file at ``path``, read within bounds (its size before reading, its JSON
    depth before parsing, finite numbers only) and tagged with the plan format; :class:`PlanError`
    in one sentence otherwise. The checks of the content come with :meth:`Plan.from_json_data`."""
    shown = printable(os.fspath(Path(path).expanduser()))
    text = bounded.read_text(path, "plan file", PlanError)
    data = bounded.loads(text, f"{shown}: not a usable plan file", PlanError, max_depth=MAX_DEPTH)
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise PlanError(f'{shown} is not a tui-quantreport plan (expected "format": "{PLAN_FORMAT}")')
    return data


def read_plan_file(text: str) -> tuple[dict[str, Any], str]:
    """The plan file at ``text`` (a path the user typed) as parsed JSON (:func:`read_data`), and its
    absolute path, for the app (``--plan``, the palette's "Load a plan file"); :class:`PlanError`
    in one sentence otherwise. The checks against the model come when the app adopts it."""
    if not text.strip():
        raise PlanError("give the path of a plan file (.plan.json)")
    path = Path(text.strip()).expanduser()
    return read_data(path), str(path.resolve())


def _read(data: Any, source: str) -> Plan:
    shown = printable(source)

    def bad(what: str) -> PlanError:
        return PlanError(f"{shown}: not a usable plan file: {what}")

    if not isinstance(data, dict):
        raise bad("the top level is not a JSON object")
    if data.get("format") != PLAN_FORMAT:
        raise bad(f"format is {data.get('format')!r}, expected {PLAN_FORMAT!r}")
    model = data.get("model")
    if (
        not isinstance(model, dict)
        or not isinstance(model.get("class"), str)
        or not isinstance(model.get("fingerprint"), str)
    ):
        raise bad("'model' needs a 'class' and a 'fingerprint' string")
    backend = data.get("backend", DEFAULT_BACKEND)
    if backend not in BACKENDS:
        raise bad(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    target = data.get("target")
    if target is not None and target not in target_names():
        raise bad(f"unknown target {target!r}; expected one of {', '.join(target_names())}")
    raw = data.get("modules")
    if not isinstance(raw, dict):
        raise bad("'modules' is not an object of module names")
    modules: dict[str, str] = {}
    activation: dict[str, ActivationQParams] = {}
    choices = scheme_choices()
    for fqn, entry in raw.items():
        scheme = entry.get("scheme") if isinstance(entry, dict) else entry
        if not isinstance(entry, dict) or not isinstance(scheme, str) or scheme not in choices:
            raise bad(f"module {fqn!r} has scheme {scheme!r}; expected one of {', '.join(choices)}")
        qparams = entry.get("activation")
        if qparams is not None:
            activation[fqn] = _activation(qparams, fqn, bad)
        elif needs_activation(scheme):
            raise bad(f"module {fqn!r} is planned {scheme} but has no calibrated 'activation' qparams")
        modules[fqn] = scheme
    predicted = data.get("predicted_sqnr_db")
    if predicted is not None and (
        not isinstance(predicted, (int, float)) or isinstance(predicted, bool) or not math.isfinite(predicted)
    ):
        raise bad("'predicted_sqnr_db' is not a finite number")
    probes = data.get("probe_batches", 0)
    if not isinstance(probes, int) or isinstance(probes, bool) or not 0 <= probes <= MAX_PROBE_BATCHES:
        raise bad(f"'probe_batches' is not a whole number from 0 to {MAX_PROBE_BATCHES:,}")
    return Plan(
        modules,
        model["class"],
        model["fingerprint"],
        backend,
        activation,
        probes,
        float(predicted) if predicted is not None else None,
        target or "",
        source,
    )


def _activation(value: Any, fqn: str, bad: Any) -> ActivationQParams:
    if not isinstance(value, dict):
        raise bad(f"module {fqn!r}: 'activation' is not an object")
    try:
        scale = float(value["scale"])
        zero_point, qmin, qmax = (int(value[k]) for k in ("zero_point", "quant_min", "quant_max"))
        dtype = str(value["dtype"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise bad(f"module {fqn!r}: 'activation' lacks a valid {exc}") from None
    if (
        not (math.isfinite(scale) and 0 < scale <= _FLOAT32_MAX)
        or not -128 <= qmin < qmax <= 255
        or not qmin <= zero_point <= qmax
        or dtype not in ("quint8", "qint8")
    ):
        raise bad(
            f"module {fqn!r}: activation qparams out of range (scale {scale}, zero point {zero_point}, "
            f"[{qmin}, {qmax}], {dtype!r})"
        )
    qparams = ActivationQParams(scale, zero_point, dtype, qmin, qmax)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an overflow is refused below, not warned about
        int8_scale, _ = qparams.int8()
    if not (math.isfinite(int8_scale) and int8_scale > 0):
        raise bad(f"module {fqn!r}: activation qparams overflow the int8 grid (scale {scale})")
    return qparams
