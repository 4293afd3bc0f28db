"""Measured-error benchmark: ``python -m benchmarks.quantsim_bench [--threads 1] [--repeats 3]
[--models a,b] [--probes 4] [--no-write]``.

Per sample, on its first K calibration batches (the probes), in one process
with the thread count fixed:

- **plain**: a float forward pass over the probes (``eval`` + ``no_grad``): the unit;
- **local, schemes**: ``ErrorAnalysis.local_sqnr(advice=False)`` with calibrated
  ranges (all four schemes for every quantizable module: one streaming pass);
- **local, with advice**: the same plus the clipped-range and equalized variants
  (a percentile pass first, then the streaming pass);
- **plan**: one end-to-end evaluation of the recommended plan (cache cleared);
- **toggle**: one what-if change (a module to float) evaluated: what the app's
  header waits for after a key press.

The targets: local (schemes) <= 1 + the number of schemes forward passes; plan <= 1.2
passes; a toggle on the 2,000-module sample <= 1 s. Reported, never asserted.

Floors (a second table): what the plan evaluation costs with its quantization
ops replaced by the identity (the simulation's own machinery: swapped forwards,
the model freeze, the SQNR sums), how many quantization ops a probe batch runs,
the share of the matmul/convolution/attention kernels in a plain pass and in
the local pass (torch.profiler self times; the profiler's own cost per op
lowers the share where ops are tiny). The local pass runs those kernels 1 + 4
times over (the float one, then the per-tensor weight over the quantized input
and the per-channel weight over three inputs laid end to end), so a model whose
plain pass is a share s of them cannot go below 1 + 4 s passes. Writes the section ``quantsim: cpu`` of ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from benchmarks.machine import describe
from benchmarks.results_file import write_results
from benchmarks.targets import LOCAL_LARGE, LOCAL_LARGE_SCHEMES, PLAN_EVAL, quantsim_command
from benchmarks.timing import calibrated_sample

RESULTS = Path(__file__).resolve().parent / "results.md"
DEFAULT = ("drifting_mlp", "showcase", "outlier_channels", "tiny_transformer", "convnet_per_tensor", "large_generated")


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _paired(fn, plain, repeats: int, warm: bool = True) -> tuple[float, float]:
    """(median seconds of ``fn``, median of its ratio to the plain passes run just before and after it).

    The machine is shared: each measurement is divided by the plain passes around it,
    so a load that comes and goes moves both alike.
    """
    if warm:
        fn()  # warm-up
    times, ratios = [], []
    for _ in range(repeats):
        before = _seconds(plain)
        took = _seconds(fn)
        after = _seconds(plain)
        times.append(took)
        ratios.append(took / ((before + after) / 2))
    return statistics.median(times), statistics.median(ratios)


#: The kernels that do a model's arithmetic (the local pass runs 1 + 4 of them per module call).
COMPUTE_KERNELS = (
    "aten::addmm",
    "aten::mm",
    "aten::bmm",
    "aten::_addmm_activation",
    "aten::mkldnn_convolution",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
)


def _profiled(fn, repeats: int = 3) -> tuple[float, float]:
    """(seconds of the compute kernels, seconds of everything) per call of ``fn``, torch.profiler self times."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
    averages = prof.key_averages()
    compute = sum(e.self_cpu_time_total for e in averages if e.key in COMPUTE_KERNELS)
    total = sum(e.self_cpu_time_total for e in averages)
    return compute / repeats / 1e6, total / repeats / 1e6


def floors(fresh, plan, plain, repeats: int, probes: int) -> dict:
    """The plan evaluation with its quantization ops counted, then replaced by the identity; kernel shares."""
    import tui_quantreport.engine.quantsim.forward as ea
    import tui_quantreport.engine.quantsim.schemes.dynamic as dyn

    names = ("fake_quantize_float32", "fake_quantize_float32_")
    saved = (torch.fake_quantize_per_tensor_affine, *(getattr(ea, n) for n in names), dyn.fake_quantize_dynamic)
    counts = {"per-tensor": 0, "dynamic": 0}

    def patch(small, big, big_, dynamic) -> None:
        torch.fake_quantize_per_tensor_affine = small
        ea.fake_quantize_float32, ea.fake_quantize_float32_ = big, big_
        dyn.fake_quantize_dynamic = dynamic

    def counted(fn, key):
        def wrapper(*args, **kwargs):
            inner = counts["per-tensor"]
            out = fn(*args, **kwargs)
            counts["per-tensor"] = inner  # a dynamic step's own per-tensor op is not counted twice
            counts[key] += 1
            return out

        return wrapper

    def evaluator(analysis):
        def evaluate():
            analysis._plan_cache.clear()
            return analysis.plan_sqnr(plan)

        return evaluate

    try:
        patch(*(counted(f, "per-tensor") for f in saved[:3]), counted(saved[3], "dynamic"))
        analysis = fresh()
        analysis.local_sqnr()
        counts.update({"per-tensor": 0, "dynamic": 0})
        evaluator(analysis)()
        per_batch = {key: value / max(1, probes) for key, value in counts.items()}
        patch(*(lambda x, *args, **kwargs: x,) * 4)
        identity = fresh()
        identity.local_sqnr()
        stubbed = _paired(evaluator(identity), plain, repeats)
    finally:
        patch(*saved)
    plain_compute, plain_total = _profiled(plain)
    local_compute, local_total = _profiled(lambda: fresh().local_sqnr(advice=False))
    return {
        "identity": stubbed,
        "ops": per_batch,
        "plain_share": plain_compute / plain_total if plain_total else 0.0,
        "local_share": local_compute / local_total if local_total else 0.0,
    }


def bench(
    name: str,
    repeats: int,
    k: int,
    with_floors: bool = True,
    with_advice: bool = True,
    local_repeats: int | None = None,
) -> dict:
    """One sample's row. ``local_repeats``: the local pass measured that many times with no warm-up of its
    own (the weights' and the plan's runs warm it; for a sample whose local pass takes long)."""
    from tui_quantreport.engine.quantsim import FLOAT, ErrorAnalysis
    from tui_quantreport.engine.session import call_batch

    model, session, stats, probes = calibrated_sample(name, k)

    def plain():
        with torch.no_grad():
            for b in probes:
                call_batch(model, b)

    def fresh(schemes: tuple[str, ...] | None = None):
        return ErrorAnalysis.from_stats(model, session.catalog, probes, stats, schemes=schemes)

    def weights_only():
        """What the local pass spends before its float pass: the analysis built and every weight
        fake-quantized under every scheme's weight recipe (once per model, not per probe)."""
        from tui_quantreport.engine.quantsim.local_pass import prepare_weights

        prepare_weights(fresh())

    plain()
    units = [_seconds(plain) for _ in range(max(3, repeats))]
    if local_repeats is None:
        local = _paired(lambda: fresh().local_sqnr(advice=False), plain, repeats)
        weights = _paired(weights_only, plain, repeats)
    else:
        weights = _paired(weights_only, plain, local_repeats)
        local = _paired(lambda: fresh().local_sqnr(advice=False), plain, local_repeats, warm=False)
    advice = _paired(lambda: fresh().local_sqnr(advice=True), plain, repeats) if with_advice else None
    # large_generated's bound (<= 4 passes) was written for the four int8 schemes: measured with those alone too.
    subset = None
    if name == "large_generated":
        subset = _paired(lambda: fresh(LOCAL_LARGE_SCHEMES).local_sqnr(advice=False), plain, local_repeats or repeats)
    analysis = fresh()
    analysis.local_sqnr()
    plan = analysis.recommended_plan()

    def evaluate_plan():
        analysis._plan_cache.clear()
        return analysis.plan_sqnr(plan)

    plan_s = _paired(evaluate_plan, plain, repeats)
    merged = analysis._merged_probes() is not None
    flips = iter(list(analysis.quantizable) * (2 * repeats + 4))

    def toggle():
        fqn = next(flips)
        analysis._plan_cache.clear()
        return analysis.plan_sqnr(plan.with_scheme([fqn], FLOAT if plan.modules[fqn] != FLOAT else "weight_only"))

    toggle_s = _paired(toggle, plain, repeats)
    # The same evaluations one probe at a time (the path before merged probes), in this process.
    analysis.merge_probes = False
    plan_alone = _paired(evaluate_plan, plain, repeats)
    toggle_alone = _paired(toggle, plain, repeats)
    analysis.merge_probes = True
    floor = floors(fresh, plan, plain, repeats, len(probes)) if with_floors else None
    unfused = None
    if any(isinstance(m, torch.nn.TransformerEncoderLayer) for m in model.modules()):
        # The simulation sees the encoder layers' inner Linear modules: their fused fast path is off
        # in every simulated pass. What that costs by itself: the plain pass with it off.
        def plain_unfused():
            enabled = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
            try:
                plain()
            finally:
                torch.backends.mha.set_fastpath_enabled(enabled)

        unfused = _paired(plain_unfused, plain, repeats)[1]
    return {
        "floors": floor,
        "unfused": unfused,
        "name": name,
        "modules": len(session.catalog.modules),
        "quantizable": len(analysis.quantizable),
        "probes": len(probes),
        "plain": statistics.median(units),
        "local": local,
        "local_subset": subset,
        "weights": weights,
        "advice": advice,
        "plan": plan_s,
        "toggle": toggle_s,
        "plan_alone": plan_alone,
        "toggle_alone": toggle_alone,
        "merged": merged,
        "why_not": analysis.merge_reason,
        "schemes": len(analysis.schemes),
        "k": k,
        "sqnr": analysis.plan_sqnr(plan),
    }


#: What the profiles (cProfile and torch.profiler of each sample's plan evaluation and local pass)
#: showed; the floors table above it is re-measured by every run.
WHERE_THE_TIME_GOES = (
    "Where the time goes (cProfile and torch.profiler of each sample's plan evaluation and local pass). "
    "*Plan*: a simulated pass is the float pass plus (a) its quantization ops: one per static input (an input "
    "two modules read with the same qparams is quantized once), one per static output a float op reads, and a "
    "dynamic step per dynamic module (qparams from the tensor's own range); torch's fake-quantize kernel below "
    "2,048 elements (~2.8 us on an (8, 32) tensor, more than the 2.4 us F.linear it feeds), four vectorised "
    "in-place passes above (~13 us on 49K elements; torch has no exact single-pass CPU kernel: its own is "
    "scalar, 25x slower there); and (b) the machinery: the swapped forwards, the model freeze (showcase's and "
    "convnet's observers copied and restored), the SQNR sums of the model output (~13 small float64 ops a batch, "
    "~50 us with cold caches). The floors table separates them ('as identity' is (b) alone). "
    "large_generated (its plan: 602 dynamic Linear of 32-64 features) runs its probes merged, each dynamic "
    "input's probe segments quantized in one numba call (each segment's range, qparams and values; before, "
    "~8 torch ops and qparams tensors, ~60 us a module against a ~30 us Linear call on this VM), so it is "
    "under 1.2. Still over 1.2: outlier_channels and "
    "showcase (1.3-2 ms passes): machinery 0.15-0.25 (the SQNR sums alone ~0.16 passes on outlier_channels; "
    "showcase's observer freeze ~0.08) plus 0.15-0.3 for quantizing 49K-131K-element activations in 4 memory "
    "passes each; "
    "tiny_transformer: every simulated pass runs without the fused attention fast path (to see the inner Linear "
    "modules; ~1.16x by itself) and its 5 dynamic modules quantize 3-D inputs per token (the merged batch at "
    "once: no row crosses a probe); the fused path off is most of its ratio (its 'unfused' line). *Local*: the matmul/convolution kernels run 1 + 4 times over (table: floor 1 + 4 s); "
    "drifting_mlp (95% matmul, floor ~4.8) and outlier_channels (~84%, floor ~4.4) add the float64 norms of the "
    "differences (the SQNR sums are taken in float64; torch's float64 norm of float32 data runs at ~1/4 the "
    "speed of the float32 one), the quantization of the inputs, and the weights' (drifting_mlp: its 1.9M "
    "weights, not 4 x 256 x 256, quantized twice into 15 MB of new tensors kept for the plans: ~0.5 ms of "
    "arithmetic and 2-4 ms of page faults, 0.25-0.4 passes; a page fault costs ~1.2 us per 4 KB on this VM, "
    "which is also why the pass now keeps its large temporaries in buffers). tiny_transformer: "
    "its two MultiheadAttention out_proj modules have no calibrated range (attention uses their weight, never "
    "calls them), so the local pass runs a range pass first (a float pass with hooks on every leaf, ~2 passes) "
    "to find they are never called. Python's garbage collector is paused during each measurement (its full "
    "collections walk the whole model's objects: 150 ms on large_generated). Results are identical to the "
    "unoptimised simulation's, value for value (tests/test_quantsim_fastpaths.py holds each fast path against "
    "the path it replaced).",
)


def table(rows: list[dict]) -> list[str]:
    out = [
        "| sample | modules (quantizable) | probes | plain pass ms | local, all schemes | of which weights | local + advice | plan eval | toggle | plan SQNR |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        unit = r["plain"]

        def cell(key: str, r: dict = r) -> str:
            if r.get(key) is None:
                return "n/a"
            seconds, ratio = r[key]
            return f"{seconds * 1000:,.0f} ms ({ratio:.2f}x)"

        out.append(
            f"| {r['name']} | {r['modules']:,} ({r['quantizable']}) | {r['probes']} | {unit * 1000:,.1f} | "
            f"{cell('local')} | {cell('weights')} | {cell('advice')} | {cell('plan')} | {cell('toggle')} | {r['sqnr']} |"
        )
    return out


def targets_table(rows: list[dict], threads: int, repeats: int) -> list[str]:
    """Each target against its measurement, with the command that reproduces the row."""
    out = [
        "| sample | plan eval: one probe at a time -> merged (target <= 1.2x) | toggle: one at a time -> merged "
        "| probes merged | local SQNR, all schemes, in passes (target) | the same less the weights' quantization "
        "| command |",
        "| --- | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for r in rows:
        plan_ok = "met" if r["plan"][1] <= PLAN_EVAL else "not met"
        local_target = LOCAL_LARGE if r["name"] == "large_generated" else 1.0 + r["schemes"]
        subset = r.get("local_subset")
        local_ok = "met" if (subset or r["local"])[1] <= local_target else "not met"
        local_cell = f"{r['local'][1]:.2f} (<= {local_target:g}: {local_ok})"
        if subset is not None:
            local_cell = (
                f"{r['local'][1]:.2f} with all {r['schemes']}; {subset[1]:.2f} with the {len(LOCAL_LARGE_SCHEMES)} "
                f"int8 schemes the bound was written for (<= {local_target:g}: {local_ok})"
            )
        merged = "yes" if r["merged"] else f"no: {r['why_not']}"
        rest = f"{r['local'][1] - r['weights'][1]:.2f}" if "weights" in r else "n/a"
        command = quantsim_command(r["name"], r["k"], repeats)
        out.append(
            f"| {r['name']} | {r['plan_alone'][1]:.2f}x -> {r['plan'][1]:.2f}x ({plan_ok}) | "
            f"{r['toggle_alone'][1]:.2f}x -> {r['toggle'][1]:.2f}x | {merged} | "
            f"{local_cell} | {rest} | `{command}` |"
        )
    return out


def floor_table(rows: list[dict]) -> list[str]:
    out = [
        "| sample | plan eval | the same, quantization ops as identity | quantization ops a batch (per-tensor + dynamic) "
        "| compute kernels' share: plain pass | local pass | local floor, 1 + 4 x plain share |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        f = r["floors"]
        ops = f["ops"]
        out.append(
            f"| {r['name']} | {r['plan'][1]:.2f}x | {f['identity'][1]:.2f}x | "
            f"{ops['per-tensor']:,.0f} + {ops['dynamic']:,.0f} | {100 * f['plain_share']:.0f}% | "
            f"{100 * f['local_share']:.0f}% | {1 + 4 * f['plain_share']:.2f} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quantsim_bench")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--models", default=",".join(DEFAULT))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--no-floors", action="store_true", help="skip the floors table (profiler runs)")
    parser.add_argument("--no-advice", action="store_true", help="skip the 'local + advice' column (not a target)")
    parser.add_argument(
        "--rows",
        type=Path,
        help="keep each sample's row in this JSON file (merged by sample), and write the section from all of them: "
        "the samples can be measured in separate runs (each under the 2-minute bench limit)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        print(f"{name} ...", file=sys.stderr, flush=True)
        rows.append(bench(name, args.repeats, args.probes, not args.no_floors, not args.no_advice))
    if args.rows is not None:
        import json

        for r in rows:
            r["sqnr"] = str(r["sqnr"])
        kept = json.loads(args.rows.read_text()) if args.rows.exists() else []
        measured = {r["name"] for r in rows}
        rows = [r for r in kept if r["name"] not in measured] + rows
        rows.sort(key=lambda r: DEFAULT.index(r["name"]) if r["name"] in DEFAULT else len(DEFAULT))
        args.rows.write_text(json.dumps(rows, indent=1))
        args.no_floors = args.no_floors or any(r.get("floors") is None for r in rows)
    shown = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks.quantsim_bench" + (f" {' '.join(shown)}" if shown else "")
    text = section(rows, args.threads, args.repeats, args.no_floors, command, write=not args.no_write)
    print(text)
    return 0


def section(rows: list[dict], threads: int, repeats: int, no_floors: bool, command: str, write: bool) -> str:
    """The ``quantsim: cpu`` section of ``results.md`` for ``rows`` (written there with ``write``)."""
    machine = "; ".join(f"{k}: {v}" for k, v in describe(torch.device("cpu")).items())
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    text = "\n".join(
        [
            "## Measured error (quantsim), CPU",
            "",
            f"Machine: {machine}.  ",
            (
                f"Date: {when}. Threads: {threads}. Medians of {repeats} after a warm-up. "
                "Times in ms for all probes; in brackets, the median ratio to the plain forward passes over the same "
                "probes run just before and after each measurement (the machine is shared: pairing keeps a passing "
                "load out of the ratios)."
            ),
            "",
            *table(rows),
            "",
            "Targets, each row measured in this run, with the command that reproduces it; "
            "'one probe at a time' is the same plan evaluated with `merge_probes=False` in the same process:",
            "",
            *targets_table(rows, threads, repeats),
            "",
            *(
                ["Floors (see the module docstring of `benchmarks/quantsim_bench.py`):", "", *floor_table(rows), ""]
                if not no_floors
                else []
            ),
            (
                "Targets: one plan evaluation <= 1.2 passes; a what-if toggle on large_generated (2,000+ modules) "
                "<= 150 ms from key to header in the app (`benchmarks.app_toggle`; the toggle column here is the "
                "engine alone); local SQNR <= 1 + the number of schemes measured (every registered scheme: the "
                "`schemes` count of the run, 23 today) passes, and <= 4 on large_generated, judged on the four int8 "
                "schemes it was written for (static per tensor and per channel, dynamic, weight-only: measured "
                "with those alone too). `local + advice` (n/a when not measured) adds the percentile pass "
                "and the clipped/equalized variants used for finding severities. "
                "`of which weights` is the analysis built and every weight fake-quantized under every scheme's "
                "recipe (HQQ's iterations, NF4's double quantization, ...): once per model, whatever the number "
                "of probes; 'less the weights' is the pass itself."
            ),
            "",
            *WHERE_THE_TIME_GOES,
            "",
            f"Command: `{command}`",
            "",
        ]
    )
    if write:
        write_results(RESULTS, "quantsim: cpu", text, f"Machine: {machine}.  \nDate: {when}.")
    return text


if __name__ == "__main__":
    sys.exit(main())
