"""A small LLaMA for the planner's tests and benchmark: built from a transformers config (nothing
downloaded), random weights made heavy-tailed, a few massive channels injected through the RMSNorms.

Also a model file (``tests/models/tiny_llama.py``): ``build_model()`` and ``calibration_batches()``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

VOCAB = 128


def tiny_llama(hidden: int = 64, layers: int = 2, seed: int = 0) -> nn.Module:
    import transformers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = transformers.LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=hidden,
            intermediate_size=hidden * 2 + hidden // 2,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            use_cache=False,
        )
        model = transformers.LlamaForCausalLM(config).eval()
        t = torch.distributions.StudentT(torch.tensor(2.5))
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    w = t.sample(module.weight.shape).clamp(-60, 60)
                    module.weight.copy_(w * 0.02)
            massive = torch.tensor([3, hidden // 2, hidden - 5])
            for name, module in model.named_modules():
                if name.endswith("layernorm") or name == "model.norm":
                    module.weight[massive] = 25.0
    return model


def token_batches(
    count: int = 2, batch: int = 2, tokens: int = 16, seed: int = 1, *, causal_mask: bool = False
) -> list[dict[str, Any]]:
    """Random token ids; with ``causal_mask`` also the 4-D causal mask transformers would build on every
    forward (given prepared, transformers uses it as it is: its construction does not dominate a pass)."""
    generator = torch.Generator().manual_seed(seed)
    batches: list[dict[str, Any]] = []
    for _ in range(count):
        entry: dict[str, Any] = {"input_ids": torch.randint(0, VOCAB, (batch, tokens), generator=generator)}
        if causal_mask:
            entry["attention_mask"] = torch.ones(tokens, tokens, dtype=torch.bool).tril().expand(batch, 1, -1, -1)
        batches.append(entry)
    return batches


DESCRIPTION = "2-layer LLaMA (hidden 64) from a transformers config: heavy-tailed weights, 3 massive channels"


def build_model() -> nn.Module:
    return tiny_llama()


def calibration_batches() -> list[dict[str, Any]]:
    return token_batches(4)


def analysis_of(model: nn.Module, probes: list[Any]):
    """An ErrorAnalysis of ``model`` on ``probes`` (ranges from the probes)."""
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.quantsim import ErrorAnalysis

    return ErrorAnalysis(model, ModelCatalog.build(model), probes)
