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
