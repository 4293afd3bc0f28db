"""The plan file an export starts from (``tui-quantreport.plan/1``, see CONTRACTS).

The exporters need more than which scheme each module gets: a static scheme
carries the calibrated activation qparams, and the file carries the predicted
end-to-end SQNR the verification compares against. :class:`PlanFile` reads
exactly that, and :func:`check_plan` refuses a plan for another model (its
fingerprint) or one that names modules the model lacks, each in one sentence.
Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_quantreport.engine.defaults import BACKENDS, DEFAULT_BACKEND
from tui_quantreport.engine.errors import UserError

PLAN_FORMAT = "tui-quantreport.plan/1"
FLOAT = "float"
#: The int8 static schemes (torch.ao's and PT2E's targets run only these static ones).
STATIC_SCHEMES = ("static_per_tensor", "static_per_channel")
#: More probe batches than anyone measures on; a larger count in a plan file is refused.
MAX_PROBE_BATCHES = 1_000_000


def scheme_names() -> tuple[str, ...]:
    """Every registered scheme (the registry in ``quantsim/schemes``, read when a plan is read)."""
    from tui_quantreport.engine.quantsim.schemes import SCHEMES  # the registry imports this module

    return tuple(SCHEMES)


def int8_per_tensor_or_channel(scheme: str) -> bool:
    """Whether ``scheme`` is one torch.ao and PT2E can express (int8 activations and weights per
    tensor or per channel: the int8 four), by its facts."""
    from tui_quantreport.engine.quantsim.schemes import SCHEMES  # the registry imports this module

    known = SCHEMES.get(scheme)
    return (
        known is not None
        and known.facts.family == "int8"
        and known.facts.weight.granularity in ("per_tensor", "per_channel")
        and known.facts.activation_dtype in (None, "int8")
    )


def needs_activation(scheme: str) -> bool:
    """Whether a module planned with ``scheme`` carries calibrated activation qparams (its facts say static)."""
    from tui_quantreport.engine.quantsim.schemes import SCHEMES  # the registry imports this module

    known = SCHEMES.get(scheme)
    return known is not None and known.facts.needs_range


class PlanError(UserError):
    """A plan file that cannot be used for this model."""


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
class PlanEntry:
    scheme: str
    activation: ActivationQParams | None = None


@dataclass(frozen=True)
class PlanFile:
    """A plan as the exporters use it."""

    model_class: str
    fingerprint: str
    modules: Mapping[str, PlanEntry]
    predicted_sqnr_db: float | None = None
    probe_batches: int | None = None
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return str(self.extra.get("backend", "x86"))

    @property
    def target(self) -> str | None:
        """The deployment target the plan was made for (None in plans written before targets)."""
        value = self.extra.get("target")
        return str(value) if value else None

    @property
    def quantized(self) -> dict[str, str]:
        return {fqn: e.scheme for fqn, e in self.modules.items() if e.scheme != FLOAT}

    @property
    def kept_float(self) -> tuple[str, ...]:
        return tuple(fqn for fqn, e in self.modules.items() if e.scheme == FLOAT)

    def schemes(self) -> dict[str, str]:
        return {fqn: e.scheme for fqn, e in self.modules.items()}

    def with_schemes(self, changes: Mapping[str, str]) -> PlanFile:
        modules = dict(self.modules)
        for fqn, scheme in changes.items():
            old = modules[fqn]
            modules[fqn] = PlanEntry(scheme, old.activation if needs_activation(scheme) else None)
        return PlanFile(self.model_class, self.fingerprint, modules, None, self.probe_batches, self.source, self.extra)

    def to_json_data(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "model": {"class": self.model_class, "fingerprint": self.fingerprint},
            "backend": self.backend,
            **({"target": self.target} if self.target else {}),
            "probe_batches": self.probe_batches,
            "predicted_sqnr_db": _finite(self.predicted_sqnr_db),
            "modules": {
                fqn: {"scheme": e.scheme, "activation": e.activation.to_json() if e.activation else None}
                for fqn, e in self.modules.items()
            },
        }

    @classmethod
    def from_json_data(cls, data: Any, source: str = "plan") -> PlanFile:
        def bad(what: str) -> PlanError:
            return PlanError(f"{source}: not a usable plan file: {what}")

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
        raw = data.get("modules")
        if not isinstance(raw, dict):
            raise bad("'modules' is not an object of module names")
        modules: dict[str, PlanEntry] = {}
        choices = (*scheme_names(), FLOAT)
        for fqn, entry in raw.items():
            if not isinstance(entry, dict) or entry.get("scheme") not in choices:
                scheme = entry.get("scheme") if isinstance(entry, dict) else entry
                raise bad(f"module {fqn!r} has scheme {scheme!r}; expected one of {', '.join(choices)}")
            activation = entry.get("activation")
            qparams = _activation(activation, fqn, bad) if activation is not None else None
            static = needs_activation(entry["scheme"])
            if static and qparams is None:
                raise bad(f"module {fqn!r} is planned {entry['scheme']} but has no calibrated 'activation' qparams")
            modules[fqn] = PlanEntry(entry["scheme"], qparams if static else None)
        predicted = data.get("predicted_sqnr_db")
        if predicted is not None and (
            not isinstance(predicted, (int, float)) or isinstance(predicted, bool) or not math.isfinite(predicted)
        ):
            raise bad("'predicted_sqnr_db' is not a finite number")
        probes = data.get("probe_batches")
        if probes is not None and (
            not isinstance(probes, int) or isinstance(probes, bool) or not 0 <= probes <= MAX_PROBE_BATCHES
        ):
            raise bad(f"'probe_batches' is not a whole number from 0 to {MAX_PROBE_BATCHES:,}")
        backend = data.get("backend", DEFAULT_BACKEND)
        if backend not in BACKENDS:
            raise bad(f"unknown backend {backend!r}")
        target = data.get("target")
        if target is not None:
            from tui_quantreport.engine.apply.targets import NAMES

            if target not in NAMES:
                raise bad(f"unknown target {target!r}")
        return cls(
            model["class"],
            model["fingerprint"],
            modules,
            float(predicted) if predicted is not None else None,
            probes if isinstance(probes, int) else None,
            source,
            {"backend": backend, **({"target": target} if target else {})},
        )

    @classmethod
    def load(cls, path: str | Path) -> PlanFile:
        """Read a plan file within bounds (its size before reading, its JSON depth before parsing,
        finite numbers only); :class:`PlanError` in one sentence otherwise."""
        from tui_quantreport.engine import bounded

        text = bounded.read_text(path, "plan file", PlanError)
        data = bounded.loads(text, f"{path}: not a usable plan file", PlanError, max_depth=8)
        return cls.from_json_data(data, str(path))


_FLOAT32_MAX = 3.4028234663852886e38


def _activation(value: Any, fqn: str, bad) -> ActivationQParams:
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
            f"[{qmin}, {qmax}], {dtype})"
        )
    qparams = ActivationQParams(scale, zero_point, dtype, qmin, qmax)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an overflow is refused below, not warned about
        int8_scale, _ = qparams.int8()
    if not (math.isfinite(int8_scale) and int8_scale > 0):
        raise bad(f"module {fqn!r}: activation qparams overflow the int8 grid (scale {scale})")
    return qparams


def check_plan(plan: PlanFile, catalog: Any, spec: str) -> None:
    """Refuse, in one sentence, a plan that is not for this model as a whole: another fingerprint
    (version 2: the module tree, parameters and buffers; a version 1 plan is checked the old
    way), another class, modules the model lacks, or a scheme on a module that has no weight to
    quantize (an observer, an activation)."""
    from tui_quantreport.engine.escape import printable
    from tui_quantreport.engine.modules import is_versioned

    source = printable(plan.source or "plan")
    expected = catalog.fingerprint if is_versioned(plan.fingerprint) else catalog.legacy_fingerprint
    if plan.fingerprint != expected or plan.model_class != catalog.class_name:
        raise PlanError(
            f"{source} was made for {printable(plan.model_class)} (fingerprint {printable(plan.fingerprint)}), "
            f"not for {printable(spec)} ({printable(catalog.class_name)}, fingerprint {catalog.fingerprint})"
        )
    missing = [fqn for fqn in plan.modules if fqn not in catalog.modules]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise PlanError(f"{source} names {len(missing)} module(s) {printable(spec)} lacks: {shown}")
    for fqn, scheme in plan.quantized.items():
        info = catalog.modules[fqn]
        if info.is_quant_helper or not info.is_weighted:
            raise PlanError(
                f"{source} plans {scheme} for module {fqn!r}, a {printable(info.class_name)}, "
                "which has no weight to quantize"
            )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
