"""A quantization plan: which modules are quantized, with which scheme, which stay float.

Plain, immutable data: the app's what-if view edits it (``with_scheme``), the
engine measures it (:meth:`ErrorAnalysis.plan_sqnr`), the config export reads
it. Saved as JSON, format ``tui-quantreport.plan/1``::

    {"format": "tui-quantreport.plan/1",
     "model": {"class": str, "fingerprint": str},
     "backend": "x86",
     "target": "torchao-cpu",          (absent in plans written before targets)
     "probe_batches": int, "predicted_sqnr_db": float | null,
     "modules": {fqn: {"scheme": "static_per_tensor" | "static_per_channel" | "dynamic"
                                 | "weight_only" | "float",
                       "activation": {"scale": float, "zero_point": int, "dtype": "quint8",
                                      "quant_min": int, "quant_max": int} | null}}}

``activation`` holds the calibrated input qparams, present for the static schemes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tui_quantreport.engine.errors import ParamError, UserError
from tui_quantreport.engine.quantsim.qparams import REDUCE_RANGE, QParams
from tui_quantreport.engine.quantsim.schemes import FLOAT, SCHEMES

PLAN_FORMAT = "tui-quantreport.plan/1"
CHOICES = (*SCHEMES, FLOAT)


class PlanError(UserError):
    """A plan file that cannot be read, in one sentence."""


@dataclass(frozen=True)
class Plan:
    """Every quantizable module's scheme (or ``"float"``), for one model."""

    modules: Mapping[str, str]
    model_class: str
    fingerprint: str
    backend: str = "x86"
    #: Calibrated input qparams per module (written for the modules a static scheme quantizes).
    activation: Mapping[str, QParams] = field(default_factory=dict, repr=False, compare=False)
    probe_batches: int = 0
    predicted_sqnr_db: float | None = None
    #: The deployment target the plan was made for ("" in plans written before targets).
    target: str = ""

    def __post_init__(self) -> None:
        for fqn, scheme in self.modules.items():
            if scheme not in CHOICES:
                raise ParamError(f"unknown scheme {scheme!r} for '{fqn}'; choose one of {', '.join(CHOICES)}")
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

    def with_scheme(self, fqns: Iterable[str], scheme: str) -> Plan:
        """A copy where every module in ``fqns`` (those this plan covers) uses ``scheme``."""
        if scheme not in CHOICES:
            raise ParamError(f"unknown scheme {scheme!r}; choose one of {', '.join(CHOICES)}")
        modules = dict(self.modules)
        for fqn in fqns:
            if fqn in modules:
                modules[fqn] = scheme
        return replace(self, modules=modules, predicted_sqnr_db=None)

    def with_prediction(self, sqnr_db: float | None, probe_batches: int) -> Plan:
        return replace(self, predicted_sqnr_db=sqnr_db, probe_batches=probe_batches)

    @property
    def quantized(self) -> dict[str, str]:
        """The modules that are quantized, with their schemes (plan order)."""
        return {fqn: s for fqn, s in self.modules.items() if s != FLOAT}

    @property
    def kept_float(self) -> tuple[str, ...]:
        return tuple(fqn for fqn, s in self.modules.items() if s == FLOAT)

    def to_json_data(self) -> dict[str, Any]:
        modules = {}
        for fqn, scheme in self.modules.items():
            qp = self.activation.get(fqn) if scheme in SCHEMES and SCHEMES[scheme].needs_range else None
            modules[fqn] = {"scheme": scheme, "activation": qp.to_json() if qp is not None else None}
        predicted = self.predicted_sqnr_db
        return {
            "format": PLAN_FORMAT,
            "model": {"class": self.model_class, "fingerprint": self.fingerprint},
            "backend": self.backend,
            **({"target": self.target} if self.target else {}),
            "probe_batches": self.probe_batches,
            "predicted_sqnr_db": predicted if predicted is not None and math.isfinite(predicted) else None,
            "modules": modules,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_data(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json_data(cls, data: Any, source: str = "plan") -> Plan:
        """A plan from parsed JSON; :class:`PlanError` (one line) when it is not a valid plan."""
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise PlanError(f'{source} is not a tui-quantreport plan (expected "format": "{PLAN_FORMAT}")')
        model = data.get("model")
        if (
            not isinstance(model, dict)
            or not isinstance(model.get("class"), str)
            or not isinstance(model.get("fingerprint"), str)
        ):
            raise PlanError(f'{source}: "model" must hold "class" and "fingerprint" strings')
        backend = data.get("backend", "x86")
        if backend not in REDUCE_RANGE:
            raise PlanError(f"{source}: unknown backend {backend!r}; expected one of {', '.join(REDUCE_RANGE)}")
        target = data.get("target", "")
        if target:
            from tui_quantreport.engine.apply.targets import NAMES

            if target not in NAMES:
                raise PlanError(f"{source}: unknown target {target!r}; expected one of {', '.join(NAMES)}")
        elif target is not None and target != "":
            raise PlanError(f'{source}: "target" must be a target name')
        entries = data.get("modules")
        if not isinstance(entries, dict):
            raise PlanError(f'{source}: "modules" must be an object mapping module names to schemes')
        modules: dict[str, str] = {}
        activation: dict[str, QParams] = {}
        for fqn, entry in entries.items():
            scheme = entry.get("scheme") if isinstance(entry, dict) else None
            if scheme not in CHOICES:
                raise PlanError(f"{source}: module '{fqn}' has scheme {scheme!r}; expected one of {', '.join(CHOICES)}")
            modules[fqn] = scheme
            qp = entry.get("activation")
            if qp is not None:
                try:
                    activation[fqn] = QParams(
                        float(qp["scale"]),
                        int(qp["zero_point"]),
                        str(qp["dtype"]),
                        int(qp["quant_min"]),
                        int(qp["quant_max"]),
                    )
                except (TypeError, KeyError, ValueError):
                    raise PlanError(
                        f"{source}: module '{fqn}' has a malformed \"activation\" (needs scale, zero_point, dtype, quant_min, quant_max)"
                    ) from None
        probes = data.get("probe_batches", 0)
        predicted = data.get("predicted_sqnr_db")
        if not isinstance(probes, int) or isinstance(probes, bool) or probes < 0:
            raise PlanError(f'{source}: "probe_batches" must be a whole number')
        if predicted is not None and not isinstance(predicted, (int, float)):
            raise PlanError(f'{source}: "predicted_sqnr_db" must be a number or null')
        return cls(
            modules,
            model["class"],
            model["fingerprint"],
            backend,
            activation,
            probes,
            float(predicted) if predicted is not None else None,
            str(target or ""),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        target = Path(path).expanduser()
        try:
            text = target.read_text(encoding="utf-8")
        except OSError as exc:
            raise PlanError(f"cannot read plan {target}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PlanError(f"plan {target} is not valid JSON: {exc}") from None
        return cls.from_json_data(data, source=f"plan {target}")

    def save(self, path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Path:
        """Write the plan JSON atomically, never over one of ``inputs``; :class:`UserError` naming
        the path on failure."""
        from tui_quantreport.engine.export import write_atomic

        return write_atomic(path, self.to_json(), what="plan", inputs=inputs)

    def check_model(self, model_class: str, fingerprint: str) -> None:
        """Raise :class:`PlanError` when this plan was made for another model."""
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            raise PlanError(
                f"the plan is for {self.model_class} (fingerprint {self.fingerprint}), not this "
                f"{model_class} (fingerprint {fingerprint}): its parameters differ"
            )
