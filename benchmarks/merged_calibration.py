"""Calibration with merged batches against one batch at a time, beside the plain forward.

For each model (the main benchmark's cases and batches, ``benchmarks/models.py``): the plain
forward over the batches, our calibration one batch at a time (``TUI_QUANTREPORT_MERGE_BATCHES=0``)
and merged (the default), alternated round by round on one session each (the repeat calibrations
the main table times), 1 thread; medians. Checks that both calibrations give the same stats (every
tensor bit for bit) and writes its section of ``benchmarks/results.md``. No reference model report
(``benchmarks.run`` times that); under two minutes for the default models.

    .venv/bin/python -m benchmarks.merged_calibration [--models a,b] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.models import all_cases
from benchmarks.results_file import replace_section, section_end
from benchmarks.timing import call_batch, median, timed

RESULTS = Path(__file__).resolve().parent / "results.md"
SECTION = "merged calibration: cpu"
DEFAULT = ("large_generated", "convnet_per_tensor", "drifting_mlp", "tiny_transformer")


def _same(a, b) -> bool:
    if a.batches != b.batches or a.points.keys() != b.points.keys() or a.layouts != b.layouts:
        return False
    for key, point in a.points.items():
        tensors, meta = point.state()
        other, other_meta = b.points[key].state()
        if meta != other_meta or tensors.keys() != other.keys():
            return False
        for name, t in tensors.items():
            u = other[name]
            if t.dtype != u.dtype or t.shape != u.shape:
                return False
            if t.is_floating_point():
                width = {8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()]
                if not torch.equal(t.contiguous().view(width), u.contiguous().view(width)):
                    return False
            elif not torch.equal(t, u):
                return False
    return True


Row = tuple[str, int, str, float, float, float, int, bool, float, float]


def bench(key: str, repeats: int) -> Row:
    """(model, batches, batch shape, plain / one at a time / merged ms per batch, batches folded,
    same stats, one at a time / plain, merged / plain): the ratios are medians of each round's
    calibration against the plain forwards just before and after it (a passing load moves both)."""
    from tui_quantreport.engine import Session, Settings
    from tui_quantreport.engine import merged_batches as mb

    case = all_cases()[key]
    model, _ = case.build()
    model = model.eval()
    batches = case.batches(None)
    settings = Settings.build()
    device = torch.device("cpu")
    sessions = {"0": Session(model), "1": Session(model)}

    def plain() -> None:
        with torch.no_grad():
            for batch in batches:
                call_batch(model, batch)

    def ours(mode: str):
        os.environ[mb.ENV] = mode
        return sessions[mode].calibrate(batches, settings)

    plain()
    first = {mode: ours(mode) for mode in sessions}  # warm-up: each session's first calibration
    same = _same(first["0"], first["1"])
    times: dict[str, list[float]] = {"plain": [], "0": [], "1": []}
    ratios: dict[str, list[float]] = {"0": [], "1": []}
    for _ in range(repeats):
        before = timed(plain, device)[0]
        times["plain"].append(before)
        for mode in sessions:
            seconds, stats = timed(lambda mode=mode: ours(mode), device)
            times[mode].append(seconds)
            after = timed(plain, device)[0]
            ratios[mode].append(seconds / ((before + after) / 2))
            before = after
    os.environ.pop(mb.ENV, None)
    n = len(batches)
    p, one, merged = (median(times[k]) / n * 1e3 for k in ("plain", "0", "1"))
    shape = "x".join(str(s) for s in batches[0].shape) if isinstance(batches[0], torch.Tensor) else "-"
    folded = sessions["1"].merged_batches
    return key, n, shape, p, one, merged, folded, same, median(ratios["0"]), median(ratios["1"])


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


def run(argv: list[str] | None = None) -> list[Row]:
    """The benchmark (printed, and its section written unless ``--no-write``); its rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.merged_calibration")
    parser.add_argument("--models", default=",".join(DEFAULT))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    lines = [
        "| model | batches | batch shape | plain ms/batch | one at a time ms/batch | ratio | merged ms/batch | ratio "
        "| batches folded from merged forwards | same stats |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = []
    for key in [m.strip() for m in args.models.split(",") if m.strip()]:
        rows.append(bench(key, args.repeats))
        key, n, shape, p, one, merged, folded, same, r_one, r_merged = rows[-1]
        lines.append(
            f"| {key} | {n} | {shape} | {p:.2f} | {one:.2f} | {r_one:.2f}x | {merged:.2f} | {r_merged:.2f}x "
            f"| {folded} of {n} | {'yes' if same else 'NO'} |"
        )
        print(lines[-1], flush=True)
    took = time.perf_counter() - start
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = ".venv/bin/python -m benchmarks.merged_calibration" + (
        f" --models {args.models}" if args.models != ",".join(DEFAULT) else ""
    )
    text = "\n".join(
        [
            f"<!-- section: {SECTION} -->",
            "## Calibration: merged batches vs one batch at a time (CPU)",
            "",
            f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread; "
            f"shared with other work (load moves absolute times; compare the ratios). Date: {date}. "
            f"Medians of {args.repeats} alternated rounds after a warm-up; ratio: the median over the rounds of "
            "ours / the plain forwards run just before and after it. Merging: up to 8 batches run as one forward "
            "and are folded in batch by batch (`engine/merged_batches.py`); the first batch alone in a session's "
            "first calibration (its tensors size the groups, it checks the rule), merged too in the repeats "
            "(timed here, as in the main table) when the layouts and the check are kept; 'same stats': every "
            "tensor of the two calibrations' stats "
            "bit for bit. Where no batch was folded from a merged forward, both columns run the same code: "
            "their difference is this run's noise.",
            "",
            *lines,
            "",
            *section_end(SECTION, command, took),
            "",
        ]
    )
    print(text)
    if not args.no_write:
        replace_section(RESULTS, SECTION, text)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
