"""How much of our calibration a second "stats thread" could hide, at most:
``python -m benchmarks.summary_share [--models a,b] [--repeats 3]``.

Per model (1 torch thread, a session's repeat calibration, medians of ``--repeats``): the plain
forward, ours, and the time spent in the immediate summaries of big tensors (the host
``summarize`` calls the calibration makes while the forward waits), in units of the plain
forward. A background thread reducing those tensors while the forward continues could at best
remove that share, and only with a second core free for it. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

DEFAULT = "convnet_per_tensor,drifting_mlp,tiny_transformer,untraceable,resnet_style,hf_llama_decoder"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from benchmarks.models import all_cases
    from benchmarks.run import REFERENCE_DETECTORS, plain_pass
    from tui_quantreport.engine import Session, Settings
    from tui_quantreport.engine import observer as observer_module
    from tui_quantreport.engine.stats import accumulator

    original = accumulator.summarize
    spent = [0.0]

    def timed_summarize(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            spent[0] += time.perf_counter() - start

    observer_module.summarize = timed_summarize  # type: ignore[assignment]
    print("| model | plain ms/batch | ours / plain | immediate summaries / plain | ours minus them / plain |")
    print("|---|---:|---:|---:|---:|")
    try:
        for key in args.models.split(","):
            case = all_cases()[key]
            model, _ = case.build()
            model.eval()
            batches = case.batches(None)
            session, settings = Session(model), Settings.build(REFERENCE_DETECTORS)
            session.calibrate(batches, settings)
            plain_pass(model, batches)
            plain, ours, summaries = [], [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                plain_pass(model, batches)
                plain.append(time.perf_counter() - start)
                spent[0] = 0.0
                start = time.perf_counter()
                session.calibrate(batches, settings)
                ours.append(time.perf_counter() - start)
                summaries.append(spent[0])
            p, o, s = (sorted(v)[len(v) // 2] for v in (plain, ours, summaries))
            print(f"| {key} | {p * 1e3 / len(batches):.1f} | {o / p:.2f}x | {s / p:.2f}x | {(o - s) / p:.2f}x |")
    finally:
        observer_module.summarize = original
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
