"""Per-channel exact selection, ns per element: ``python -m benchmarks.selection_bench
[--models a,b] [--repeats 5] [--no-synthetic] [--no-first-call]``.

The tensors are the real ones: one calibration batch of each benchmark model is run with a
spy on the host summary (``accumulator.summarize``), keeping the first tensor of every
distinct (shape, channel axis) that asks for a percentile (the outlier detector's 97.5th),
post-ReLU zeros and all. Optionally two synthetic 8M-element tensors (channel-first and
channel-last) show where the kernel's one read starts to beat a transposed copy.

Per tensor, with 1 torch thread, the best of ``--repeats`` after a warm-up, in ns per element
of the tensor, each computing per channel min, max and the exact k-th smallest
(``interpolation="lower"``):

- **numpy path**: the engine's default host path (one transposed copy, NumPy's introselect or
  sort: SIMD-accelerated in NumPy 2.x);
- **kthvalue**, **topk**: torch on the transposed rows (+ ``amin``/``amax``);
- **top-m kernel**: the optional numba kernel for channel-last rows when only the top ``m = n - k``
  values are wanted (``kernel.top_stats``; "auto" uses it up to ``kernel.TOP_MAX_M``): merged row by
  row into per-channel top lists, vectorised across channels, no copy, no sort (``--top-grid`` adds
  synthetic tensors around that limit);
- **kernel**: the optional numba kernel (:mod:`tui_quantreport.engine.stats.kernel`) in one read
  of the tensor where it lies: partial selection with a sampled threshold (as shipped),
  without the sample (threshold from compactions only), and a full one-pass introselect.

Every contender's answer is checked bit for bit against ``torch.kthvalue`` (the table says so).
The first-call cost of the kernel (import numba, compile or load from the cache) is measured in
fresh processes: once with an empty ``NUMBA_CACHE_DIR`` (compile) and once again (cached).
A benchmark is not a test: nothing asserts on a time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.machine import cpu_model

MODELS = (
    "convnet_per_tensor",
    "drifting_mlp",
    "tiny_transformer",
    "untraceable",
    "hf_llama_decoder",
    "resnet_style",
    "large_activation",
)
Q = 0.975


def capture(keys: tuple[str, ...]) -> list[tuple[str, torch.Tensor, int]]:
    """(model, tensor, axis) for each distinct (shape, axis) reduced with a percentile on the host."""
    from benchmarks.models import all_cases
    from benchmarks.run import REFERENCE_DETECTORS
    from tui_quantreport.engine import Session, Settings
    from tui_quantreport.engine import observer as observer_module
    from tui_quantreport.engine.stats import accumulator

    found: dict[tuple, tuple[str, torch.Tensor, int]] = {}
    original = accumulator.summarize
    current = [""]

    def spy(x: torch.Tensor, axis: int, percentiles: tuple[float, ...], known: Any = None) -> Any:
        key = (current[0], tuple(x.shape), axis)
        if percentiles and key not in found:
            found[key] = (current[0], x.detach().clone(), axis)
        return original(x, axis, percentiles, known)

    observer_module.summarize = spy  # type: ignore[assignment]
    try:
        for key in keys:
            current[0] = key
            model, _ = all_cases()[key].build()
            Session(model.eval()).calibrate(all_cases()[key].batches(1), Settings.build(REFERENCE_DETECTORS))
    finally:
        observer_module.summarize = original
    return list(found.values())


def synthetic() -> list[tuple[str, torch.Tensor, int]]:
    gen = torch.Generator().manual_seed(0)
    return [
        ("synthetic 8M channel-first", torch.randn(128, 16, 64, 64, generator=gen), 1),
        ("synthetic 8M channel-last, post-ReLU", torch.relu(torch.randn(64, 256, 512, generator=gen)), 2),
    ]


#: The top-m kernel is measured on channel-last tensors up to this m = n - k (past its "auto" limit,
#: ``kernel.TOP_MAX_M``, to show where it stops paying).
TOP_BENCH_M = 128


def top_grid() -> list[tuple[str, torch.Tensor, int]]:
    """Channel-last (N, C) tensors around the top-m kernel's limit: m = n - k from 8 to 52."""
    gen = torch.Generator().manual_seed(1)
    return [
        (f"synthetic (N, C), m = {n - int(np.float32(Q) * np.float32(n - 1))}", torch.randn(n, c, generator=gen), 1)
        for n in (256, 512, 1024, 1536, 2048)
        for c in (64, 1024)
    ]


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def contenders(x3: torch.Tensor, k: int) -> dict[str, Callable[[], np.ndarray]]:
    from tui_quantreport.engine.stats import accumulator, kernel

    c = x3.shape[1]

    def rows() -> torch.Tensor:
        return x3.transpose(0, 1).reshape(c, -1)

    def numpy_path() -> np.ndarray:
        os.environ[kernel.ENV] = "torch"
        return accumulator._summarize_on_host(x3, (Q,), None).percentiles[Q]

    def kthvalue() -> np.ndarray:
        r = rows()
        r.amin(dim=1), r.amax(dim=1)
        return r.kthvalue(k + 1, dim=1).values.numpy()

    def topk() -> np.ndarray:
        r = rows()
        r.amin(dim=1), r.amax(dim=1)
        return r.topk(r.shape[1] - k, dim=1).values[:, -1].numpy()

    found: dict[str, Callable[[], np.ndarray]] = {"numpy path": numpy_path, "kthvalue": kthvalue, "topk": topk}
    if kernel.available():
        x = x3.numpy()
        found["kernel (sample)"] = lambda: kernel.channel_stats(x, [k])[2][0]
        found["kernel (no sample)"] = lambda: kernel.channel_stats(x, [k], sample=0)[2][0]
        found["kernel (full)"] = lambda: kernel.channel_stats(x, [k], full=True)[2][0]
        positions = x3.transpose(1, 2)
        n = x3.shape[0] * x3.shape[2]
        if positions.is_contiguous() and n - k <= TOP_BENCH_M:  # measured past the kernel's TOP_MAX_M
            bits = positions.reshape(1, n, c).numpy().view(np.int32)
            found["top-m kernel"] = lambda: kernel.top_stats(bits, n, [k])[2][k]
    return found


FIRST_CALL = """
import time, numpy as np
from tui_quantreport.engine.stats import kernel  # imports torch: not counted
start = time.perf_counter()
x = np.random.default_rng(0).standard_normal((64, 8, 512)).astype(np.float32)
kernel.channel_stats(x, [31000])
kernel.channel_stats(np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(32768, 8, 1)[:, :, :1], [31000])
kernel.top_stats(x[:1, :, :].reshape(1, 8, 512).transpose(0, 2, 1).copy().view(np.int32), 512, [500])
print(time.perf_counter() - start)
"""


def first_call() -> tuple[float, float] | None:
    """Seconds for a fresh process's first kernel calls (both layouts, and the top-m kernel):
    compiling, then cached."""
    from tui_quantreport.engine.stats import kernel

    if not kernel.available():
        return None
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", FIRST_CALL], env=env, check=True, capture_output=True, text=True
                ).stdout
            )
            for _ in range(2)
        ]
    return runs[0], runs[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--no-first-call", action="store_true")
    parser.add_argument("--top-grid", action="store_true", help="add channel-last tensors around the top-m limit")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from tui_quantreport.engine.stats import kernel
    from tui_quantreport.engine.stats.accumulator import as_channels
    from tui_quantreport.engine.stats.selection import lower_quantile_index

    saved = os.environ.get(kernel.ENV)
    tensors = capture(tuple(m for m in args.models.split(",") if m))
    if not args.no_synthetic:
        tensors += synthetic()
    if args.top_grid:
        tensors += top_grid()
    print(
        f"CPU: {cpu_model()}; threads: 1; torch {torch.__version__}; numpy {np.__version__}; kernel: "
        + ("numba " + __import__("numba").__version__ if kernel.available() else str(kernel.unavailable_reason()))
    )
    header: list[str] | None = None
    for model, x, axis in tensors:
        x3 = as_channels(x, axis)
        a, c, b = x3.shape
        n = a * b
        k = lower_quantile_index(Q, n)
        expected = x3.transpose(0, 1).reshape(c, n).kthvalue(k + 1, dim=1).values.numpy().view(np.int32)
        found = contenders(x3, k)
        if header is None:
            header = list(found)
            if kernel.available() and "top-m kernel" not in header:
                header.append("top-m kernel")
            print("\n| tensor | shape, axis | values per channel | zeros | " + " | ".join(header) + " |")
            print("|---|---|---:|---:|" + "---:|" * len(header))
        repeats = args.repeats if x.numel() < 1 << 22 else max(1, args.repeats // 2)
        cells = []
        for name in header:
            fn = found.get(name)
            if fn is None:
                cells.append("-")
                continue
            exact = np.array_equal(np.asarray(fn(), np.float32).view(np.int32), expected)
            ns = best_seconds(fn, repeats) / x.numel() * 1e9
            cells.append(f"{ns:.2f}" + ("" if exact else " (not exact)"))
        zeros = float((x == 0).float().mean())
        layout = "channel-last" if b == 1 else "channel-first"
        print(f"| {model} | {tuple(x.shape)}, {axis} ({layout}) | {n:,} | {zeros:.0%} | " + " | ".join(cells) + " |")
    if saved is None:
        os.environ.pop(kernel.ENV, None)
    else:
        os.environ[kernel.ENV] = saved
    if not args.no_first_call:
        first = first_call()
        if first is not None:
            print(
                f"\nkernels' first calls in a fresh process (import numba, both layouts, top-m): {first[0]:.2f} s with an empty "
                f"cache (compiling), {first[1]:.2f} s with it cached (cache=True)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
