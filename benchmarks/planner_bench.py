"""The planner's sensitivity, block-cached against uncached: ``python -m benchmarks.planner_bench
[--configs 64x2,128x4] [--batches 2] [--no-write]``.

On the tests' small LLaMA (``tests/models/tiny_llama.py``: a transformers config, heavy-tailed weights,
massive channels) of each hidden size x layers, every (decision unit, candidate scheme) one-at-a-time
pass is measured twice: with :class:`Sensitivity` (the float pass that records the cache and the
verification passes included) and with a full pass from the input, interleaved item by item. Both give the
same numbers, value for value (checked here too). A benchmark is not a test: nothing asserts on a time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.machine import cpu_model

RESULTS = Path(__file__).parent / "results.md"
SECTION = "planner: cpu"


def measure(hidden: int, layers: int, batches: int, mask: bool = True) -> dict:
    """Cached and full passes of every item, interleaved item by item (the load of a shared machine
    drifts: both sides see the same drift); the cache's recording pass is counted on the cached side."""
    from tests.models.tiny_llama import analysis_of, tiny_llama, token_batches
    from tui_quantreport.engine.quantsim import FLOAT
    from tui_quantreport.engine.quantsim.planner import decision_units
    from tui_quantreport.engine.quantsim.sensitivity import Item, Sensitivity

    analysis = analysis_of(tiny_llama(hidden, layers), token_batches(batches, batch=4, tokens=32, causal_mask=mask))
    analysis.reference_outputs()
    analysis._range_pass(lambda done, total: None, None)
    sens = Sensitivity(analysis)
    started = time.perf_counter()
    sens.prepare()
    cached_s = time.perf_counter() - started
    units = decision_units(analysis, sens.cache.shared_inputs, called=sens.cache.first_call)
    items = [Item(u.members, s) for u in units for s in u.candidates if s != FLOAT]
    full_s = 0.0
    identical = True
    per_item: dict[Item, dict[str, float]] = {}
    for i, item in enumerate(items):
        for side in ("cached", "full") if i % 2 == 0 else ("full", "cached"):
            started = time.perf_counter()
            if side == "cached":
                got = sens.measure([item])[item]
            else:
                want = analysis._simulate(dict.fromkeys(item.members, item.scheme), None)
            per_item.setdefault(item, {})[side] = time.perf_counter() - started
        cached_s += per_item[item]["cached"]
        full_s += per_item[item]["full"]
        identical = identical and got == want
    # One pass at the top, the middle and the end of the model (the last item of each: verified already).
    samples = []
    for unit in (units[1], units[len(units) // 2], units[-1]):
        last = [item for item in items if item.members == unit.members][-1]
        samples.append((unit.name, per_item[last]["full"], per_item[last]["cached"]))
    return {
        "model": f"LLaMA hidden {hidden}, {layers} layers" + ("" if mask else ", mask built per pass"),
        "passes": len(items),
        "cached_s": cached_s,
        "full_s": full_s,
        "identical": identical,
        "cached_mb": sens.cache.kept_bytes / (1 << 20),
        "modules": len(sens.cache.kept),
        "fallback": sens.cache.fallback,
        "samples": samples,
    }


def render(rows: list[dict], batches: int, seconds: float) -> str:
    lines = [
        f"<!-- section: {SECTION} -->",
        "## Planner sensitivity: block-cached vs uncached (CPU)",
        "",
        f"Machine: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads; shared with other "
        f"work (timings are one run each). Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Every (decision unit x candidate scheme) one-at-a-time pass, {batches} probe batches of 4x32 tokens "
        "with their 4-D causal mask (as a serving stack passes it; transformers then uses it as it is), and "
        "without it (transformers builds it on every forward, through vmap: the rows marked 'mask built per "
        "pass'). Cached and full passes interleaved item by item; cached includes the recording float pass and "
        "the verification passes (a cached pass checked against the full one, about once per block).",
        "",
        "| model | passes | uncached s | cached s | speed-up | identical | cache |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        cache = f"{r['modules']} modules, {r['cached_mb']:.1f} MB" if not r["fallback"] else f"off: {r['fallback']}"
        lines.append(
            f"| {r['model']} | {r['passes']} | {r['full_s']:.1f} | {r['cached_s']:.1f} | "
            f"{r['full_s'] / r['cached_s']:.2f}x | {'yes' if r['identical'] else 'NO'} | {cache} |"
        )
    for r in rows:
        shown = "; ".join(
            f"`{name}` {full * 1000:.1f} ms full, {cached * 1000:.1f} ms cached" for name, full, cached in r["samples"]
        )
        lines += ["", f"One pass each, {r['model']}: {shown}."]
    lines += [
        "",
        "What a pass cannot skip: everything from the changed module on, and what runs outside the blocks (the "
        "embedding, the rotary table, transformers' causal-mask construction when the batch has no prepared mask: "
        "on these small models most of a pass, profiled). On average a module sits half-way down the model, so "
        "the one-at-a-time sweep approaches 2x as the blocks dominate a pass: the issue's 3x is not reached.",
        "",
        f"Command: `.venv/bin/python -m benchmarks.planner_bench` (total {seconds:.0f} s)",
        f"<!-- end section: {SECTION} -->",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    from benchmarks.results_file import replace_section

    replace_section(RESULTS, SECTION, text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.planner_bench")
    parser.add_argument("--configs", default="64x2,128x4", help="hidden x layers, comma-separated")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread varies less
    started = time.perf_counter()
    rows = []
    for config in args.configs.split(","):
        hidden, layers = (int(v) for v in config.split("x"))
        for mask in (True, False):
            rows.append(measure(hidden, layers, args.batches, mask))
            print(rows[-1], flush=True)
    text = render(rows, args.batches, time.perf_counter() - started)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
