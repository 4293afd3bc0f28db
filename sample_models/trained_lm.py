"""A small causal language model with trained weights (shipped with the package).

Two pre-norm transformer blocks (d_model 64, 4 heads, GELU MLP 64 -> 128 -> 64) over a
32-token vocabulary, written with plain ``nn.Linear`` layers. It was trained (:func:`train`,
fixed seeds, about a minute on one CPU core) on synthetic text from a seeded generator: a sparse
Markov chain over the vocabulary with a "copy" rule (after token 1, the token seen 8 positions
earlier comes back). The weights, ``trained_lm.safetensors`` beside this file (BSD-3-Clause, as
the project), are what training gave; ``python -m sample_models.trained_lm --retrain`` makes them
again. Unlike the random-init samples, trained weights carry the structure quantization has to
live with: heavy-tailed weights, a few large activation channels, attention that sharpens.

Calibration: 16 batches of 8 sequences of 32 tokens from the same generator (other seeds).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DESCRIPTION = (
    "Trained 2-layer causal LM (d_model 64, vocab 32) on synthetic Markov text, weights shipped: "
    "measured error, sensitivity and verify on trained weights"
)

VOCAB = 32
D_MODEL = 64
HEADS = 4
FF = 128
LAYERS = 2
CONTEXT = 32
COPY_TOKEN = 1
COPY_DISTANCE = 8
WEIGHTS = Path(__file__).with_name("trained_lm.safetensors")


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(D_MODEL, D_MODEL)
        self.k_proj = nn.Linear(D_MODEL, D_MODEL)
        self.v_proj = nn.Linear(D_MODEL, D_MODEL)
        self.o_proj = nn.Linear(D_MODEL, D_MODEL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, HEADS, D_MODEL // HEADS).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        context = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(context.transpose(1, 2).reshape(b, t, D_MODEL))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.attn = Attention()
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.fc1 = nn.Linear(D_MODEL, FF)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(FF, D_MODEL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TinyLM(nn.Module):
    """(batch, tokens) int64 token ids -> (batch, tokens, vocab) next-token logits."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        self.pos = nn.Embedding(CONTEXT, D_MODEL)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(D_MODEL)
        self.lm_head = nn.Linear(D_MODEL, VOCAB)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.embed(input_ids) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _transitions() -> torch.Tensor:
    """The generator's Markov chain: each token has 3 likely successors (fixed seed)."""
    g = torch.Generator().manual_seed(1234)
    logits = torch.full((VOCAB, VOCAB), -4.0)
    for token in range(VOCAB):
        successors = torch.randperm(VOCAB, generator=g)[:3]
        logits[token, successors] = torch.tensor([3.0, 2.0, 1.0])
    return torch.softmax(logits, dim=1)


def synthetic_text(batches: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``batches`` tensors of (batch_size, CONTEXT) token ids from the seeded generator."""
    g = torch.Generator().manual_seed(seed)
    probs = _transitions()
    out = []
    for _ in range(batches):
        seq = torch.empty(batch_size, CONTEXT, dtype=torch.int64)
        seq[:, 0] = torch.randint(0, VOCAB, (batch_size,), generator=g)
        for t in range(1, CONTEXT):
            nxt = torch.multinomial(probs[seq[:, t - 1]], 1, generator=g).squeeze(1)
            if t > COPY_DISTANCE:
                copy = seq[:, t - 1] == COPY_TOKEN
                nxt = torch.where(copy, seq[:, t - 1 - COPY_DISTANCE], nxt)
            seq[:, t] = nxt
        out.append(seq)
    return out


def train(steps: int = 600, seed: int = 0) -> tuple[TinyLM, float]:
    """Train from scratch (fixed seeds, one thread): the model and its final training loss."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = TinyLM()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
        data = synthetic_text(steps, 32, seed=seed + 1)
        loss = torch.tensor(math.nan)
        for step, batch in enumerate(data):
            lr = 3e-3 * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.eval(), float(loss.detach())
    finally:
        torch.set_num_threads(threads)


def build_model() -> TinyLM:
    from safetensors.torch import load_file

    model = TinyLM()
    model.load_state_dict(load_file(str(WEIGHTS)))
    return model.eval()


def calibration_batches() -> list[torch.Tensor]:
    return synthetic_text(16, 8, seed=2024)


if __name__ == "__main__":
    if "--retrain" in sys.argv:
        from safetensors.torch import save_file

        trained, final_loss = train()
        save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(WEIGHTS))
        print(f"wrote {WEIGHTS} (final training loss {final_loss:.3f})")
