"""Where the local SQNR's time goes, per scheme: ``python -m benchmarks.local_profile [--models a,b]
[--repeats 3] [--probes 4] [--top 8] [--schemes a,b] [--no-tops] [--no-write]``.

Per sample (default drifting_mlp and tiny_transformer), 1 thread, in one process, in plain forward
passes over the same probes (the median of the plain passes run just before and after each
measurement: the machine is shared):

- **weights**: each scheme alone, the analysis built and every eligible weight fake-quantized under
  its recipe (``local_pass.prepare_weights``): paid once per model, whatever the number of probes;
- **per probe**: that scheme's local pass alone once its weights are ready, less the float pass
  (the pass's own 1): what the scheme adds per probe batch;
- **before / after** for the recipes given exact faster forms (``engine/quantsim/weight_recipes.py``):
  torchao's own path and the new one, alternated round by round in this process;
- the top functions (cProfile, tottime) and torch ops (torch.profiler, self CPU) of the whole local pass.

``--schemes`` limits the per-scheme rows to those named (the whole pass still runs every scheme) and
``--no-tops`` leaves out the cProfile / torch.profiler runs: a big model (large_generated, 602
quantizable modules) takes minutes for all 23 schemes one at a time, and the profilers' own cost per
op multiplies its many small ops.

Writes the section ``local profile: cpu`` of ``benchmarks/results.md``. A benchmark: asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks.results_file import command_of, each_model, emit, section_end
from benchmarks.timing import calibrated_sample

RESULTS = Path(__file__).resolve().parent / "results.md"
SECTION = "local profile: cpu"
DEFAULT = ("drifting_mlp", "tiny_transformer")


def _seconds(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _ratio(fn: Callable[[], Any], plain: Callable[[], Any], repeats: int) -> float:
    """Median of ``fn``'s time over the plain passes around it."""
    ratios = []
    for _ in range(repeats):
        before = _seconds(plain)
        took = _seconds(fn)
        after = _seconds(plain)
        ratios.append(took / ((before + after) / 2))
    return statistics.median(ratios)


@contextlib.contextmanager
def torchao_recipes() -> Iterator[None]:
    """The NF4 and HQQ weights computed by torchao's own path (what the exact forms replaced)."""
    from torchao.quantization.quant_primitives import optimize_weights_proximal_legacy
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import to_nf4

    import tui_quantreport.engine.quantsim.schemes.int4_asymmetric as int4
    import tui_quantreport.engine.quantsim.schemes.nf4 as nf4

    saved = nf4.nf4_dequantized, int4.hqq_proximal
    nf4.nf4_dequantized = lambda w, block, scaler: to_nf4(w.detach(), block, scaler).get_original_weight()  # type: ignore[assignment]
    int4.hqq_proximal = optimize_weights_proximal_legacy  # type: ignore[assignment]
    try:
        yield
    finally:
        nf4.nf4_dequantized, int4.hqq_proximal = saved


#: The schemes whose weight recipe has an exact faster form, and the context that restores torchao's path.
REPLACED = ("nf4", "int4_hqq_g128")


def profile_sample(
    name: str, repeats: int, k: int, top: int, only: tuple[str, ...] = (), tops: bool = True
) -> dict[str, Any]:
    from tui_quantreport.engine.quantsim import ErrorAnalysis
    from tui_quantreport.engine.quantsim.local_pass import prepare_weights
    from tui_quantreport.engine.quantsim.schemes import SCHEMES
    from tui_quantreport.engine.session import call_batch

    model, session, stats, probes = calibrated_sample(name, k)

    def plain() -> None:
        with torch.no_grad():
            for b in probes:
                call_batch(model, b)

    def fresh(schemes: tuple[str, ...] | None = None) -> Any:
        return ErrorAnalysis.from_stats(model, session.catalog, probes, stats, schemes=schemes)

    plain()
    unit = statistics.median(_seconds(plain) for _ in range(5))
    rows = []
    for scheme in only or tuple(SCHEMES):
        fresh((scheme,)).local_sqnr(advice=False)  # warm-up (imports, first calls)

        def weights(scheme: str = scheme) -> None:
            prepare_weights(fresh((scheme,)))

        def per_probe(scheme: str = scheme) -> float:
            analysis = fresh((scheme,))
            prepare_weights(analysis)
            before = _seconds(plain)
            took = _seconds(lambda: analysis.local_sqnr(advice=False))
            after = _seconds(plain)
            return took / ((before + after) / 2) - 1.0

        row: dict[str, Any] = {
            "scheme": scheme,
            "weights": _ratio(weights, plain, repeats),
            "per_probe": statistics.median(per_probe() for _ in range(repeats)),
        }
        if scheme in REPLACED:
            old, new = [], []
            for _ in range(repeats):
                with torchao_recipes():
                    old.append(_ratio(weights, plain, 1))
                new.append(_ratio(weights, plain, 1))
            row["torchao"], row["exact"] = statistics.median(old), statistics.median(new)
        rows.append(row)
    everything = _ratio(lambda: fresh().local_sqnr(advice=False), plain, repeats)
    all_weights = _ratio(lambda: prepare_weights(fresh()), plain, repeats)

    torch_ops: list[tuple[str, float, int]] = []
    functions: list[str] = []
    if tops:
        torch_ops, functions = _tops(lambda: fresh().local_sqnr(advice=False), top)
    return {
        "name": name,
        "probes": len(probes),
        "plain_ms": unit * 1e3,
        "rows": rows,
        "all": everything,
        "all_weights": all_weights,
        "schemes": len(SCHEMES),
        "torch_ops": torch_ops,
        "functions": functions,
    }


def _tops(run: Callable[[], Any], top: int) -> tuple[list[tuple[str, float, int]], list[str]]:
    """The top torch ops (torch.profiler, self CPU share, calls) and functions (cProfile, tottime) of ``run``."""
    from torch.profiler import ProfilerActivity, profile

    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    total_us = sum(e.self_cpu_time_total for e in prof.key_averages()) or 1.0
    torch_ops = [
        (e.key, e.self_cpu_time_total / total_us, e.count)
        for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    ]
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    functions = [
        line.strip()
        for line in text.getvalue().splitlines()
        if line.strip() and line.strip()[0].isdigit() and "{" not in line[:10]
    ][:top]
    return torch_ops, functions


def render(results: list[dict[str, Any]], command: str, took: float) -> str:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"<!-- section: {SECTION} -->",
        "## Local SQNR, per scheme: weights (once per model) and per probe (CPU)",
        "",
        f"torch {torch.__version__}, 1 thread, shared 2-core VM; {date}. In plain forward passes over the same "
        "probes (each measurement over the plain passes just before and after it, medians). 'weights': that "
        "scheme's recipe over every eligible weight (once per model); 'per probe': its local pass alone, weights "
        "ready, less the float pass. torchao -> exact: the same recipe by torchao's own path and by "
        "`engine/quantsim/weight_recipes.py`, alternated in this process (bit for bit the same weights: "
        "`tests/test_weight_recipes.py`).",
        "",
    ]
    for r in results:
        lines += [
            f"### {r['name']} ({r['probes']} probes, plain pass {r['plain_ms']:.1f} ms)",
            "",
            f"All {r['schemes']} schemes: local pass {r['all']:.1f} passes, of which weights {r['all_weights']:.1f}.",
            "",
            "| scheme | weights, passes | torchao -> exact | per probe, passes |",
            "|---|---:|---:|---:|",
        ]
        for row in sorted(r["rows"], key=lambda row: -row["weights"]):
            change = f"{row['torchao']:.2f} -> {row['exact']:.2f}" if "torchao" in row else ""
            lines.append(f"| {row['scheme']} | {row['weights']:.2f} | {change} | {row['per_probe']:.2f} |")
        if r["torch_ops"]:
            lines += ["", "Top torch ops of the whole local pass (torch.profiler, self CPU share, calls):", ""]
            lines += [f"- `{key}` {share:.0%} ({count:,})" for key, share, count in r["torch_ops"]]
        if r["functions"]:
            lines += ["", "Top functions (cProfile, tottime):", "", "```", *r["functions"], "```"]
        lines.append("")
    lines += [*section_end(SECTION, command, took), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.local_profile")
    parser.add_argument("--models", default=",".join(DEFAULT))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--schemes", default="", help="per-scheme rows for these schemes only (default: all)")
    parser.add_argument("--no-tops", action="store_true", help="leave out the cProfile / torch.profiler runs")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from tui_quantreport.engine.quantsim.schemes import SCHEMES

    only = tuple(s.strip() for s in args.schemes.split(",") if s.strip())
    unknown = [s for s in only if s not in SCHEMES]
    if unknown:
        print(f"unknown scheme(s): {', '.join(unknown)} (known: {', '.join(SCHEMES)})", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    results = each_model(
        args.models, lambda name: profile_sample(name, args.repeats, args.probes, args.top, only, not args.no_tops)
    )
    text = render(results, command_of("benchmarks.local_profile", argv), time.perf_counter() - started)
    emit(RESULTS, SECTION, text, not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
