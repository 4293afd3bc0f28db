"""The benchmark's models: the bundled samples, a float copy of the conv net, and a
model whose observed activation is too large for ``torch.quantile``.

Every case gives a *float* model that all three contenders (plain forward, our
calibration, torch's ModelReport) run, and its batches. ``--batches N`` cycles a
sample's own batches (or truncates them) so every contender sees the same list.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: Input of the large-activation model: 72 * 4 * 512 * 512 = 75,497,472 > 2**26
#: elements, about 302 MB of float32 per tensor, and 18.9 M values per channel.
#: torch 2.13's quantile() refuses a reduced dimension longer than 2**24 (the
#: check is per row, ``sorted.size(-1) <= 2**24``); the reference reduces each
#: channel's values, so it refuses this input. The issue's own example,
#: (72, 64, 128, 128), has the same element count but 1.18 M values per
#: channel: the reference accepts it (slowly); it is the opt-in case
#: ``large_activation_64ch``.
LARGE_SHAPE = (72, 4, 512, 512)
LARGE_SHAPE_64CH = (72, 64, 128, 128)

#: Batch sizes the benchmark asks of each sample's ``calibration_batches``: a
#: calibration workload, not the few rows the app's demo uses. With 8 images a
#: batch, Python's per-call overhead (the same for every contender) would be
#: all that is measured.
BENCH_BATCH_SIZE = {
    "convnet_per_tensor": 128,
    "drifting_mlp": 256,
    "tiny_transformer": 64,
    "untraceable": 64,
}
#: Batches per repetition (before ``--batches`` cycles them).
BENCH_NUM_BATCHES = 8
LARGE_DEFAULT_BATCHES = 2
LARGE_MAX_BATCHES = 4  # each batch is ~302 MB; cap --batches for this model


@dataclass(frozen=True)
class Case:
    key: str
    description: str
    #: () -> (model, note); the note (may be "") is printed under the table.
    build: Callable[[], tuple[nn.Module, str]]
    #: (n or None) -> list of batches.
    batches: Callable[[int | None], list[Any]]


def _cycle(batches: list[Any], n: int | None) -> list[Any]:
    if n is None:
        return list(batches)
    return list(itertools.islice(itertools.cycle(batches), n))


def _sample(name: str) -> Case:
    def build() -> tuple[nn.Module, str]:
        from tui_quantreport.engine import load_model

        return load_model(name).model, ""

    def batches(n: int | None) -> list[Any]:
        return _cycle(_sample_batches(name), n)

    module = __import__(f"sample_models.{name}", fromlist=["DESCRIPTION"])
    return Case(name, getattr(module, "DESCRIPTION", name), build, batches)


def float_convnet() -> tuple[nn.Module, str]:
    """The sample conv net without its ``torch.ao`` observers: same fused
    architecture (ConvReLU2d / LinearReLU, BatchNorm folded), same weights.

    The sample is eager-prepared (observer submodules + forward hooks), which
    ``prepare_fx`` cannot trace and which makes a plain forward pay for
    MinMaxObservers. Stripping the observers from a deep copy of the very model
    the sample builds guarantees identical weights; the outputs are compared.
    """
    from torch.ao.quantization.quantize import _remove_qconfig

    from tui_quantreport.engine import load_model

    loaded = load_model("convnet_per_tensor")
    prepared = loaded.model.eval()
    model = copy.deepcopy(prepared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _remove_qconfig(model)
    model.eval()
    batch = next(iter(loaded.batches_factory()))
    with torch.no_grad():
        diff = (model(batch) - prepared(batch)).abs().max().item()
    helpers = sum(1 for m in model.modules() if "Observer" in type(m).__name__)
    note = (
        "float copy of the sample (observers stripped from a deep copy; same fused modules and weights; "
        f"{helpers} observers left; max |output diff| vs the prepared sample = {diff:g})"
    )
    return model, note


def _float_convnet_batches(n: int | None) -> list[Any]:
    return _cycle(_sample_batches("convnet_per_tensor"), n)


def _sample_batches(name: str) -> list[Any]:
    """The sample's own batches, at the benchmark's batch size where one is set."""
    module = __import__(f"sample_models.{name}", fromlist=["calibration_batches"])
    if name in BENCH_BATCH_SIZE:
        return list(module.calibration_batches(num_batches=BENCH_NUM_BATCHES, batch_size=BENCH_BATCH_SIZE[name]))
    return list(module.calibration_batches())


class LargeActivationConv(nn.Module):
    """A 1x1 Conv2d(C, C): with the benchmark's inputs, 75.5 M elements in and out."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _large_case(key: str, shape: tuple[int, ...], extra: str, default_batches: int = LARGE_DEFAULT_BATCHES) -> Case:
    numel = 1
    for d in shape:
        numel *= d
    per_channel = numel // shape[1]

    def build() -> tuple[nn.Module, str]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = LargeActivationConv(shape[1]).eval()
        return model, (
            f"1x1 Conv2d({shape[1]}, {shape[1]}) over {tuple(shape)} float32: {numel:,} elements per tensor "
            f"(> 2**26 = {2**26:,}), {per_channel:,} values per channel "
            f"({'>' if per_channel > 2**24 else '<='} 2**24 = {2**24:,}, torch.quantile's per-row limit){extra}"
        )

    def batches(n: int | None) -> list[Any]:
        count = default_batches if n is None else max(1, min(n, LARGE_MAX_BATCHES))
        generator = torch.Generator().manual_seed(5)
        return [torch.randn(shape, generator=generator) for _ in range(count)]

    return Case(key, f"1x1 Conv2d over {shape}", build, batches)


def _prepared_convnet() -> tuple[nn.Module, str]:
    from tui_quantreport.engine import load_model

    return load_model("convnet_per_tensor").model, (
        "the sample exactly as shipped: eager-prepared, so its MinMaxObservers run in every contender"
    )


#: A LLaMA-style decoder from transformers (random init, nothing downloaded): small, but with the
#: real modules (LlamaRMSNorm, SiLU between Linears, rotary embedding, sdpa attention).
DECODER_CONFIG = {
    "vocab_size": 2000,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
}
DECODER_BATCH, DECODER_TOKENS = 8, 128


def _hf_decoder() -> tuple[nn.Module, str]:
    try:
        import transformers
    except ImportError as exc:  # transformers is in the test extras (make bench installs them)
        raise RuntimeError("transformers is not installed") from exc
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**DECODER_CONFIG)).eval()
    params = sum(p.numel() for p in model.parameters())
    return model, (
        f"transformers LlamaForCausalLM from a small config ({DECODER_CONFIG['num_hidden_layers']} layers, "
        f"hidden {DECODER_CONFIG['hidden_size']}, MLP {DECODER_CONFIG['intermediate_size']}, "
        f"{params / 1e6:.1f} M parameters, random init), batches of {DECODER_BATCH}x{DECODER_TOKENS} token ids"
    )


def _hf_decoder_batches(n: int | None) -> list[Any]:
    generator = torch.Generator().manual_seed(11)
    count = BENCH_NUM_BATCHES if n is None else n
    return [
        {
            "input_ids": torch.randint(
                0, DECODER_CONFIG["vocab_size"], (DECODER_BATCH, DECODER_TOKENS), generator=generator
            )
        }
        for _ in range(count)
    ]


class BasicBlock(nn.Module):
    """ResNet's basic block (two 3x3 convs with BatchNorm, identity or 1x1 projection shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNetStyle(nn.Module):
    """A torchvision-free ResNet-18 layout (2 basic blocks per stage), at a quarter of its width."""

    def __init__(self, width: int = 16, classes: int = 100) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


RESNET_BATCH, RESNET_SIZE = 32, 96


def _resnet_style() -> tuple[nn.Module, str]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ResNetStyle().eval()
    params = sum(p.numel() for p in model.parameters())
    return model, (
        f"ResNet-18 layout written in benchmarks/models.py (no torchvision), width 16-128, "
        f"{params / 1e6:.2f} M parameters, batches of {RESNET_BATCH}x3x{RESNET_SIZE}x{RESNET_SIZE}"
    )


def _resnet_batches(n: int | None) -> list[Any]:
    generator = torch.Generator().manual_seed(12)
    count = BENCH_NUM_BATCHES if n is None else n
    return [torch.randn(RESNET_BATCH, 3, RESNET_SIZE, RESNET_SIZE, generator=generator) for _ in range(count)]


def all_cases() -> dict[str, Case]:
    cases = [
        Case(
            "convnet_per_tensor",
            "sample conv net, float (observers stripped)",
            float_convnet,
            _float_convnet_batches,
        ),
        _sample("drifting_mlp"),
        _sample("tiny_transformer"),
        _sample("untraceable"),
        _sample("large_generated"),
        _large_case("large_activation", LARGE_SHAPE, ""),
        _large_case(
            "large_activation_64ch",
            LARGE_SHAPE_64CH,
            "; the issue's example: torch 2.13's quantile accepts it, the reference runs, slowly (opt-in)",
            default_batches=1,
        ),
        Case(
            "convnet_per_tensor_prepared",
            "sample conv net as shipped (eager-prepared)",
            _prepared_convnet,
            _float_convnet_batches,
        ),
        Case("hf_llama_decoder", "transformers LLaMA-style decoder (small config)", _hf_decoder, _hf_decoder_batches),
        Case("resnet_style", "ResNet-18-style conv net (torchvision-free)", _resnet_style, _resnet_batches),
    ]
    return {case.key: case for case in cases}


DEFAULT_MODELS = (
    "convnet_per_tensor",
    "drifting_mlp",
    "tiny_transformer",
    "large_activation",
    "untraceable",
    "large_generated",
    "convnet_per_tensor_prepared",
    "hf_llama_decoder",
    "resnet_style",
)
