"""Small models for the deployment-target tests (tests/test_targets.py): each case isolates one
way a target quantizes (spec form ``tests/target_models.py:build_NAME`` with ``batches_NAME``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TokenLinear(nn.Module):
    """A Linear on (batch, tokens, features) whose tokens differ in scale by orders of magnitude:
    one scale per tensor (torch.ao) and one per token (torchao) quantize it very differently."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def build_token_linear() -> nn.Module:
    return TokenLinear().eval()


def batches_token_linear(count: int = 4, rank: int = 3) -> list[torch.Tensor]:
    g = _gen(1)
    out = []
    for _ in range(count):
        shape = (2, 16, 64) if rank == 3 else (2, 3, 8, 64)
        scale = torch.exp(2.0 * torch.randn(*shape[:-1], 1, generator=g))
        out.append(torch.randn(*shape, generator=g) * scale)
    return out


def build_linear_4d() -> nn.Module:
    return TokenLinear().eval()


def batches_linear_4d() -> list[torch.Tensor]:
    return batches_token_linear(rank=4)


class PoolNet(nn.Module):
    """conv -> average pooling -> Linear: PT2E runs the pooling on the conv output's int8 grid."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.conv(x))))


def build_pool() -> nn.Module:
    return PoolNet().eval()


class ReluNet(nn.Module):
    """conv -> F.relu (a function, not a module) -> average pooling -> Linear: PT2E fuses the ReLU
    and quantizes the conv's output with the range after the ReLU; the pooling carries that grid
    to the Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(F.relu(self.conv(x)))))


def build_relu() -> nn.Module:
    return ReluNet().eval()


class ReluModuleNet(nn.Module):
    """conv -> nn.ReLU (a module) -> average pooling -> Linear, per-channel weights: under its
    global config X86InductorQuantizer fuses conv + nn.ReLU and quantizes the ReLU's output on
    its own range where the pooling reads it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


def build_relu_module() -> nn.Module:
    return ReluModuleNet().eval()


def calibration_batches() -> list[torch.Tensor]:
    g = _gen(2)
    return [torch.randn(4, 3, 8, 8, generator=g) for _ in range(4)]


batches_pool = batches_relu = batches_relu_module = calibration_batches


class TinyLlama(nn.Module):
    """A 2-layer LLaMA from transformers (random init, nothing downloaded): token ids -> logits."""

    def __init__(self) -> None:
        super().__init__()
        import transformers

        torch.manual_seed(0)
        config = transformers.LlamaConfig(
            vocab_size=96,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
        self.lm = transformers.LlamaForCausalLM(config).eval()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids).logits


def build_tiny_llama() -> nn.Module:
    return TinyLlama().eval()


def batches_tiny_llama() -> list[torch.Tensor]:
    g = _gen(3)
    return [torch.randint(0, 96, (2, 16), generator=g) for _ in range(4)]
