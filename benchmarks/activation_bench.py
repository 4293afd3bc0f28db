"""The faster exact activation casts against torchao's own path: ``python -m benchmarks.activation_bench
[--models tiny_transformer,drifting_mlp] [--repeats 5] [--probes 4] [--no-write]``.

``engine/quantsim/activation_recipes.py`` gives the MX, NVFP4, fp8 and 8da4w schemes torchao's bits
with fewer ops. Here, per sample and per scheme whose cast it replaced, 1 thread, in one process,
alternated round by round (torchao's path put back by :func:`torchao_activations`, then ours):

- **per probe**: the scheme's local pass alone once its weights are ready, less the float pass, in
  plain forward passes over the same probes (the plain passes just before and after each measurement);
- **weights**: the scheme's recipe over every eligible weight (the same casts run on weights), in
  plain passes;
- **identical**: the scheme's local SQNRs the same doubles by both paths (they must be: the tests
  hold the casts bit for bit, ``tests/test_activation_recipes.py``).

Writes the section ``activation casts: cpu`` of ``benchmarks/results.md``. A benchmark: asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks.local_profile import _ratio, _seconds
from benchmarks.results_file import command_of, each_model, emit, section_end
from benchmarks.timing import calibrated_sample

RESULTS = Path(__file__).resolve().parent / "results.md"
SECTION = "activation casts: cpu"
DEFAULT = ("tiny_transformer", "drifting_mlp")
#: The schemes whose casts have an exact faster form (activations, and the same casts on weights).
SCHEMES = (
    "mxfp4",
    "mxfp8",
    "nvfp4",
    "8da4w_g32",
    "fp8_dynamic_per_row",
    "fp8_dynamic_per_tensor",
    "fp8_static",
    "mxfp4_weight_only",
    "nvfp4_weight_only",
    "fp8_weight_only",
)


@contextlib.contextmanager
def torchao_activations() -> Iterator[None]:
    """The casts computed by torchao's own path (what :mod:`activation_recipes` replaced)."""
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import MXTensor
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor
    from torchao.quantization.quant_primitives import (
        _choose_scale_float8,
        _dequantize_affine_float8,
        _quantize_affine_float8,
    )
    from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
        _apply_int8_act_asym_per_token_quant_dequant,
    )

    import tui_quantreport.engine.quantsim.schemes.float8 as float8
    import tui_quantreport.engine.quantsim.schemes.int8_dynamic_int4 as int8_dynamic_int4
    import tui_quantreport.engine.quantsim.schemes.mx as mx
    import tui_quantreport.engine.quantsim.schemes.nvfp4 as nvfp4

    def mx_torchao(x: torch.Tensor, bits: int) -> torch.Tensor:
        elem = torch.float8_e4m3fn if bits == 8 else torch.float4_e2m1fn_x2
        return MXTensor.to_mx(x, elem, 32, scaling_mode=ScaleCalculationMode.RCEIL).dequantize(x.dtype)

    def nvfp4_torchao(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return NVFP4Tensor.to_nvfp4(x, per_tensor_scale=scale).dequantize(x.dtype)

    def float8_torchao(x: torch.Tensor, per_row: bool, scale: torch.Tensor | None = None) -> torch.Tensor:
        if scale is None:
            block = [1] * (x.dim() - 1) + [x.shape[-1]] if per_row and x.dim() else list(x.shape)
            scale = _choose_scale_float8(x, block_size=block, float8_dtype=torch.float8_e4m3fn)
        return _dequantize_affine_float8(_quantize_affine_float8(x, scale, torch.float8_e4m3fn), scale, x.dtype)

    saved = (
        mx.mx_dequantized,
        nvfp4.nvfp4_dequantized,
        float8.float8_dequantized,
        int8_dynamic_int4.int8_per_token_asym_dequantized,
    )
    mx.mx_dequantized = mx_torchao  # type: ignore[assignment]
    nvfp4.nvfp4_dequantized = nvfp4_torchao  # type: ignore[assignment]
    float8.float8_dequantized = float8_torchao  # type: ignore[assignment]
    int8_dynamic_int4.int8_per_token_asym_dequantized = _apply_int8_act_asym_per_token_quant_dequant  # type: ignore[assignment]
    try:
        yield
    finally:
        (
            mx.mx_dequantized,
            nvfp4.nvfp4_dequantized,
            float8.float8_dequantized,
            int8_dynamic_int4.int8_per_token_asym_dequantized,
        ) = saved


def bench_sample(name: str, repeats: int, k: int) -> dict[str, Any]:
    from tui_quantreport.engine.quantsim import ErrorAnalysis
    from tui_quantreport.engine.quantsim.local_pass import prepare_weights
    from tui_quantreport.engine.session import call_batch

    model, session, stats, probes = calibrated_sample(name, k)

    def plain() -> None:
        with torch.no_grad():
            for b in probes:
                call_batch(model, b)

    def fresh(scheme: str) -> Any:
        return ErrorAnalysis.from_stats(model, session.catalog, probes, stats, schemes=(scheme,))

    def per_probe(scheme: str) -> float:
        analysis = fresh(scheme)
        prepare_weights(analysis)
        before = _seconds(plain)
        took = _seconds(lambda: analysis.local_sqnr(advice=False))
        after = _seconds(plain)
        return took / ((before + after) / 2) - 1.0

    plain()
    unit = statistics.median(_seconds(plain) for _ in range(5))
    rows = []
    for scheme in SCHEMES:
        with torchao_activations():
            theirs = fresh(scheme).local_sqnr(advice=False)  # also the warm-up
        ours = fresh(scheme).local_sqnr(advice=False)
        old: dict[str, list[float]] = {"probe": [], "weights": []}
        new: dict[str, list[float]] = {"probe": [], "weights": []}
        for _ in range(repeats):
            for side, context in ((old, torchao_activations), (new, contextlib.nullcontext)):
                with context():
                    side["probe"].append(per_probe(scheme))
                    side["weights"].append(_ratio(lambda s=scheme: prepare_weights(fresh(s)), plain, 1))
        rows.append(
            {
                "scheme": scheme,
                "probe": (statistics.median(old["probe"]), statistics.median(new["probe"])),
                "weights": (statistics.median(old["weights"]), statistics.median(new["weights"])),
                "identical": repr(theirs) == repr(ours),
            }
        )
    return {"name": name, "probes": len(probes), "plain_ms": unit * 1e3, "rows": rows}


def render(results: list[dict[str, Any]], command: str, took: float) -> str:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"<!-- section: {SECTION} -->",
        "## Activation casts: torchao's path -> the exact faster form (CPU)",
        "",
        f"torch {torch.__version__}, 1 thread, shared 2-core VM; {date}. Per scheme, in plain forward passes "
        "over the same probes (medians, the two paths alternated round by round in one process): its local "
        "pass per probe less the float pass, and its weights' recipe (the same casts). 'identical': the "
        "scheme's local SQNRs are the same doubles by both paths (`tests/test_activation_recipes.py` holds "
        "the casts bit for bit).",
        "",
    ]
    for r in results:
        lines += [
            f"### {r['name']} ({r['probes']} probes, plain pass {r['plain_ms']:.1f} ms)",
            "",
            "| scheme | per probe, passes: torchao -> ours | weights, passes: torchao -> ours | identical |",
            "|---|---:|---:|---|",
        ]
        for row in r["rows"]:
            (p0, p1), (w0, w1) = row["probe"], row["weights"]
            lines.append(
                f"| {row['scheme']} | {p0:.2f} -> {p1:.2f} | {w0:.2f} -> {w1:.2f} | "
                f"{'yes' if row['identical'] else 'NO'} |"
            )
        lines.append("")
    lines += [*section_end(SECTION, command, took), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.activation_bench")
    parser.add_argument("--models", default=",".join(DEFAULT))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    results = each_model(args.models, lambda name: bench_sample(name, args.repeats, args.probes))
    text = render(results, command_of("benchmarks.activation_bench", argv), time.perf_counter() - started)
    emit(RESULTS, SECTION, text, not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
