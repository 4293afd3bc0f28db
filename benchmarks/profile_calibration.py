"""Where our calibration time goes: ``python -m benchmarks.profile_calibration [MODEL] [--top 10] [--torch]``.

Profiles ``Session.calibrate`` (all four detectors) on one benchmark model
(default: the float conv net) with cProfile, sorted by own time, after a
warm-up; ``--torch`` also prints torch.profiler's operator table. Threads are
fixed at 1, as in the benchmark.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from benchmarks.models import all_cases
from benchmarks.run import plain_pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_calibration")
    parser.add_argument("model", nargs="?", default="convnet_per_tensor", choices=list(all_cases()))
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--batches", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--torch", action="store_true", help="also run torch.profiler")
    parser.add_argument(
        "--selection-ab",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="instead of profiling: ROUNDS alternated rounds of plain, ours with the selection kernels off "
        "(TUI_QUANTREPORT_SELECTION=torch) and on (auto), each ratio against the plain pass of its round",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    from tui_quantreport.engine import Session, Settings, observation_plan

    case = all_cases()[args.model]
    model, _ = case.build()
    batches = case.batches(args.batches)
    session = Session(model.eval())
    settings = Settings.build()
    plan = observation_plan(session.catalog, settings)
    session.calibrate(batches, settings)  # warm-up
    plain_pass(model, batches)

    if args.selection_ab:
        return _selection_ab(
            args.model,
            args.selection_ab,
            lambda: plain_pass(model, batches),
            lambda: session.calibrate(batches, settings),
        )

    started = time.perf_counter()
    plain_pass(model, batches)
    plain = time.perf_counter() - started
    started = time.perf_counter()
    session.calibrate(batches, settings)
    ours = time.perf_counter() - started
    n = len(batches)
    print(
        f"{args.model}: {n} batches, {len(plan)} points; plain {plain / n * 1e3:.2f} ms/batch, "
        f"ours {ours / n * 1e3:.2f} ms/batch ({ours / plain:.2f}x), unprofiled"
    )

    profiler = cProfile.Profile()
    profiler.enable()
    session.calibrate(batches, settings)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(args.sort).print_stats(args.top)
    print(out.getvalue())

    if args.torch:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            session.calibrate(batches, settings)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    return 0


def _selection_ab(name: str, rounds: int, plain: Callable[[], object], ours: Callable[[], object]) -> int:
    """Before/after in one process: the selection kernels off and on, alternated, as ratios to the
    plain pass of the same round (wall and this thread's CPU time; the machine is shared)."""
    from tui_quantreport.engine.stats import kernel

    def timed(fn: Callable[[], object]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.thread_time()
        fn()
        return time.perf_counter() - wall, time.thread_time() - cpu

    def with_mode(mode: str) -> tuple[float, float]:
        os.environ[kernel.ENV] = mode
        try:
            return timed(ours)
        finally:
            os.environ.pop(kernel.ENV, None)

    with_mode("torch"), with_mode("auto")  # warm-up (the kernels compile or load here)
    ratios: dict[str, list[tuple[float, float]]] = {"torch": [], "auto": []}
    for i in range(rounds):
        modes = ("torch", "auto") if i % 2 == 0 else ("auto", "torch")
        base = timed(plain)
        for mode in modes:
            got = with_mode(mode)
            ratios[mode].append((got[0] / base[0], got[1] / base[1]))
    for mode, label in (("torch", "kernels off (torch)"), ("auto", "kernels on (auto)")):
        wall = statistics.median(r[0] for r in ratios[mode])
        cpu = statistics.median(r[1] for r in ratios[mode])
        print(f"{name}: ours/plain, {label}: {wall:.2f}x wall, {cpu:.2f}x thread CPU (median of {rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
