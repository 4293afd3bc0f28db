"""Quantization simulation in torch: measured error instead of heuristics.

- :data:`SCHEMES` (one file each in ``schemes/``) and :data:`FLOAT`;
- :class:`Plan`: which module is quantized with which scheme (JSON file format
  ``tui-quantreport.plan/1``);
- :class:`ErrorAnalysis`: local SQNR per module and scheme, end-to-end SQNR of a
  plan, one-at-a-time sensitivity, on a few probe batches; ``static_outputs``
  (:data:`STATIC_OUTPUTS`) says whether a static module emits int8 (torch.ao's
  converted modules) or float (torchao's static config);
- :class:`Sqnr` and :func:`sqnr_db`: 20 log10(||y|| / ||y - y_hat||) (torchao's
  ``compute_error``), or "SQNR undefined: <reason>".

Only torch is needed; qparams equal those torch's observers compute.
"""

from __future__ import annotations

from tui_quantreport.engine.quantsim.error_analysis import (
    DEFAULT_CLIP_PERCENTILE,
    DEFAULT_MIN_GAIN_DB,
    DEFAULT_PROBE_BATCHES,
    STATIC_OUTPUTS,
    Cost,
    ErrorAnalysis,
    LocalMeasurement,
    MeasurementCancelled,
    SimulationError,
    ranges_from_stats,
)
from tui_quantreport.engine.quantsim.kinds import SIMULATED, ModuleKind, kind_of
from tui_quantreport.engine.quantsim.probes import ProbeRecorder, take_probes
from tui_quantreport.engine.quantsim.qparams import (
    REDUCE_RANGE,
    QParams,
    activation_qparams,
)
from tui_quantreport.engine.quantsim.schemes import FLOAT, SCHEMES, Scheme
from tui_quantreport.engine.quantsim.sqnr import Sqnr, gain, sqnr_db

__all__ = [
    "DEFAULT_CLIP_PERCENTILE",
    "DEFAULT_MIN_GAIN_DB",
    "DEFAULT_PROBE_BATCHES",
    "FLOAT",
    "REDUCE_RANGE",
    "SCHEMES",
    "SIMULATED",
    "STATIC_OUTPUTS",
    "Cost",
    "ErrorAnalysis",
    "LocalMeasurement",
    "MeasurementCancelled",
    "ModuleKind",
    "ProbeRecorder",
    "QParams",
    "Scheme",
    "SimulationError",
    "Sqnr",
    "activation_qparams",
    "gain",
    "kind_of",
    "ranges_from_stats",
    "sqnr_db",
    "take_probes",
]
