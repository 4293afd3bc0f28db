"""An adaptive-depth text classifier that torch.fx cannot trace.

HuggingFace-style: ``forward(input_ids, attention_mask=None)`` and calibration
batches are dicts of keyword arguments (``input_ids`` and ``attention_mask``,
both int64, right-padded). The encoder refines the token states with one
shared block until the update becomes small (an early exit): the number of
refinement steps depends on tensor values, so ``torch.fx.symbolic_trace``
raises a TraceError, and the shared ``refine`` block is called several times
per forward (a different number of times per batch). Only hook-based
instrumentation can observe this model.
"""

from __future__ import annotations

import torch
from torch import nn

DESCRIPTION = (
    "Adaptive-depth text classifier with a data-dependent early exit and HF-style dict inputs "
    "(input_ids, attention_mask): not FX-traceable; a shared block runs a varying number of times"
)

VOCAB_SIZE = 1000
MAX_LENGTH = 32
PAD_ID = 0
RESIDUAL_INIT_SCALE = 0.3


class AdaptiveDepthClassifier(nn.Module):
    """Token ids (N, L) and attention mask (N, L) -> (N, 4) label logits."""

    def __init__(self, hidden: int = 64, num_labels: int = 4, max_steps: int = 6, exit_tolerance: float = 0.033):
        super().__init__()
        self.max_steps = max_steps
        self.exit_tolerance = exit_tolerance
        self.embeddings = nn.ModuleDict(
            {
                "word": nn.Embedding(VOCAB_SIZE, hidden, padding_idx=PAD_ID),
                "position": nn.Embedding(MAX_LENGTH, hidden),
                "norm": nn.LayerNorm(hidden),
            }
        )
        self.refine = nn.Sequential()
        self.refine.add_module("fc_in", nn.Linear(hidden, 2 * hidden))
        self.refine.add_module("act", nn.GELU())
        self.refine.add_module("fc_out", nn.Linear(2 * hidden, hidden))
        self.refine_norm = nn.LayerNorm(hidden)
        with torch.no_grad():  # small residual branch, as in deep-transformer inits: the refinement converges
            self.refine.fc_out.weight.mul_(RESIDUAL_INIT_SCALE)
        self.pooler = nn.Linear(hidden, hidden)
        self.pooler_act = nn.Tanh()
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != PAD_ID).long()
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        states = self.embeddings["word"](input_ids) + self.embeddings["position"](positions)
        states = self.embeddings["norm"](states)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        for _ in range(self.max_steps):
            refined = self.refine_norm(states + self.refine(states) * mask)
            change = (refined - states).abs().mean()
            states = refined
            # Early exit: a Python decision on a tensor value. torch.fx cannot trace this.
            if change < self.exit_tolerance:
                break
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.classifier(self.pooler_act(self.pooler(pooled)))


def build_model() -> nn.Module:
    """The float classifier in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AdaptiveDepthClassifier()
    return model.eval()


def calibration_batches(num_batches: int = 16, batch_size: int = 8, length: int = 24) -> list[dict[str, torch.Tensor]]:
    """Dicts {"input_ids", "attention_mask"} of shape (8, 24): Zipf-distributed tokens, right padding."""
    generator = torch.Generator().manual_seed(17)
    zipf = 1.0 / torch.arange(1, VOCAB_SIZE, dtype=torch.float32)
    batches = []
    for _ in range(num_batches):
        lengths = torch.randint(4, length + 1, (batch_size,), generator=generator)
        attention_mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).long()
        tokens = torch.multinomial(zipf, batch_size * length, replacement=True, generator=generator) + 1
        input_ids = tokens.view(batch_size, length) * attention_mask  # PAD_ID is 0
        batches.append({"input_ids": input_ids, "attention_mask": attention_mask})
    return batches
