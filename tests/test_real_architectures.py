"""Real architectures: the right channel axis per tensor, every weighted layer judged, advice that applies.

LLaMA-, GPT-2- and BERT-style models come from ``transformers`` (small configs,
random init, nothing downloaded); the ConvNeXt-style block with its LayerNorm2d,
the attention model and the odd layers are written here. Two batches each.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tui_quantreport.cli import main
from tui_quantreport.engine import Session, Settings, evaluate
from tui_quantreport.engine.report import Status

PER_CHANNEL = "per_channel_detector"
DYNAMIC = "dynamic_vs_static_detector"
EQUALIZATION = "input_weight_equalization_detector"
OUTLIER = "outlier_detector"
WEIGHT_BASED = (PER_CHANNEL, DYNAMIC, EQUALIZATION)


def run(model, batches, **settings):
    session = Session(model)
    chosen = Settings.build(**settings)
    stats = session.calibrate(batches, chosen)
    return evaluate(session.catalog, stats, chosen), stats, session.catalog


def axis(stats, fqn, role="pre"):
    layout = stats.layout(fqn, role)
    assert layout is not None, f"{fqn} {role} was not observed"
    return layout.axis, layout.reason


def channels(stats, fqn, role="pre"):
    return stats.point(fqn, role).channels


# -- transformers models ------------------------------------------------------------------

TOKENS = 12


def token_batches(vocab, n=2, batch=2, extra=None):
    generator = torch.Generator().manual_seed(3)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, TOKENS), generator=generator)
        item = {"input_ids": ids, **(extra(ids) if extra else {})}
        out.append(item)
    return out


@pytest.fixture(scope="module")
def llama():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=48,
        intermediate_size=136,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    return model, run(model, token_batches(96))


def test_llama_rmsnorm_and_silu_are_measured_over_features(llama):
    _, (report, stats, _) = llama
    hidden, inner = 48, 136
    for fqn in ("model.norm", "model.layers.0.input_layernorm", "model.layers.1.post_attention_layernorm"):
        ax, reason = axis(stats, fqn)
        assert ax == 2 and channels(stats, fqn) == hidden, (fqn, reason)
        assert "LlamaRMSNorm normalises the last axis (48 features)" in reason
    ax, reason = axis(stats, "model.layers.0.mlp.act_fn")
    assert ax == 2 and channels(stats, "model.layers.0.mlp.act_fn") == inner
    assert "producer 'model.layers.0.mlp.gate_proj' (Linear)" in reason
    for fqn in ("model.layers.0.mlp.down_proj", "lm_head"):
        assert axis(stats, fqn)[0] == 2
    # The channel axis and its reason reach the report's module summaries (the detail view).
    point = next(p for p in report.modules["model.layers.0.mlp.act_fn"].points if p.role == "pre")
    assert point.axis == 2 and "gate_proj" in point.axis_reason and point.dtype == "float32"


def test_llama_weighted_layers_and_embedding(llama):
    model, (report, stats, _) = llama
    linears = {fqn for fqn, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert len(linears) == 15
    per_channel = report.detectors[PER_CHANNEL].findings
    assert set(per_channel) == linears | {"model.embed_tokens"}
    assert set(report.detectors[DYNAMIC].findings) == linears
    assert set(report.detectors[EQUALIZATION].findings) == linears
    # The embedding: weight-only advice with its per-row ranges; its token ids are not activations.
    embedding = per_channel["model.embed_tokens"]
    assert embedding.status is Status.OK and "per-row" in embedding.headline.lower()
    rows = embedding.values["weight_row_range"]
    assert embedding.values["weight_only"] and 0 < rows["min"] <= rows["median"] <= rows["max"]
    assert per_channel["lm_head"].values["weight_row_range"] is None
    assert "Embedding: its input is integer indices" in report.detectors[DYNAMIC].summary
    outlier = report.detectors[OUTLIER].findings["model.embed_tokens"]
    assert outlier.status is Status.NOT_APPLICABLE and "int64 tensor" in outlier.reason
    assert stats.layout("model.embed_tokens", "pre").integer


def test_per_module_axis_override_and_out_of_range_is_reported_not_clamped(llama):
    model, _ = llama
    act = "model.layers.0.mlp.act_fn"
    batches = token_batches(96)
    report, stats, _ = run(model, batches, ch_axis="model.layers.*.mlp.act_fn=1,model.norm=5")
    ax, reason = axis(stats, act)
    assert ax == 1 and reason == "set by --ch-axis model.layers.*.mlp.act_fn=1"
    assert channels(stats, act) == TOKENS
    assert axis(stats, "model.layers.0.input_layernorm")[0] == 2  # not matched: its own rule
    norm = report.detectors[OUTLIER].findings["model.norm"]
    assert norm.status is Status.NOT_APPLICABLE
    assert "axis 5 is out of range for a 3-D tensor" in norm.reason
    assert stats.point("model.norm", "pre").calls == 2 and stats.point("model.norm", "pre").channels is None


@pytest.fixture(scope="module")
def gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    config = transformers.GPT2Config(vocab_size=96, n_embd=48, n_layer=2, n_head=4, n_positions=64)
    model = transformers.GPT2LMHeadModel(config).eval()
    return model, run(model, token_batches(96))


def test_gpt2_conv1d_projections_are_judged_by_every_weight_based_detector(gpt2):
    model, (report, stats, catalog) = gpt2
    conv1d = {fqn for fqn, m in model.named_modules() if type(m).__name__ == "Conv1D"}
    assert len(conv1d) == 8
    assert {catalog.kinds[f].name for f in conv1d} == {"hf_conv1d"}
    for name in WEIGHT_BASED:
        findings = report.detectors[name].findings
        assert conv1d <= set(findings), name
        judged = [findings[f].status for f in conv1d]
        assert all(s in (Status.OK, Status.RECOMMEND) for s in judged), (name, judged)
    assert "Skipped 2 weighted modules: transformer.wte (Embedding" in report.detectors[EQUALIZATION].summary
    # Equalization reads the transposed weight along its input axis (dim 0 of [in, out]).
    for fqn, width in (("transformer.h.0.attn.c_attn", 48), ("transformer.h.0.mlp.c_proj", 192)):
        weight = stats.weights[fqn]
        assert weight.axis == 0 and weight.channel_min.numel() == width
        expected = model.get_submodule(fqn).weight.detach().amin(dim=1)
        assert torch.equal(weight.channel_min, expected)
        eq = report.detectors[EQUALIZATION].findings[fqn]
        assert len(eq.values["channel_metric"]) == width
        assert axis(stats, fqn)[0] == 2
    # Dynamic quantization is a real option for them (as Linear): a verdict, not information.
    assert catalog.dynamic_kernel("transformer.h.0.mlp.c_fc")
    assert "(1 weighted modules judged" not in report.detectors[PER_CHANNEL].summary


def test_gpt2_axis_by_producer_and_by_consumer(gpt2):
    _, (_, stats, _) = gpt2
    ax, reason = axis(stats, "transformer.h.0.mlp.act")
    assert ax == 2 and "producer 'transformer.h.0.mlp.c_fc' (Conv1D)" in reason
    # transformer.drop reads wte + wpe (a functional add): its output goes to ln_1, a LayerNorm.
    ax, reason = axis(stats, "transformer.drop")
    assert ax == 2 and "goes to 'transformer.h.0.ln_1' (LayerNorm)" in reason
    assert channels(stats, "transformer.drop") == 48


@pytest.fixture(scope="module")
def bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(2)
    config = transformers.BertConfig(
        vocab_size=96,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
    )
    model = transformers.BertModel(config).eval()

    def extra(ids):
        mask = torch.ones_like(ids)
        mask[:, -3:] = 0
        return {"attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}

    return model, run(model, token_batches(96, extra=extra))


def test_bert_token_ids_are_never_called_outliers(bert):
    _, (report, stats, _) = bert
    embeddings = [f"embeddings.{n}" for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
    outliers = report.detectors[OUTLIER].findings
    for fqn in embeddings:
        finding = outliers[fqn]
        assert finding.status is Status.NOT_APPLICABLE and "not an activation" in finding.reason, fqn
        assert not finding.headline.startswith("Outliers")
        # Embeddings get weight-only, per-row advice instead.
        per_channel = report.detectors[PER_CHANNEL].findings[fqn]
        assert per_channel.status is Status.OK and per_channel.values["weight_row_range"]["max"] > 0
    assert not any(f in report.detectors[EQUALIZATION].findings for f in embeddings)
    assert not any(f in report.detectors[DYNAMIC].findings for f in embeddings)
    first = report.ranked_modules()[0][0] if report.ranked_modules() else ""
    assert "embeddings" not in first or first == "embeddings.LayerNorm"
    for fqn in ("embeddings.LayerNorm", "embeddings.dropout", "encoder.layer.0.intermediate.intermediate_act_fn"):
        assert axis(stats, fqn)[0] == 2, (fqn, axis(stats, fqn))
    assert axis(stats, "pooler.activation")[0] == 1  # (batch, features): the last axis is axis 1
    assert channels(stats, "encoder.layer.0.intermediate.intermediate_act_fn") == 96


# -- written here: ConvNeXt-style, attention, odd layers ---------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """timm's and torchvision's LayerNorm2d: a LayerNorm over axis 1 of an NCHW tensor."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtStyle(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 40, 4, stride=4), LayerNorm2d(40))
        self.act = nn.GELU()
        self.block = ConvNeXtBlock(40)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(40), nn.Linear(40, 10))

    def forward(self, x):
        return self.head(self.block(self.act(self.stem(x))))


def test_convnext_layernorm2d_gets_channels_and_the_block_gets_features():
    torch.manual_seed(4)
    model = ConvNeXtStyle().eval()
    # 40 channels, 8x12 after the stem: no spatial size equals the channel count.
    batches = [torch.randn(2, 3, 32, 48) for _ in range(2)]
    _, stats, _ = run(model, batches)
    ax, reason = axis(stats, "stem.1")
    assert ax == 1 and channels(stats, "stem.1") == 40 and "normalises axis 1" in reason
    ax, reason = axis(stats, "act")  # GELU on NCHW, after LayerNorm2d
    assert ax == 1 and "producer 'stem.1' (LayerNorm2d)" in reason
    assert axis(stats, "block.dwconv") == (1, "Conv2d: channels on axis 1")
    assert axis(stats, "block.norm")[0] == 3 and channels(stats, "block.norm") == 40  # NHWC inside the block
    ax, reason = axis(stats, "block.act")
    assert ax == 3 and channels(stats, "block.act") == 160 and "pwconv1" in reason
    assert axis(stats, "head.2")[0] == 1 and channels(stats, "head.2") == 40  # (N, C) after Flatten


def test_layernorm2d_when_a_spatial_size_equals_the_channel_count():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 16, 1), LayerNorm2d(16), nn.ReLU()).eval()
    _, stats, _ = run(model, [torch.randn(2, 3, 16, 16) for _ in range(2)])
    assert axis(stats, "1")[0] == 1 and axis(stats, "2")[0] == 1


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
        self.norm = nn.LayerNorm(32)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        out, _ = self.attn(x, x, x)
        return self.norm(self.drop(out) + x)


def test_multihead_attention_is_judged_and_out_proj_input_is_said_unobservable():
    torch.manual_seed(6)
    model = Attention().eval()
    report, stats, catalog = run(model, [torch.randn(2, 10, 32) for _ in range(2)])
    assert catalog.kinds["attn"].name == "multihead_attention"
    for name in WEIGHT_BASED:
        assert report.detectors[name].findings["attn"].status in (Status.OK, Status.RECOMMEND, Status.INFO), name
    eq = report.detectors[EQUALIZATION].findings["attn"]
    assert len(eq.values["channel_metric"]) == 32 and len(eq.values["weight_channel_min"]) == 32
    assert axis(stats, "attn")[0] == 2
    out_proj = report.detectors[EQUALIZATION].findings["attn.out_proj"]
    assert out_proj.status is Status.NOT_OBSERVED
    assert "F.multi_head_attention_forward" in out_proj.reason
    # Its output is the attention's output: observed there.
    dynamic = report.detectors[DYNAMIC].findings["attn.out_proj"]
    assert dynamic.values["post_observer_comp_stat"] is not None
    assert dynamic.status in (Status.OK, Status.INFO)  # NonDynamicallyQuantizableLinear: never "recommend"
    assert "Its input is not observed" in dynamic.reason and "F.multi_head_attention_forward" in dynamic.reason
    assert axis(stats, "drop")[0] == 2


class OddLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.gray = nn.Conv2d(1, 8, 3)
        self.up = nn.ConvTranspose2d(8, 4, 2)
        self.lstm = nn.LSTM(4, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        y = self.up(self.gray(x))  # (N, 4, H, W)
        seq = y.flatten(2).permute(2, 0, 1)  # (L, N, 4)
        out, _ = self.lstm(seq)
        return self.fc(out)


def test_skipped_weighted_layers_are_listed_with_the_reason_and_advice_only_where_it_applies():
    torch.manual_seed(7)
    model = OddLayers().eval()
    # Non-stationary: each batch at its own scale.
    batches = [torch.randn(2, 1, 6, 6) * s for s in (0.01, 1.0, 100.0)]
    report, _, _ = run(model, batches)
    per_channel = report.detectors[PER_CHANNEL]
    assert "Skipped 2 weighted modules" in per_channel.summary
    assert "lstm (LSTM: it holds several weight matrices" in per_channel.summary
    assert "up (ConvTranspose2d holds weights (weight) of no registered kind" in per_channel.summary
    assert set(per_channel.extra["skipped"]) == {"lstm", "up"}
    # The LSTM has a dynamic kernel: judged by the dynamic detector; the conv has none: information.
    dynamic = report.detectors[DYNAMIC].findings
    assert dynamic["gray"].values["post_observer_data_dist"] == "non-stationary"
    assert not dynamic["gray"].values["dynamic_recommended"]
    assert dynamic["gray"].status is Status.INFO and "no dynamic kernel" in dynamic["gray"].headline
    assert "gray" not in report.detectors[DYNAMIC].recommended
    assert dynamic["lstm"].status in (Status.OK, Status.RECOMMEND)  # judged: tanh-bounded, so stationary here
    assert dynamic["fc"].status in (Status.OK, Status.RECOMMEND)
    # Equalization on a single input channel: s_c = 1 by construction.
    gray = report.detectors[EQUALIZATION].findings["gray"]
    assert gray.status is Status.NOT_APPLICABLE and "one input channel" in gray.reason


def test_ch_axis_on_the_command_line_per_pattern_and_global(tmp_path, capsys):
    spec = tmp_path / "m.py"
    spec.write_text(
        "import torch\nfrom torch import nn\n"
        "def build_model():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))\n"
        "def calibration_batches():\n    torch.manual_seed(1)\n    return [torch.randn(2, 5, 8) for _ in range(2)]\n"
    )
    import json

    assert main(["report", str(spec), "--format", "json", "--ch-axis", "1=1", "--ch-axis", "0=-1"]) == 0
    data = json.loads(capsys.readouterr().out)
    points = data["points"]
    assert points["1"]["pre"]["axis"] == 1 and points["1"]["pre"]["axis_reason"] == "set by --ch-axis 1=1"
    assert points["0"]["pre"]["axis"] == 2
    assert points["2"]["pre"]["axis"] == 2 and points["2"]["pre"]["axis_reason"] == "Linear: features on the last axis"
    assert main(["report", str(spec), "--format", "json", "--ch-axis", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {p["pre"]["axis"] for p in data["points"].values()} == {1}
    assert main(["report", str(spec), "--ch-axis", "a.b=x"]) == 2
    assert "PATTERN=AXIS" in capsys.readouterr().err


def test_bert_with_dynamic_padding_keeps_per_channel_views(bert):
    """Batches of different lengths: features stay the channels, so no leaf becomes 'not applicable'."""
    model, _ = bert
    generator = torch.Generator().manual_seed(8)
    batches = []
    for length in (12, 7):
        ids = torch.randint(0, 96, (2, length), generator=generator)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    report, stats, _ = run(model, batches)
    outliers = report.detectors[OUTLIER].findings
    unjudged = {
        fqn
        for fqn, status in outliers.statuses.items()
        if status is Status.NOT_APPLICABLE and not stats.layout(fqn, "pre").integer
    }
    assert not unjudged, {fqn: outliers[fqn].reason for fqn in unjudged}
    assert channels(stats, "encoder.layer.1.output.LayerNorm") == 48


class Chained(nn.Module):
    """Two activations after a functional op, then a Linear: the second tells the first."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 16)
        self.act1 = nn.GELU()
        self.act2 = nn.Tanh()
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.act2(self.act1(self.fc1(x) * 2)))


def test_layout_passes_back_through_a_chain_of_activations():
    torch.manual_seed(9)
    _, stats, _ = run(Chained().eval(), [torch.randn(2, 5, 16) for _ in range(2)])
    ax, reason = axis(stats, "act2")
    assert ax == 2 and "goes to 'fc2' (Linear)" in reason
    ax, reason = axis(stats, "act1")
    assert ax == 2 and "goes to 'act2' (Tanh)" in reason


def test_information_is_exported_apart_from_recommendations():
    from tui_quantreport.engine.export import render

    torch.manual_seed(7)
    report, _, _ = run(OddLayers().eval(), [torch.randn(2, 1, 6, 6) * s for s in (0.01, 1.0, 100.0)])
    text = render(report, "markdown")
    info = text.split("Information (no change applies to these modules):", 1)[1]
    assert "`gray`: Non-stationary output (no dynamic kernel for Conv2d) (Dynamic vs static)" in info.split("##", 1)[0]
    import json

    data = json.loads(render(report, "json"))
    gray = data["detectors"][DYNAMIC]["modules"]["gray"]
    assert gray["status"] == "info" and gray["recommendation"] is None and gray["dynamic_recommended"] is False
    assert set(data["detectors"][PER_CHANNEL]["skipped"]) == {"lstm", "up"}
