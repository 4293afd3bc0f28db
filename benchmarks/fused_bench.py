"""Fused fake-quantization kernels (numba) against the torch ops they replace: ns per element.

Per-tensor affine (static activations): the fused kernel, the four vectorised in-place torch ops
(multiply, round, clamp, multiply: the path without numba from 2,048 elements on) and torch's own
``fake_quantize_per_tensor_affine`` (the path below that). Per-row dynamic (per token): the fused
two-pass kernel against the torch ops of ``qparams._fake_quantize_dynamic_rows``. One thread,
medians of alternated rounds; writes its section of ``benchmarks/results.md``. About a minute.

    .venv/bin/python -m benchmarks.fused_bench
"""

from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.results_file import replace_section, section_end
from tui_quantreport.engine.quantsim import fused, qparams
from tui_quantreport.engine.quantsim.sqnr import Scratch

RESULTS = Path(__file__).resolve().parent / "results.md"
SECTION = "fused fake quant: cpu"
ROUNDS = 15


def _per_call_ns(fn, calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls


def _measure(variants: dict, numel: int) -> dict[str, float]:
    calls = max(3, min(2000, 4_000_000 // max(numel, 1)))
    for fn in variants.values():  # warm-up (and the kernels' first load)
        fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, fn in variants.items():  # alternated: load changes hit every variant alike
            samples[name].append(_per_call_ns(fn, calls) / numel)
    return {name: sorted(v)[len(v) // 2] for name, v in samples.items()}


def _torch_rows(rows: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    saved, qparams._FUSED = qparams._FUSED, False
    try:
        return qparams._fake_quantize_dynamic_rows(rows, qmin, qmax)
    finally:
        qparams._FUSED = saved


def main() -> None:
    torch.set_num_threads(1)
    if fused.kernels() is None:
        raise SystemExit(f"the fused kernels are not available: {fused.unavailable_reason()}")
    start = time.perf_counter()
    scale, zp = qparams.scalar_affine_qparams(-3.0, 5.0, 0, 255)
    inv = qparams.inverse_scale(scale)
    lines = [
        "| per-tensor static, elements | fused ns/el | 4 torch ops ns/el | torch kernel ns/el | 4 ops / fused |",
        "|---:|---:|---:|---:|---:|",
    ]
    with torch.no_grad():
        for numel in (1024, 4096, 16384, 49152, 131072, 1 << 20):
            x = torch.randn(numel) * 2

            def four_ops(x=x):
                y = torch.mul(x, inv)
                y.round_()
                y.clamp_(0 - zp, 255 - zp)
                return y.mul_(scale)

            r = _measure(
                {
                    "fused": lambda x=x: fused.fake_quantize(x, scale, zp, 0, 255, inv),
                    "ops": four_ops,
                    "kernel": lambda x=x: torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, 255),
                },
                numel,
            )
            lines.append(
                f"| {numel:,} | {r['fused']:.3f} | {r['ops']:.3f} | {r['kernel']:.3f} | {r['ops'] / r['fused']:.2f}x |"
            )
        lines += [
            "",
            "| per-token dynamic, rows x width | fused ns/el | torch ops ns/el | torch / fused |",
            "|---|---:|---:|---:|",
        ]
        for rows_n, width in ((16, 64), (128, 64), (512, 128), (64, 768), (512, 768)):
            rows = torch.randn(rows_n, width) * torch.logspace(-2, 2, rows_n).unsqueeze(1)
            r = _measure(
                {
                    "fused": lambda rows=rows: fused.fake_quantize_rows(rows, 0, 255, qparams._EPS32),
                    "torch": lambda rows=rows: _torch_rows(rows, 0, 255),
                },
                rows.numel(),
            )
            lines.append(
                f"| {rows_n} x {width} | {r['fused']:.3f} | {r['torch']:.3f} | {r['torch'] / r['fused']:.2f}x |"
            )
        lines += [
            "",
            "| float64 norm of float32 rows, rows x width | fused ns/el | copy + torch norm ns/el | torch / fused |",
            "|---|---:|---:|---:|",
        ]
        scratch = Scratch()
        for rows_n, width in ((1, 65536), (4, 65536), (4, 262144)):
            rows = torch.randn(rows_n, width)

            def copy_norm(rows=rows):
                buf = scratch.buffer("norm64", tuple(rows.shape), torch.float64, rows.device)
                buf.copy_(rows)
                return torch.linalg.vector_norm(buf, dim=1)

            r = _measure({"fused": lambda rows=rows: fused.norm64(rows, 1), "torch": copy_norm}, rows.numel())
            lines.append(
                f"| {rows_n} x {width} | {r['fused']:.3f} | {r['torch']:.3f} | {r['torch'] / r['fused']:.2f}x |"
            )
    took = time.perf_counter() - start
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            f"<!-- section: {SECTION} -->",
            "## Fused fake-quantization kernels (numba) vs torch ops (CPU)",
            "",
            f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread; "
            f"shared with other work. Date: {date}. Medians of {ROUNDS} alternated rounds, ns per element "
            "(lower is better); the machine's load moves them by 2x and more. Every kernel is held bit for "
            "bit to the torch path it replaces by "
            "`tests/test_quantsim_fused.py`; the simulation takes the per-tensor kernel from "
            f"{fused.MIN_NUMEL:,} elements on (below, torch's own kernel), the per-token one from "
            f"{fused.ROWS_MIN_NUMEL:,}.",
            "",
            *lines,
            "",
            *section_end(SECTION, ".venv/bin/python -m benchmarks.fused_bench", took),
            "",
        ]
    )
    print(text)

    replace_section(RESULTS, SECTION, text)


if __name__ == "__main__":
    main()
