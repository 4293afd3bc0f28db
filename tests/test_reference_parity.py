"""Our detectors against torch's reference model report, side by side.

Same model (the same FX-prepared GraphModule, deep-copied), same batches: every
number both sides report must agree (floats to rtol 1e-5, min/max exactly,
counts and flags exactly). The data is dense, so none of the deliberate
differences of ``docs/detectors.md`` applies; those get their
own tests at the end, each showing the reference's behaviour and ours.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

# The reference is torch.ao's model report: a torch build without it (torch.ao.quantization is
# deprecated and being removed) has nothing to compare against. Our engine does not need it.
pytest.importorskip(
    "torch.ao.quantization.fx._model_report",
    reason="this torch has no torch.ao.quantization model report to compare against",
)

from reference_models import (  # noqa: E402
    ALL_DETECTORS,
    CONV_BN_RELU_FUSION,
    DYNAMIC,
    EQUALIZATION,
    MULTI_QCONFIG_PER_CHANNEL_USED,
    OUTLIER,
    PER_CHANNEL,
    PER_CHANNEL_QCONFIG,
    PER_TENSOR_QCONFIG,
    QAT_PER_CHANNEL_QCONFIG,
    QAT_PER_CHANNEL_USED,
    QAT_PER_TENSOR_QCONFIG,
    REFERENCE_INF,
    MultiQConfigNet,
    QConfigMapping,
    assert_parity,
    common_modules,
    conv_bn_relu,
    conv_linear,
    conv_output_channel_max,
    dense_batches,
    grouped_conv,
    multi_qconfig_mapping,
    nested_sequential,
    our_report,
    our_run,
    prepare,
    qat_model,
    qat_qconfig_mapping,
    ref_detector,
    reference_proxied_leaves,
    reference_report,
    reference_reports,
)

from tui_quantreport.engine import Status  # noqa: E402
from tui_quantreport.engine.detectors.outlier import OutlierRatio  # noqa: E402


@dataclass(repr=False)
class Case:
    prepared: nn.Module
    batches: list
    reference: dict
    ours: object  # Report
    proxied: frozenset

    def parity(self, detector: str, expected_modules: set[str], ours=None) -> None:
        """Both sides report at least ``expected_modules``; every number of each agrees."""
        report = ours if ours is not None else self.ours
        common = common_modules(report, self.reference, detector)
        if detector == OUTLIER:
            common -= self.proxied
        assert common == expected_modules, f"{detector}: compared {sorted(common)}, expected {sorted(expected_modules)}"
        assert_parity(report, self.reference, detector, sorted(common))


def make_case(model, qconfig_mapping, batches, params=None, qat=False) -> Case:
    prepared = prepare(model, qconfig_mapping, batches[0], qat=qat)
    ours_params = {k: dict(v) for k, v in (params or {}).items()}
    reference = reference_reports(prepared, batches, params)
    ours = our_report(prepared, batches, params=ours_params)
    return Case(prepared, batches, reference, ours, frozenset(reference_proxied_leaves(prepared)))


FBGEMM = {PER_CHANNEL: {"backend": "fbgemm"}}


# ------------------------------------------------------------------------ the models


@pytest.fixture(scope="module")
def nested_case() -> Case:
    return make_case(
        nested_sequential(), QConfigMapping().set_global(PER_CHANNEL_QCONFIG), dense_batches((64, 8), 6, 10)
    )


@pytest.fixture(scope="module")
def nested_drifting_case() -> Case:
    # The last batch is 8x larger: every range moves, S drops well under 0.5.
    return make_case(
        nested_sequential(),
        QConfigMapping().set_global(PER_CHANNEL_QCONFIG),
        dense_batches((64, 8), 6, 11, scales=[1, 1, 1, 1, 1, 8]),
    )


@pytest.fixture(scope="module")
def conv_linear_case() -> Case:
    # Input channels 20x apart so equalization recommends some channels and not others.
    return make_case(
        conv_linear(),
        QConfigMapping().set_global(PER_CHANNEL_QCONFIG),
        dense_batches((32, 3, 8, 8), 5, 12, channel_scales=[0.05, 1.0, 20.0]),
        params=FBGEMM,
    )


@pytest.fixture(scope="module")
def multi_qconfig_case() -> Case:
    return make_case(MultiQConfigNet(), multi_qconfig_mapping(), dense_batches((32, 3, 8, 8), 5, 13), params=FBGEMM)


@pytest.fixture(scope="module")
def conv_bn_relu_case() -> Case:
    return make_case(
        conv_bn_relu(), QConfigMapping().set_global(PER_TENSOR_QCONFIG), dense_batches((32, 3, 8, 8), 5, 14)
    )


@pytest.fixture(scope="module")
def grouped_case() -> Case:
    return make_case(
        grouped_conv(), QConfigMapping().set_global(PER_TENSOR_QCONFIG), dense_batches((32, 8, 6, 6), 5, 15)
    )


@pytest.fixture(scope="module")
def qat_case() -> Case:
    return make_case(qat_model(), qat_qconfig_mapping(), dense_batches((16, 3, 8, 8), 4, 20), params=FBGEMM, qat=True)


NESTED_WEIGHTED = {"0.0.0", "1.0.0", "1.1", "2"}
# "0.0.1" (the ReLU fused into "0.0") is observed at the fused module's input by the reference.
NESTED_LEAVES = NESTED_WEIGHTED | {"1.0.1"}


@pytest.mark.parametrize("detector", ALL_DETECTORS)
def test_nested_sequential(nested_case, detector):
    nested_case.parity(detector, NESTED_LEAVES if detector == OUTLIER else NESTED_WEIGHTED)


@pytest.mark.parametrize("detector", ALL_DETECTORS)
def test_nested_sequential_drifting_batches(nested_drifting_case, detector):
    nested_drifting_case.parity(detector, NESTED_LEAVES if detector == OUTLIER else NESTED_WEIGHTED)


def test_dynamic_static_parity_covers_both_classifications(nested_case, nested_drifting_case):
    """The two nested cases together exercise stationary and non-stationary, static and dynamic."""
    seen = set()
    dynamic = set()
    for case in (nested_case, nested_drifting_case):
        for finding in case.ours.detectors[DYNAMIC].findings.values():
            seen |= {finding.values["pre_observer_data_dist"], finding.values["post_observer_data_dist"]}
            dynamic.add(finding.values["dynamic_recommended"])
    assert seen == {"stationary", "non-stationary"}
    assert dynamic == {True, False}
    drifting = nested_drifting_case.ours.detectors[DYNAMIC].findings
    recommended = {fqn for fqn, f in drifting.items() if f.status is Status.RECOMMEND}
    assert recommended == {fqn for fqn, f in drifting.items() if f.values["dynamic_recommended"]}
    assert recommended == {
        fqn for fqn, v in nested_drifting_case.reference[DYNAMIC].items() if v["dynamic_recommended"]
    }
    assert recommended


@pytest.mark.parametrize("detector", ALL_DETECTORS)
def test_conv_linear(conv_linear_case, detector):
    expected = {"0.0", "3", "5"}
    if detector == OUTLIER:
        expected |= {"2", "4"}  # MaxPool2d and Flatten; "0.1" is proxied by the reference
    conv_linear_case.parity(detector, expected)


def test_conv_linear_equalization_has_both_verdicts(conv_linear_case):
    """The channel scales make some input channels fall outside the band: both verdicts are compared."""
    channel = conv_linear_case.ours.detectors[EQUALIZATION].findings["0.0"].values["channel_recommended"]
    assert True in channel and False in channel


@pytest.mark.parametrize("detector", ALL_DETECTORS)
def test_multiple_qconfigs(multi_qconfig_case, detector):
    multi_qconfig_case.parity(detector, {"conv1", "conv2", "fc1", "fc2", "head"})


def test_multiple_qconfigs_per_channel_verdicts(multi_qconfig_case):
    """Per module name / per type / global qconfigs are each read: the mix is what the mapping says."""
    findings = multi_qconfig_case.ours.detectors[PER_CHANNEL].findings
    used = {fqn: f.values["per_channel_used"] for fqn, f in findings.items()}
    assert used == MULTI_QCONFIG_PER_CHANNEL_USED
    assert {fqn for fqn, f in findings.items() if f.status is Status.RECOMMEND} == {"conv2", "fc1", "head"}
    reference = multi_qconfig_case.reference[PER_CHANNEL]
    assert {fqn: v["per_channel_quantization_used"] for fqn, v in reference.items()} == MULTI_QCONFIG_PER_CHANNEL_USED


@pytest.mark.parametrize("detector", ALL_DETECTORS)
def test_fused_conv_bn_relu_prepared(conv_bn_relu_case, detector):
    expected = {"0.0", "3.0", "7"}
    if detector == OUTLIER:
        expected |= {"6"}
    conv_bn_relu_case.parity(detector, expected)


@pytest.mark.parametrize("detector", ALL_DETECTORS)
def test_fused_conv_bn_relu_eager_fused_model(conv_bn_relu_case, detector):
    """Our engine on the *eager* model fused by fuse_modules (BN folded, same "0.0" names) matches too.

    The eager model carries no qconfig, so the per-channel detector uses the
    planned scheme: per tensor here, as the prepared model's qconfig.
    """
    from torch.ao.quantization import fuse_modules

    fused = fuse_modules(conv_bn_relu().eval(), CONV_BN_RELU_FUSION)
    params = {PER_CHANNEL: {"weight_scheme": "per_tensor"}}
    ours = our_report(fused, conv_bn_relu_case.batches, params=params)
    expected = {"0.0", "3.0", "7"}
    if detector == OUTLIER:
        expected |= {"6"}
    conv_bn_relu_case.parity(detector, expected, ours=ours)
    if detector == DYNAMIC:
        # The post point of the conv "0.0" is the fused ConvReLU2d's output (after the ReLU), as in the reference.
        post = {p.role: p for p in ours.modules["0.0"].points}["post"]
        assert post.calls == len(conv_bn_relu_case.batches)
        assert post.minimum == 0.0


@pytest.mark.parametrize("detector", ALL_DETECTORS)
def test_grouped_conv(grouped_case, detector):
    expected = {"0", "2", "4"}
    if detector == OUTLIER:
        expected |= {"1", "3"}
    grouped_case.parity(detector, expected)


def test_grouped_conv_repeats_weight_ratios(grouped_case):
    """groups=4 (weight dim 1 = 2) and depthwise (dim 1 = 1): 8 metrics each, weight ratios tiled."""
    findings = grouped_case.ours.detectors[EQUALIZATION].findings
    for fqn, weight_channels in (("0", 2), ("2", 1)):
        v = findings[fqn].values
        assert len(v["weight_channel_min"]) == weight_channels
        assert len(v["channel_metric"]) == 8
        w = torch.tensor(v["weight_channel_max"]) - torch.tensor(v["weight_channel_min"])
        w_ratio = (w / (max(v["weight_channel_max"]) - min(v["weight_channel_min"]))).repeat(8 // weight_channels)
        i = torch.tensor(v["input_channel_max"]) - torch.tensor(v["input_channel_min"])
        i_ratio = i / (max(v["input_channel_max"]) - min(v["input_channel_min"]))
        expected = (torch.sqrt(w_ratio) / torch.sqrt(i_ratio)).tolist()
        assert v["channel_metric"] == pytest.approx(expected, rel=1e-6)
    # Tiled (w0, w1, w0, w1, ...), as the reference does, not interleaved (w0, w0, w1, w1, ...):
    # with the uneven weight columns of "0" the two orders give different metrics.
    v = findings["0"].values
    w = torch.tensor(v["weight_channel_max"]) - torch.tensor(v["weight_channel_min"])
    i = torch.tensor(v["input_channel_max"]) - torch.tensor(v["input_channel_min"])
    w_global = max(v["weight_channel_max"]) - min(v["weight_channel_min"])
    i_global = max(v["input_channel_max"]) - min(v["input_channel_min"])
    interleaved = (torch.sqrt((w / w_global).repeat_interleave(4)) / torch.sqrt(i / i_global)).tolist()
    assert v["channel_metric"] != pytest.approx(interleaved, rel=1e-3)


@pytest.mark.parametrize(
    "detector, expected",
    [
        (PER_CHANNEL, {"0", "3", "5", "6"}),
        (DYNAMIC, {"0", "3", "5", "6"}),
        # The reference matches equalization types exactly: nniqat.ConvBnReLU2d "0" is not one.
        (EQUALIZATION, {"3", "5", "6"}),
        # The reference's leaves exclude QAT Conv/Linear (they hold a weight_fake_quant child).
        (OUTLIER, {"4"}),
    ],
)
def test_qat_prepare_qat_fx(qat_case, detector, expected):
    qat_case.parity(detector, expected)


def test_qat_prepare_qat_fx_coverage_and_verdicts(qat_case):
    ours = qat_case.ours.detectors
    assert {f: v.values["per_channel_used"] for f, v in ours[PER_CHANNEL].findings.items()} == QAT_PER_CHANNEL_USED
    # We judge what the reference skips: the QAT fused conv for equalization, QAT modules for outliers.
    assert set(ours[EQUALIZATION].findings) == {"0", "3", "5", "6"}
    assert ours[EQUALIZATION].findings["0"].status in (Status.OK, Status.RECOMMEND)
    assert {"3", "5", "6", "4", "0.bn"} <= set(ours[OUTLIER].findings)


def _eager_qat(weight_qconfig_per_channel, weight_qconfig_per_tensor):
    from torch.ao.quantization import fuse_modules_qat, prepare_qat

    model = fuse_modules_qat(qat_model().train(), [["0", "1", "2"]])
    model.qconfig = weight_qconfig_per_channel
    model[3].qconfig = weight_qconfig_per_tensor
    model[6].qconfig = weight_qconfig_per_tensor
    return prepare_qat(model)


def test_qat_eager_prepare_qat_per_channel():
    """Eager prepare_qat: the reference's per-channel detector runs on the eager model too."""
    model = _eager_qat(QAT_PER_CHANNEL_QCONFIG, QAT_PER_TENSOR_QCONFIG)
    reference = ref_detector.PerChannelDetector("fbgemm").generate_detector_report(model)[1]
    ours = our_report(model, [], params=FBGEMM, detectors=["per_channel"]).detectors[PER_CHANNEL]
    assert set(reference) == set(ours.findings) == set(QAT_PER_CHANNEL_USED)
    for fqn, values in reference.items():
        assert (
            ours.findings[fqn].values["per_channel_supported"] is values["per_channel_quantization_supported"] is True
        )
        assert ours.findings[fqn].values["per_channel_used"] == values["per_channel_quantization_used"]
        assert ours.findings[fqn].values["per_channel_used"] == QAT_PER_CHANNEL_USED[fqn]


def test_qat_default_per_channel_fake_quant_reference_misreads():
    """torch's default QAT qconfig: weights ARE per channel; the reference says they are not.

    The reference instantiates ``qconfig.weight.p.func()``, the bare FakeQuantize
    class without its ``with_args`` arguments, which is per tensor. We
    instantiate the configured quantizer (detectors.md), so we agree with the
    module's actual ``weight_fake_quant``. Documented, not a bug of ours.
    """
    from torch.ao.quantization import get_default_qat_qconfig

    qconfig = get_default_qat_qconfig("fbgemm")
    model = _eager_qat(qconfig, qconfig)
    reference = ref_detector.PerChannelDetector("fbgemm").generate_detector_report(model)[1]
    ours = our_report(model, [], params=FBGEMM, detectors=["per_channel"]).detectors[PER_CHANNEL]
    for fqn in ("0", "3", "5", "6"):
        truth = bool(model.get_submodule(fqn).weight_fake_quant.is_per_channel)
        assert truth is True
        assert ours.findings[fqn].values["per_channel_used"] is True
        assert ours.findings[fqn].status is Status.OK
        assert reference[fqn]["per_channel_quantization_used"] is False


def test_non_default_parameters_flow_identically():
    """Every tunable parameter reaches both sides the same way (thresholds chosen to flip verdicts)."""
    batches = dense_batches((32, 3, 8, 8), 5, 30, scales=[1, 1, 2, 1, 3], channel_scales=[0.2, 1.0, 4.0])
    params = {
        DYNAMIC: {"tolerance": 0.7},
        EQUALIZATION: {"ratio_threshold": 0.8},
        OUTLIER: {"ratio_threshold": 1.5, "reference_percentile": 0.9, "fraction_batches_used_threshold": 0.5},
        PER_CHANNEL: {"backend": "qnnpack"},
    }
    case = make_case(conv_linear(), multi_like_conv_linear_mapping(), batches, params=params)
    for detector in ALL_DETECTORS:
        expected = {"0.0", "3", "5"} | ({"2", "4"} if detector == OUTLIER else set())
        case.parity(detector, expected)
    # The thresholds changed verdicts: every S lies in (0.5, 0.7], static at the default
    # tolerance, dynamic at 0.7; ratio_threshold 1.5 flags every outlier channel.
    dynamic = case.ours.detectors[DYNAMIC].findings
    assert all(0.5 < f.values["post_observer_comp_stat"] <= 0.7 for f in dynamic.values())
    assert all(f.values["post_observer_data_dist"] == "non-stationary" for f in dynamic.values())
    # Recommended (badged) only where a dynamic kernel exists; on a conv it is information.
    assert all(
        f.status is (Status.RECOMMEND if case.ours.modules[fqn].is_linear else Status.INFO)
        for fqn, f in dynamic.items()
    )
    assert all(all(f.values["outliers_detected"]) for f in case.ours.detectors[OUTLIER].findings.values())
    assert case.ours.detectors[OUTLIER].params["reference_percentile"] == 0.9
    assert case.ours.detectors[PER_CHANNEL].extra["backend"] == "qnnpack"
    assert {v["backend"] for v in case.reference[PER_CHANNEL].values()} == {"qnnpack"}


def multi_like_conv_linear_mapping() -> QConfigMapping:
    return QConfigMapping().set_global(PER_TENSOR_QCONFIG).set_module_name("5", PER_CHANNEL_QCONFIG)


# ------------------------------------------------------- the deliberate differences


def test_difference_sparse_post_relu_channel():
    """q_p == 0 with q_max != 0: the reference divides by zero (3.4e38, flagged); we skip the batch.

    Channel 0 of the Linear's input is zero except one element per batch in
    every batch; channel 1 is sparse in batches 0 and 2 only; channels 2 and 3
    are dense. Dense channels agree exactly.
    """
    torch.manual_seed(40)
    model = nn.Sequential(nn.ReLU(), nn.Linear(4, 3)).eval()
    batches = []
    for b in range(4):
        x = torch.randn(64, 4).abs() + 0.1
        x[:, 0] = -1.0
        x[b, 0] = 5.0 + b
        if b in (0, 2):
            x[:, 1] = -1.0
            x[b + 1, 1] = 2.0
        batches.append(x)
    prepared = prepare(model, QConfigMapping().set_global(PER_TENSOR_QCONFIG), batches[0])
    reference = reference_report(prepared, OUTLIER, batches)["1"]
    ours = our_report(prepared, batches, detectors=["outlier"]).detectors[OUTLIER].findings["1"]
    v = ours.values

    ref_ratio = reference["outlier_detection_percentile_ratios"].tolist()
    ref_used = reference["outlier_detection_batches_used"].tolist()
    # The reference: every batch counts, the ratio is the float32 max, every sparse channel is an outlier.
    assert ref_used == [4, 4, 4, 4]
    assert ref_ratio[0] >= REFERENCE_INF / 4 and ref_ratio[1] >= REFERENCE_INF / 4
    assert reference["outliers_detected"][:2] == [True, True]
    # Ours: the zero-percentile batches are skipped, nothing is flagged for them.
    assert v["batches_used"] == [0, 2, 4, 4]
    assert v["outliers_detected"][:2] == [False, False]
    assert math.isnan(v["percentile_ratio"][0])
    assert v["sufficient_batches"][:2] == [False, False]
    # Channel 1's ratio is the mean over its two dense batches, computed by hand.
    by_hand = []
    for b in (1, 3):
        column = torch.relu(batches[b][:, 1])
        k = int(math.floor(float(torch.tensor(0.975, dtype=torch.float32) * 63)))
        by_hand.append(float(column.max() / column.sort().values[k]))
    assert v["percentile_ratio"][1] == pytest.approx(sum(by_hand) / 2, rel=1e-6)
    # Dense channels: identical.
    assert v["percentile_ratio"][2:] == pytest.approx(ref_ratio[2:], rel=1e-5)
    assert v["batches_used"][2:] == ref_used[2:]
    assert v["channel_max"] == reference["input_activation_per_channel_max"].tolist()
    assert ours.status is Status.OK


def test_difference_tokens_features_input_to_linear():
    """A (batch, tokens, features) input to a Linear: we count features (last axis), the reference tokens (axis 1)."""
    torch.manual_seed(41)
    tokens, features = 12, 6
    model = nn.Sequential(nn.Linear(features, 4)).eval()
    batches = dense_batches((8, tokens, features), 4, 42, channel_scales=[1.0 + t for t in range(tokens)])
    prepared = prepare(model, QConfigMapping().set_global(PER_TENSOR_QCONFIG), batches[0])

    ref_outlier = reference_report(prepared, OUTLIER, batches)["0"]
    ref_equalization = reference_report(prepared, EQUALIZATION, batches)["0"]
    ours = our_report(prepared, batches, detectors=["outlier", "equalization"])
    outlier = ours.detectors[OUTLIER].findings["0"].values
    equalization = ours.detectors[EQUALIZATION].findings["0"].values

    stacked = torch.cat(batches)
    assert len(ref_outlier["input_activation_per_channel_max"]) == tokens
    assert ref_outlier["input_activation_per_channel_max"].tolist() == stacked.amax(dim=(0, 2)).tolist()
    assert len(outlier["channel_max"]) == features
    assert outlier["channel_max"] == stacked.amax(dim=(0, 1)).tolist()
    # The reference tiles the 6 weight columns over 12 token "channels"; we pair input and weight features.
    assert len(ref_equalization["input_weight_channel_comparison_metrics"]) == tokens
    assert len(equalization["channel_metric"]) == features == len(equalization["weight_channel_min"])
    assert equalization["input_channel_min"] == stacked.amin(dim=(0, 1)).tolist()

    # With our channel axis forced to 1, we compute exactly what the reference computes.
    forced = our_report(prepared, batches, detectors=["outlier"], ch_axis=1)
    assert_parity(forced, {OUTLIER: {"0": ref_outlier}}, OUTLIER, ["0"])


def test_difference_fused_relu_observed_at_its_own_input(conv_linear_case):
    """The ReLU inside a fused ConvReLU2d ("0.1"): the reference observes the fused module's input
    (so "0.1" repeats "0.0"'s numbers); we observe the ReLU's real input, the conv's output.
    """
    reference = conv_linear_case.reference[OUTLIER]
    ours = conv_linear_case.ours.detectors[OUTLIER].findings
    assert "0.1" in conv_linear_case.proxied
    assert (
        reference["0.1"]["input_activation_per_channel_max"].tolist()
        == reference["0.0"]["input_activation_per_channel_max"].tolist()
    )
    conv = conv_linear_case.prepared.get_submodule("0.0")
    assert ours["0.1"].values["channel_max"] == conv_output_channel_max(conv, conv_linear_case.batches)
    assert len(ours["0.1"].values["channel_max"]) == 6 != len(reference["0.1"]["input_activation_per_channel_max"])


def test_difference_percentile_beyond_torch_quantile_limit():
    """torch.quantile refuses a reduction over more than 2**24 elements; the reference observer uses it
    per channel and per batch, so one channel holding 2**24 + 1 values in one batch makes calibration
    raise. We select exactly (introselect), and equal torch.kthvalue on a shuffled copy.
    """
    side = 4097  # 4097 * 4097 = 16_785_409 > 2**24 values in the single channel: 64 MiB of float32
    generator = torch.Generator().manual_seed(43)
    x = torch.randn(side, 1, side, generator=generator)
    n = x.numel()
    assert n > 2**24
    model = nn.Sequential(nn.Hardtanh(-100.0, 100.0)).eval()
    prepared = prepare(model, QConfigMapping().set_global(PER_TENSOR_QCONFIG), x[:2])
    with pytest.raises(RuntimeError, match=r"quantile\(\) input tensor is too large"):
        reference_report(prepared, OUTLIER, [x])

    report, stats = our_run(prepared, [x], detectors=["outlier"], copy_model=False)
    finding = report.detectors[OUTLIER].findings["0"]
    k = int(math.floor(float(torch.tensor(0.975, dtype=torch.float32) * (n - 1))))
    # A permuted copy (transposed, then reversed): the answer must not depend on element order.
    shuffled = x.reshape(side, side).t().flip(0).reshape(-1)
    expected_q = shuffled.kthvalue(k + 1).values
    expected_ratio = float(x.max() / expected_q)
    del shuffled
    assert finding.values["batches_used"] == [1]
    assert finding.values["percentile_ratio"][0] == pytest.approx(expected_ratio, rel=1e-6)
    point = stats.point("0", "pre").get(OutlierRatio(0.975))
    assert float(point.ratio_sum[0]) == pytest.approx(expected_ratio, rel=1e-6)
