"""Correct on every architecture: channels_last convolutions, models with several outputs, MoE
experts that see few tokens, padding layers on (B, T, C), QAT models, and advice that applies.

Small transformers configs (random init, nothing downloaded) and modules written here or in
tests/models/.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from measure_helpers import failing_for
from torch import nn

from tests.cli_helpers import one_line, run
from tui_quantreport.engine import ModelCatalog, Session, Settings, load_model, open_batches
from tui_quantreport.engine.quantsim import ErrorAnalysis
from tui_quantreport.engine.quantsim import local_pass as local_pass_module
from tui_quantreport.engine.quantsim.sqnr import sqnr_db

MODELS = "tests/models"


def _analysis(model, probes, **kw):
    return ErrorAnalysis(model, ModelCatalog.build(model), probes, **kw)


def _report_json(capsys, spec, *options):
    code, out, err = run(capsys, "report", spec, "--format", "json", *options)
    assert code == 0, err
    return json.loads(out)


# -- channels_last ----------------------------------------------------------------------------


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ).eval()


def _images(n=3, channels_last=False):
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(4, 3, 8, 8, generator=g) for _ in range(n)]
    return [b.to(memory_format=torch.channels_last) for b in batches] if channels_last else batches


def test_a_channels_last_conv_net_measures_as_its_contiguous_twin():
    plain = _analysis(_conv_net(), _images())
    strided_model = _conv_net().to(memory_format=torch.channels_last)
    strided = _analysis(strided_model, _images(channels_last=True))
    a, b = plain.local_sqnr(), strided.local_sqnr()
    assert set(a) == set(b) == {"0", "2", "4", "7"}
    for fqn in a:
        for scheme, value in a[fqn].items():
            other = b[fqn][scheme]
            assert (value.db is None) == (other.db is None), (fqn, scheme)
            if value.db is not None:
                assert other.db == pytest.approx(value.db, abs=1e-3), (fqn, scheme)
    plan = strided.recommended_plan()
    sqnr = strided.plan_sqnr(plan)
    assert sqnr.db is not None and math.isfinite(sqnr.db)
    assert sqnr.db == pytest.approx(plain.plan_sqnr(plain.recommended_plan()).db, abs=1e-3)


def test_convnext_reports_finite_sqnr(capsys):
    pytest.importorskip("transformers")
    data = _report_json(capsys, f"{MODELS}/convnext_tiny.py")
    measured = data["measured"]
    assert measured["plan"]["sqnr_db"] is not None and math.isfinite(measured["plan"]["sqnr_db"])
    convs = [f for f in measured["modules"] if "dwconv" in f or "pwconv" in f]
    assert len(convs) == 6
    for fqn in convs:
        assert measured["modules"][fqn]["sqnr_db"]["static_per_channel"] is not None, fqn


def test_a_module_whose_measurement_fails_is_undefined_and_the_rest_stands(monkeypatch):
    failing = failing_for(local_pass_module._measurer, "4", "simulated kernel failure")
    monkeypatch.setattr(local_pass_module, "_measurer", failing)
    analysis = _analysis(_conv_net(), _images())
    local = analysis.local_sqnr()
    assert all(v.db is None for v in local["4"].values())
    assert "measuring '4' failed: RuntimeError: simulated kernel failure" in local["4"]["static_per_channel"].reason
    for fqn in ("0", "2", "7"):
        assert local[fqn]["static_per_channel"].db is not None, fqn


# -- several outputs --------------------------------------------------------------------------


def test_two_outputs_are_measured_each_and_combined_energy_weighted():
    loaded = load_model(f"{MODELS}/two_outputs.py")
    probes = list(open_batches(loaded))[:4]
    analysis = _analysis(loaded.model, probes)
    analysis.local_measurements()
    only_small = analysis.plan({"head_small": "static_per_channel"})
    combined = analysis.plan_sqnr(only_small)
    each = analysis.plan_output_sqnr(only_small)
    assert set(each) == {"big", "small"}  # the integer output is not an output here
    assert each["big"].infinite and each["small"].db is not None
    # Energy-weighted: sum of every output's ||y||^2 over the only noise there is (the small head's).
    reference = analysis.reference_outputs()
    energy = {k: sum(float(r[k].double().pow(2).sum()) for r in reference) for k in ("big", "small")}
    expected = each["small"].db + 10 * math.log10((energy["big"] + energy["small"]) / energy["small"])
    assert combined.db == pytest.approx(expected, abs=1e-6)
    # Before, only the first output counted: quantizing the second head looked free.
    assert combined.db is not None and not combined.infinite


def test_output_key_picks_one_output(capsys):
    both = _report_json(capsys, f"{MODELS}/two_outputs.py")["measured"]["plan"]
    small = _report_json(capsys, f"{MODELS}/two_outputs.py", "--output-key", "small")["measured"]["plan"]
    assert set(both["sqnr_per_output_db"]) == {"big", "small"} and both["output_key"] is None
    assert small["output_key"] == "small" and set(small["sqnr_per_output_db"]) == {"small"}
    assert small["sqnr_db"] == pytest.approx(small["sqnr_per_output_db"]["small"])
    code, _, err = run(capsys, "report", f"{MODELS}/two_outputs.py", "--output-key", "logits")
    one_line(code, err, "--output-key 'logits'", "big, small")


def test_verify_on_a_two_output_model_measures_what_the_plan_predicts(capsys):
    code, out, err = run(capsys, "verify", f"{MODELS}/two_outputs.py", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data["achieved_sqnr_per_output_db"]) == {"big", "small"}
    assert data["gap_db"] is not None and abs(data["gap_db"]) <= 0.5, data
    # What is left between the plan and the export is explained by what the export changes, not blamed on kernels.
    assert not [f for f in data["findings"] if "kernels differ" in f["message"]]


def test_clip_reports_per_output_sqnr(capsys):
    pytest.importorskip("transformers")
    plan = _report_json(capsys, f"{MODELS}/clip_tiny.py")["measured"]["plan"]
    outputs = plan["sqnr_per_output_db"]
    assert {"logits_per_image", "logits_per_text", "text_embeds", "image_embeds"} <= set(outputs)
    assert plan["sqnr_db"] is not None
    finite = [v for v in outputs.values() if v is not None]
    assert min(finite) - 1e-6 <= plan["sqnr_db"] <= max(finite) + 1e-6


# -- rows and under-calibrated experts --------------------------------------------------------


def test_moe_experts_report_rows_and_get_no_static_scheme_below_the_threshold(capsys):
    data = _report_json(capsys, f"{MODELS}/moe_cold_expert.py")
    modules = data["measured"]["modules"]
    busy, one, cold = "experts.0.down", "experts.1.down", "experts.2.down"
    assert modules[busy]["rows"] == 4 * 4 * 10 - 1
    assert modules[one]["rows"] == 1
    assert modules[busy]["recommended_scheme"].startswith("static")
    assert modules[one]["recommended_scheme"] in ("dynamic", "weight_only", "float")
    assert "under-calibrated" in modules[one]["scheme_reason"] and "1 row " in modules[one]["scheme_reason"]
    assert modules[cold]["recommended_scheme"] == "float"
    assert "never routed to" in modules[cold]["undefined"]["static_per_channel"]
    finding = data["detectors"]["under_calibrated_detector"]["modules"]
    assert finding[one]["status"] == "recommend" and finding[one]["rows"] == 1
    assert finding[busy]["status"] == "ok"
    assert "never routed to" in finding[cold]["reason"]


def test_the_row_threshold_is_a_setting(capsys):
    data = _report_json(capsys, f"{MODELS}/moe_cold_expert.py", "--param", "under_calibrated.min_rows=1")
    one = data["measured"]["modules"]["experts.1.down"]
    assert one["scheme_reason"] is None
    assert data["detectors"]["under_calibrated_detector"]["modules"]["experts.1.down"]["status"] == "ok"


def test_qwen2_moe_rows_are_the_tokens_routed_to_each_expert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.Qwen2MoeConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        moe_intermediate_size=16,
        shared_expert_intermediate_size=32,
        num_experts=8,
        num_experts_per_tok=2,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = transformers.Qwen2MoeForCausalLM(config).eval()
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 64, (2, 12), generator=g)} for _ in range(3)]
    routed: dict[str, int] = {}

    def counter(name):
        def hook(module, args):
            routed[name] = routed.get(name, 0) + args[0].reshape(-1, args[0].shape[-1]).shape[0]

        return hook

    experts = [f"model.layers.0.mlp.experts.{i}.down_proj" for i in range(8)]
    handles = [model.get_submodule(f).register_forward_pre_hook(counter(f)) for f in experts]
    with torch.no_grad():
        for b in batches:
            model(**b)
    for h in handles:
        h.remove()
    stats = Session(model).calibrate(batches, Settings.build())
    assert sum(routed.values()) == 3 * 2 * 12 * 2
    for f in experts:
        assert stats.point(f, "pre").rows == routed.get(f, 0), f


# -- padding layers ---------------------------------------------------------------------------


class _TimeShift(nn.Module):
    """RWKV's token shift: ZeroPad2d((0, 0, 1, -1)) on a (B, T, C) hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(64)
        self.time_shift = nn.ZeroPad2d((0, 0, 1, -1))
        self.key = nn.Linear(64, 64)
        self.pad_image = nn.ZeroPad2d(1)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x, image):
        h = self.ln(x)
        return self.key(self.time_shift(h) - h), self.conv(self.pad_image(image))


def test_a_pad_on_tokens_is_measured_over_features_and_a_pad_on_images_over_channels():
    torch.manual_seed(0)
    batches = [(torch.randn(2, 32, 64), torch.randn(2, 3, 8, 8)) for _ in range(2)]
    stats = Session(_TimeShift().eval()).calibrate(batches, Settings.build())
    shift = stats.layout("time_shift", "pre")
    assert shift.axis == 2 and stats.point("time_shift", "pre").channels == 64, shift.reason
    assert "follows its input's producer 'ln'" in shift.reason
    image = stats.layout("pad_image", "pre")
    assert image.axis == 1 and stats.point("pad_image", "pre").channels == 3


def test_rwkv_time_shift_is_measured_over_features():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.RwkvConfig(
        vocab_size=64, hidden_size=64, num_hidden_layers=2, attention_hidden_size=64, intermediate_size=128
    )
    model = transformers.RwkvForCausalLM(config).eval()
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 64, (2, 32), generator=g)} for _ in range(2)]
    stats = Session(model).calibrate(batches, Settings.build())
    for fqn in ("rwkv.blocks.0.attention.time_shift", "rwkv.blocks.0.feed_forward.time_shift"):
        assert stats.layout(fqn, "pre").axis == 2, stats.layout(fqn, "pre").reason
        assert stats.point(fqn, "pre").channels == 64, fqn


# -- QAT --------------------------------------------------------------------------------------


def test_a_qat_models_reference_is_the_float_model(capsys):
    import torch.ao.quantization as tq

    loaded = load_model(f"{MODELS}/qat_mlp.py")
    probes = list(open_batches(loaded))[:2]
    analysis = _analysis(loaded.model, probes)
    assert "QAT model" in analysis.reference and "fake quantizers" in analysis.reference
    float_copy = __import__("copy").deepcopy(loaded.model)
    float_copy.apply(tq.disable_fake_quant)
    with torch.no_grad():
        float_out = float_copy(probes[0])
        fake_out = loaded.model(probes[0])
    assert sqnr_db(float_out, fake_out).db is not None  # the fake quantizers do change the output
    reference = analysis.reference_outputs()[0]["output"]
    assert torch.equal(reference, float_out)
    # The user's model keeps its fake quantizers on.
    assert all(int(m.fake_quant_enabled[0]) == 1 for m in loaded.model.modules() if isinstance(m, tq.FakeQuantize))
    data = _report_json(capsys, f"{MODELS}/qat_mlp.py")
    assert "fake quantizers" in data["measured"]["reference"]


# -- advice that applies ----------------------------------------------------------------------


def test_no_dynamic_gain_is_offered_on_a_convolution(capsys):
    data = _report_json(capsys, f"{MODELS}/two_outputs.py")  # Linear: dynamic measured as a gain
    linear = data["detectors"]["dynamic_vs_static_detector"]["modules"]["enc"]
    assert linear.get("gain_db") is not None
    code, out, err = run(capsys, "report", "convnet_per_tensor", "--format", "json", "--batches", "4")
    assert code == 0, err
    detector = json.loads(out)["detectors"]["dynamic_vs_static_detector"]["modules"]
    convs = [f for f in detector if "conv" in f and "gain_db" in detector[f]]
    assert convs
    for fqn in convs:
        assert detector[fqn]["gain_db"] is None, fqn
        assert "no dynamic int8 kernel" in detector[fqn]["measurement"], fqn


def test_equalization_on_a_depthwise_conv_says_where_the_scale_folds():
    from tui_quantreport.engine import evaluate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.SiLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8)).eval()
    g = torch.Generator().manual_seed(1)
    scale = torch.tensor([1.0, 1.0, 30.0]).view(1, 3, 1, 1)
    batches = [torch.randn(4, 3, 8, 8, generator=g) * scale for _ in range(3)]
    settings = Settings.build(params={"input_weight_equalization_detector": {"ratio_threshold": 0.01}})
    session = Session(model)
    report = evaluate(session.catalog, session.calibrate(batches, settings), settings)
    finding = report.detectors["input_weight_equalization_detector"].findings["2"]
    assert "depthwise" in finding.reason and "cannot fold" in finding.reason
    assert "preceding expand (pointwise) conv" in finding.reason


# -- every quantizable module in the plan; pt2e and a cache output -----------------------------


def test_whisper_positional_embedding_is_in_the_plan_kept_float_with_its_reason():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=64,
        num_mel_bins=16,
        encoder_layers=1,
        decoder_layers=1,
        d_model=32,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=16,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    model = transformers.WhisperForConditionalGeneration(config).eval()
    g = torch.Generator().manual_seed(1)
    probes = [
        {"input_features": torch.randn(2, 16, 32, generator=g), "decoder_input_ids": torch.randint(3, 64, (2, 6))}
        for _ in range(2)
    ]
    analysis = _analysis(model, probes)
    analysis.local_measurements()
    plan = analysis.recommended_plan()
    assert plan.modules["model.decoder.embed_positions"] == "float"
    assert "its own forward" in analysis.scheme_reasons["model.decoder.embed_positions"]
    weighted = [f for f, info in analysis.catalog.modules.items() if info.is_weighted]
    assert set(weighted) <= set(plan.modules)
    each = analysis.plan_output_sqnr(plan)
    assert {"logits", "encoder_last_hidden_state"} <= set(each)


def test_pt2e_verify_runs_a_model_with_use_cache_on_a_copy_without_it():
    from types import SimpleNamespace

    from tui_quantreport.engine.apply.api import Subject, without_cache

    model = nn.Linear(2, 2)
    model.config = SimpleNamespace(use_cache=True)
    subject = Subject("m.py", model, None, None, None)
    copied, note = without_cache(subject, "pt2e")
    assert copied.model is not model and copied.model.config.use_cache is False
    assert model.config.use_cache is True
    assert "use_cache=False" in note
    same, none = without_cache(subject, "torchao")
    assert same is subject and none == ""
