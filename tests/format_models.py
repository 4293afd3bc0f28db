"""A small LLaMA from transformers for the per-family ``verify`` tests (tests/test_formats.py):
random init, nothing downloaded; every Linear's dims are multiples of 128 and every weight has a
multiple of 16384 elements, so each CPU-runnable scheme (int4 g128, NVFP4, NF4 included) can take
every Linear. Spec form ``tests/format_models.py:build_llama`` with ``batches_llama``."""

from __future__ import annotations

import torch
from torch import nn


class Llama(nn.Module):
    """A 2-layer LLaMA (hidden 128, MLP 256, 4 heads, 4 KV heads, vocab 128): token ids -> logits."""

    def __init__(self) -> None:
        super().__init__()
        import transformers

        torch.manual_seed(0)
        config = transformers.LlamaConfig(
            vocab_size=128,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=64,
        )
        self.lm = transformers.LlamaForCausalLM(config).eval()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids).logits


def build_llama() -> nn.Module:
    return Llama().eval()


def batches_llama() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, 128, (2, 16), generator=g) for _ in range(4)]


class ConvBatchNorm(nn.Module):
    """conv -> BatchNorm -> ReLU blocks left unfused (BatchNorm statistics far from identity, as
    after training), then pooling and a Linear: PT2E folds each BatchNorm into its conv before it
    quantizes the conv's weight."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(32, 10)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for bn in (self.features[1], self.features[4]):
                n = bn.num_features
                # per-channel gains spread over two decades: the folded weight's channels differ
                bn.weight.copy_(torch.exp(torch.randn(n, generator=g) * 1.5))
                bn.bias.copy_(torch.randn(n, generator=g) * 0.1)
                bn.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                bn.running_var.copy_(torch.exp(torch.randn(n, generator=g)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build_conv_bn() -> nn.Module:
    return ConvBatchNorm().eval()


def batches_conv_bn() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return [torch.randn(4, 3, 8, 8, generator=g) for _ in range(4)]
