"""Models, batches and plumbing for the reference-parity and degenerate-case tests.

The reference is PyTorch's own model report
(``torch.ao.quantization.fx._model_report``). It runs on an FX-prepared
``GraphModule``; our engine runs on any module. To compare numbers, both run on
deep copies of the same prepared ``GraphModule`` (so module names, fusion and
folded batch-norm weights are identical) with the same batches.

Each reference detector gets its own ``ModelReport`` on its own copy: the
reference keys its inserted observers by name only (``<fqn>.model_report_pre_observer``),
so two detectors sharing a ModelReport would silently share one observer built
with whichever detector's arguments came last (e.g. the outlier detector's
percentile lost to the dynamic-vs-static detector's default 0.9).

Everything here is deterministic (fixed seeds) and small.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.ao.nn.intrinsic import _FusedModule
from torch.ao.quantization import (
    FakeQuantize,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
    QConfig,
    QConfigMapping,
    default_fake_quant,
    default_observer,
)

from tui_quantreport.engine import Report, Session, Settings, Stats, evaluate
from tui_quantreport.engine.modules import is_quant_helper

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)

# The reference modules print a deprecation warning on import; import them quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.ao.quantization.fx._model_report import detector as ref_detector
    from torch.ao.quantization.fx._model_report.model_report import ModelReport
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

PER_CHANNEL = "per_channel_detector"
DYNAMIC = "dynamic_vs_static_detector"
EQUALIZATION = "input_weight_equalization_detector"
OUTLIER = "outlier_detector"
ALL_DETECTORS = (PER_CHANNEL, DYNAMIC, EQUALIZATION, OUTLIER)

#: Our value key -> the reference's key, per detector. Keys missing from a
#: detector's map have no reference counterpart (e.g. our module-level
#: ``recommended`` for equalization, which the reference only prints).
KEY_MAP: dict[str, dict[str, str]] = {
    PER_CHANNEL: {
        "per_channel_supported": "per_channel_quantization_supported",
        "per_channel_used": "per_channel_quantization_used",
    },
    DYNAMIC: {
        "tolerance": "dynamic_static_tolerance",
        "dynamic_recommended": "dynamic_recommended",
        "pre_observer_comp_stat": "input_activation_dynamic_static_comp_stat",
        "pre_observer_data_dist": "input_activation_dynamic_static_data_classification",
        "post_observer_comp_stat": "output_activation_dynamic_static_comp_stat",
        "post_observer_data_dist": "output_activation_dynamic_static_data_classification",
        "is_dynamic_supported": "is_dynamic_supported",
    },
    EQUALIZATION: {
        "channel_recommended": "input_weight_equalization_recommended",
        "channel_metric": "input_weight_channel_comparison_metrics",
        "ratio_threshold": "input_weight_threshold",
        "input_channel_min": "input_activation_per_channel_min",
        "input_channel_max": "input_activation_per_channel_max",
        "weight_channel_min": "weight_per_channel_min",
        "weight_channel_max": "weight_per_channel_max",
    },
    OUTLIER: {
        "outliers_detected": "outliers_detected",
        "percentile_ratio": "outlier_detection_percentile_ratios",
        "batches_used": "outlier_detection_batches_used",
        "sufficient_batches": "outlier_detection_is_sufficient_batches",
        "constant_batches": "constant_batch_counts",
        "channel_max": "input_activation_per_channel_max",
        "ratio_threshold": "outlier_detection_ratio_threshold",
        "reference_percentile": "outlier_detection_reference_percentile",
    },
}

#: How each of our values is compared: "exact", "close" (float rtol 1e-5), "bool", "text".
#: min/max are exact: both sides take amin/amax of the same float32 data.
COMPARISON: dict[str, str] = {
    "per_channel_supported": "bool",
    "per_channel_used": "bool",
    "tolerance": "exact",
    "dynamic_recommended": "bool",
    "pre_observer_comp_stat": "close",
    "post_observer_comp_stat": "close",
    "pre_observer_data_dist": "text",
    "post_observer_data_dist": "text",
    "is_dynamic_supported": "bool",
    "channel_recommended": "bool",
    "channel_metric": "close",
    "ratio_threshold": "exact",
    "input_channel_min": "exact",
    "input_channel_max": "exact",
    "weight_channel_min": "exact",
    "weight_channel_max": "exact",
    "outliers_detected": "bool",
    "percentile_ratio": "close",
    "batches_used": "exact",
    "sufficient_batches": "bool",
    "constant_batches": "exact",
    "channel_max": "exact",
    "reference_percentile": "exact",
}

RTOL = 1e-5

#: What the reference turns an infinite percentile ratio into (torch.nan_to_num of +inf).
REFERENCE_INF = torch.finfo(torch.float32).max

#: The reference's module-level equalization rule (it only prints it): >= 40% of channels.
REFERENCE_MODULE_FRACTION = 0.4


# --------------------------------------------------------------------------- models


def nested_sequential() -> nn.Module:
    """Three levels of Sequential; the first Linear+ReLU is fused by prepare_fx ("0.0")."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Sequential(nn.Linear(8, 16), nn.ReLU()),
        nn.Sequential(nn.Sequential(nn.Linear(16, 16), nn.Tanh()), nn.Linear(16, 8)),
        nn.Linear(8, 4),
    ).eval()


def conv_linear() -> nn.Module:
    """Conv2d, ReLU, pool, flatten, Linear (Conv2d+ReLU fuses to "0.0"/"0.1")."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 4, 3),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 5),
    ).eval()


class MultiQConfigNet(nn.Module):
    """Two convs and three linears, to be given a different qconfig each."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc1 = nn.Linear(4 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.tanh(self.conv1(x))
        x = self.conv2(x)
        x = self.fc1(x.flatten(1))
        return self.head(self.fc2(x))


#: Per-tensor and per-channel observer qconfigs for post-training quantization.
PER_TENSOR_QCONFIG = QConfig(
    activation=default_observer,
    weight=MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
)
PER_CHANNEL_QCONFIG = QConfig(
    activation=default_observer,
    weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
)


def multi_qconfig_mapping() -> QConfigMapping:
    """Global per-tensor; Conv2d per-channel by type; conv2 per-tensor and fc2 per-channel by name.

    Expected per-channel use: conv1 yes (type), conv2 no (name beats type),
    fc1 no (global), fc2 yes (name), head no (global).
    """
    return (
        QConfigMapping()
        .set_global(PER_TENSOR_QCONFIG)
        .set_object_type(nn.Conv2d, PER_CHANNEL_QCONFIG)
        .set_module_name("conv2", PER_TENSOR_QCONFIG)
        .set_module_name("fc2", PER_CHANNEL_QCONFIG)
    )


MULTI_QCONFIG_PER_CHANNEL_USED = {"conv1": True, "conv2": False, "fc1": False, "fc2": True, "head": False}


def conv_bn_relu() -> nn.Module:
    """Conv+BN+ReLU twice (the second grouped), flatten, Linear; BN with non-trivial statistics."""
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, groups=4),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    )
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(0.2, 0.6)  # keeps ReLU outputs dense (no dead channel)
    return model.eval()


#: The fusion groups of :func:`conv_bn_relu` (what prepare_fx fuses too).
CONV_BN_RELU_FUSION = [["0", "1", "2"], ["3", "4", "5"]]


def grouped_conv() -> nn.Module:
    """A grouped conv (8 in, groups 4: weight dim 1 is 2) and a depthwise conv (weight dim 1 is 1)."""
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, groups=4, padding=1),
        nn.Tanh(),
        nn.Conv2d(8, 8, 3, groups=8),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 4),
    )
    with torch.no_grad():
        # Uneven weight columns so the equalization metric varies across channels.
        model[0].weight.mul_(torch.tensor([0.2, 3.0]).view(1, 2, 1, 1))
    return model.eval()


class PerChannelWeightFakeQuantize(FakeQuantize):
    """A weight fake quantizer that is per channel with its *default* arguments.

    The reference reads a qconfig's weight as ``qconfig.weight.p.func()``: the
    bare class, without the ``with_args`` arguments. For this class the bare
    instance is per channel, as the configured one is, so the reference and
    the truth agree and the QAT parity test compares like with like.
    """

    def __init__(self, observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127, **kwargs):
        kwargs.setdefault("dtype", torch.qint8)
        kwargs.setdefault("qscheme", torch.per_channel_symmetric)
        kwargs.setdefault("ch_axis", 0)
        super().__init__(observer=observer, quant_min=quant_min, quant_max=quant_max, **kwargs)


PER_TENSOR_WEIGHT_FAKE_QUANT = FakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver,
    quant_min=-128,
    quant_max=127,
    dtype=torch.qint8,
    qscheme=torch.per_tensor_symmetric,
)

QAT_PER_CHANNEL_QCONFIG = QConfig(activation=default_fake_quant, weight=PerChannelWeightFakeQuantize.with_args())
QAT_PER_TENSOR_QCONFIG = QConfig(activation=default_fake_quant, weight=PER_TENSOR_WEIGHT_FAKE_QUANT)


def qat_model() -> nn.Module:
    """Conv+BN+ReLU, Conv, flatten, two Linears; for prepare_qat_fx / eager prepare_qat."""
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8),
        nn.Linear(8, 3),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def qat_qconfig_mapping() -> QConfigMapping:
    """Per-channel weights everywhere but the Conv "3" and the Linear "6" (per-tensor)."""
    return (
        QConfigMapping()
        .set_global(QAT_PER_CHANNEL_QCONFIG)
        .set_module_name("3", QAT_PER_TENSOR_QCONFIG)
        .set_module_name("6", QAT_PER_TENSOR_QCONFIG)
    )


QAT_PER_CHANNEL_USED = {"0": True, "3": False, "5": True, "6": False}


# -------------------------------------------------------------------------- batches


def dense_batches(
    shape: Sequence[int],
    count: int,
    seed: int,
    scales: Sequence[float] | None = None,
    channel_scales: Sequence[float] | None = None,
) -> list[torch.Tensor]:
    """Gaussian batches, batch b multiplied by ``scales[b]`` and channel c (axis 1) by ``channel_scales[c]``.

    Scaling keeps every value's sign, so data stays dense after a ReLU while a
    batch with a large scale makes the ranges non-stationary.
    """
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for b in range(count):
        x = torch.randn(*shape, generator=generator)
        if scales is not None:
            x = x * scales[b]
        if channel_scales is not None:
            x = x * torch.tensor(channel_scales).view(1, -1, *([1] * (len(shape) - 2)))
        batches.append(x)
    return batches


# ------------------------------------------------------------------ running both sides


def prepare(model: nn.Module, qconfig_mapping: QConfigMapping, example: torch.Tensor, qat: bool = False) -> nn.Module:
    """prepare_fx / prepare_qat_fx on a copy, returned in eval mode (as our engine calibrates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if qat:
            prepared = prepare_qat_fx(copy.deepcopy(model).train(), qconfig_mapping, (example,))
        else:
            prepared = prepare_fx(copy.deepcopy(model).eval(), qconfig_mapping, (example,))
    return prepared.eval()


def reference_detector(name: str, params: Mapping[str, Any] | None = None):
    """The reference detector object for our detector ``name`` with our parameter names."""
    params = dict(params or {})
    if name == PER_CHANNEL:
        return ref_detector.PerChannelDetector(params.get("backend", "x86"))
    if name == DYNAMIC:
        return ref_detector.DynamicStaticDetector(tolerance=params.get("tolerance", 0.5))
    if name == EQUALIZATION:
        return ref_detector.InputWeightEqualizationDetector(ratio_threshold=params.get("ratio_threshold", 0.5))
    if name == OUTLIER:
        return ref_detector.OutlierDetector(
            ratio_threshold=params.get("ratio_threshold", 3.5),
            reference_percentile=params.get("reference_percentile", 0.975),
            fraction_batches_used_threshold=params.get("fraction_batches_used_threshold", 0.95),
        )
    raise KeyError(name)


def reference_report(
    prepared: nn.Module,
    name: str,
    batches: Iterable[Any],
    params: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """One reference detector's dict (fqn -> values), on its own copy of ``prepared``."""
    model = copy.deepcopy(prepared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ModelReport(model, {reference_detector(name, params)})
        model = report.prepare_detailed_calibration()
        with torch.no_grad():
            for batch in batches:
                model(batch)
        return report.generate_model_report(remove_inserted_observers=False)[name][1]


def reference_reports(
    prepared: nn.Module,
    batches: Sequence[Any],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    detectors: Iterable[str] = ALL_DETECTORS,
) -> dict[str, dict[str, dict[str, Any]]]:
    params = params or {}
    return {name: reference_report(prepared, name, batches, params.get(name)) for name in detectors}


def our_run(
    model: nn.Module,
    batches: Iterable[Any],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    detectors: Iterable[str] | None = None,
    ch_axis: int | None = None,
    copy_model: bool = True,
) -> tuple[Report, Stats]:
    """Calibrate and evaluate with our engine (on a deep copy unless told otherwise)."""
    session = Session(copy.deepcopy(model) if copy_model else model)
    settings = Settings.build(detectors, params, ch_axis)
    stats = session.calibrate(batches, settings)
    return evaluate(session.catalog, stats, settings), stats


def our_report(model: nn.Module, batches: Iterable[Any], **kwargs) -> Report:
    return our_run(model, batches, **kwargs)[0]


# --------------------------------------------------------------------- comparison


def _plain(value: Any) -> Any:
    """A reference value (tensor, list of tensors, bool tensor) as plain Python."""
    if isinstance(value, torch.Tensor):
        return value.detach().tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=0.0)


def compare_values(detector: str, fqn: str, ours: Mapping[str, Any], ref: Mapping[str, Any]) -> list[str]:
    """Every mismatch between our values and the reference's for one module, as readable lines."""
    problems = []
    for our_key, ref_key in KEY_MAP[detector].items():
        if ref_key not in ref:
            problems.append(f"{detector}[{fqn}]: the reference has no {ref_key!r}")
            continue
        mine, theirs = ours[our_key], _plain(ref[ref_key])
        if detector == DYNAMIC and our_key == "dynamic_recommended":
            # Deliberate: dynamic is recommended only where a dynamic kernel exists (not on convs).
            theirs = bool(theirs) and bool(ours["is_dynamic_supported"])
        kind = COMPARISON[our_key]
        if isinstance(theirs, list) or isinstance(mine, list):
            mine_l, theirs_l = _as_list(mine), _as_list(theirs)
            if len(mine_l) != len(theirs_l):
                problems.append(f"{detector}[{fqn}].{our_key}: {len(mine_l)} channels, reference {len(theirs_l)}")
                continue
            pairs = list(zip(mine_l, theirs_l))
        else:
            pairs = [(mine, theirs)]
        for index, (a, b) in enumerate(pairs):
            if kind == "close":
                ok = _close(float(a) if a is not None else None, float(b) if b is not None else None)
            elif kind == "bool":
                ok = bool(a) == bool(b)
            elif kind == "exact":
                ok = (a == b) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
            else:
                ok = a == b
            if not ok:
                where = f"[{index}]" if len(pairs) > 1 else ""
                problems.append(f"{detector}[{fqn}].{our_key}{where}: ours {a!r}, reference {b!r}")
    if detector == EQUALIZATION:
        channel = _plain(ref[KEY_MAP[EQUALIZATION]["channel_recommended"]])
        expected = sum(channel) / len(channel) >= REFERENCE_MODULE_FRACTION if channel else False
        if ours["recommended"] != expected:
            problems.append(f"{detector}[{fqn}].recommended: ours {ours['recommended']}, reference rule {expected}")
    return problems


def assert_parity(
    report: Report,
    reference: Mapping[str, Mapping[str, Mapping[str, Any]]],
    detector: str,
    modules: Iterable[str],
    dense: bool = True,
) -> None:
    """Every number of ``detector`` equal for every module in ``modules``.

    With ``dense`` (the default), also asserts that the reference never met a
    zero percentile with a nonzero maximum (its 3.4e38 sentinel), i.e. that the
    outlier comparison really is one where no deliberate difference applies.
    """
    findings = report.detectors[detector].findings
    ref = reference[detector]
    problems = []
    for fqn in modules:
        assert fqn in findings, f"{detector}: we report no finding for {fqn!r} (we have {sorted(findings)})"
        assert fqn in ref, f"{detector}: the reference reports nothing for {fqn!r} (it has {sorted(ref)})"
        problems += compare_values(detector, fqn, findings[fqn].values, ref[fqn])
        if detector == OUTLIER and dense:
            ratios = _plain(ref[fqn][KEY_MAP[OUTLIER]["percentile_ratio"]])
            assert max(ratios) < 1e30, f"{fqn}: the data is not dense, the reference met q_p == 0: {ratios}"
    assert not problems, "\n".join(problems)


def graph_targets(prepared: nn.Module) -> set[str]:
    return {str(node.target) for node in prepared.graph.nodes if node.op == "call_module"}


def reference_proxied_leaves(prepared: nn.Module) -> set[str]:
    """Leaf modules the reference observes at some *other* module's input.

    A leaf that is not itself a node of the FX graph (the ReLU inside a fused
    ConvReLU2d, the BatchNorm inside a QAT ConvBnReLU2d) gets its reference
    pre-observer on the nearest graph ancestor's input. For the first module of
    a fused module ("0.0", the conv) that input is its own; for the others it
    is not, so their outlier numbers are not comparable.
    """
    targets = graph_targets(prepared)
    modules = dict(prepared.named_modules())
    proxied = set()
    for fqn, module in modules.items():
        if not fqn or fqn in targets or list(module.children()) or is_quant_helper(module):
            continue
        parent, _, last = fqn.rpartition(".")
        if parent in targets and isinstance(modules[parent], _FusedModule) and last == "0":
            continue
        proxied.add(fqn)
    return proxied


def common_modules(report: Report, reference: Mapping[str, Mapping[str, Any]], detector: str) -> set[str]:
    return set(report.detectors[detector].findings) & set(reference[detector])


def conv_output_channel_max(conv: nn.Module, batches: Iterable[torch.Tensor]) -> list[float]:
    """Per output channel max of ``conv(x)`` over all batches, computed directly."""
    with torch.no_grad():
        outs = torch.stack([conv(x).transpose(0, 1).reshape(conv.out_channels, -1).amax(dim=1) for x in batches])
    return outs.amax(dim=0).tolist()
