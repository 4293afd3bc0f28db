"""Stats files and distributed calibration: ``python -m benchmarks.statsfile [--repeats 5] [--no-write]``.

- **save / open** the 2,000-module sample's stats file (``large_generated``,
  calibrated on 2 batches: a stats file is O(channels), its size does not grow
  with batches): ``statsfile.save`` (encode, checksum, atomic write) and
  ``statsfile.load`` (read, checksum, decode, catalog and settings rebuilt),
  medians of ``--repeats`` after a warm-up;
- **1 rank vs 2 ranks**: ``tui-quantreport calibrate SAMPLE`` in one process and
  under ``torchrun --standalone --nproc-per-node 2`` (gloo), both with
  ``OMP_NUM_THREADS=1``, over the same batches. Two times per run: the command's
  wall time (process start, ``import torch`` and building the model included), and
  the calibration time the command reports (rank 0, from its first batch until the
  ranks' statistics are combined, so it waits for the slowest rank).

Writes its section of ``benchmarks/results.md`` (``<!-- section: statsfile -->``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_file import replace_section, section_end

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"
SECTION = "statsfile"
CALIBRATED = re.compile(r"calibrated ([\d,]+) batches(?: on (\d+) ranks)? in ([\d.]+) s")


def save_and_open(repeats: int) -> dict:
    import torch

    from tui_quantreport.engine import (
        Session,
        Settings,
        load_model,
        open_batches,
        statsfile,
    )

    torch.set_num_threads(1)
    loaded = load_model("large_generated")
    session = Session(loaded.model, label=loaded.spec)
    settings = Settings.build()
    stats = session.calibrate(list(open_batches(loaded))[:2], settings)
    sf = statsfile.make(loaded.spec, session.catalog, stats, settings)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.qstats"
        saves, opens = [], []
        for i in range(repeats + 1):
            t = time.perf_counter()
            statsfile.save(path, sf)
            saved = time.perf_counter() - t
            t = time.perf_counter()
            back = statsfile.load(path)
            opened = time.perf_counter() - t
            if i:  # the first round is the warm-up
                saves.append(saved)
                opens.append(opened)
        size = path.stat().st_size
    return {
        "modules": len(back.catalog.modules),
        "points": len(back.stats.points),
        "bytes": size,
        "save": statistics.median(saves),
        "open": statistics.median(opens),
        "repeats": repeats,
    }


def calibrate_run(sample: str, ranks: int) -> tuple[float, float, int]:
    """(wall s, calibration s as reported, batches) of one calibrate command."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "run.qstats")
        if ranks == 1:
            argv = [sys.executable, "-m", "tui_quantreport", "calibrate", sample, "--output", out]
        else:
            argv = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                str(ranks),
                "-m",
                "tui_quantreport",
                "calibrate",
                sample,
                "--output",
                out,
            ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
        wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    found = CALIBRATED.search(done.stderr)
    assert found, done.stderr
    return wall, float(found.group(3)), int(found.group(1).replace(",", ""))


def ranks_table(samples: list[str], repeats: int) -> list[tuple]:
    rows = []
    for sample in samples:
        runs: dict[int, list[tuple[float, float, int]]] = {1: [], 2: []}
        calibrate_run(sample, 1)  # warm-up (page cache, compiled bytecode)
        for _ in range(repeats):
            for ranks in (1, 2):  # interleaved, so load changes hit both alike
                runs[ranks].append(calibrate_run(sample, ranks))
        med = {
            r: (statistics.median(w for w, _, _ in v), statistics.median(c for _, c, _ in v), v[0][2])
            for r, v in runs.items()
        }
        rows.append((sample, med[1][2], med[1][0], med[2][0], med[1][1], med[2][1]))
    return rows


def render(io: dict, rows: list[tuple], repeats: int, seconds: float) -> str:
    import platform

    import torch

    lines = [
        f"<!-- section: {SECTION} -->",
        "## Stats files and distributed calibration (CPU)",
        "",
        (
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
            f"torch {torch.__version__}; python {platform.python_version()}. "
            f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
        ),
        "",
        (
            f"- save the 2,000-module sample's stats (large_generated: {io['modules']:,} modules, "
            f"{io['points']:,} points, {io['bytes']:,} bytes): median **{io['save'] * 1000:.1f} ms** (target <= 500 ms)"
        ),
        (
            f"- open it (read, SHA-256 check, decode, catalog and settings rebuilt): median "
            f"**{io['open'] * 1000:.1f} ms** (target <= 500 ms); medians of {io['repeats']} after a warm-up"
        ),
        "",
        (
            "1 process vs `torchrun --standalone --nproc-per-node 2` (gloo), `OMP_NUM_THREADS=1`, same batches, "
            f"medians of {repeats} interleaved runs:"
        ),
        "",
        "| sample | batches | wall 1 rank s | wall 2 ranks s | calibration 1 rank s | calibration 2 ranks s | 2 ranks / 1 rank (calibration) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for sample, batches, w1, w2, c1, c2 in rows:
        lines.append(f"| {sample} | {batches} | {w1:.2f} | {w2:.2f} | {c1:.2f} | {c2:.2f} | {c2 / c1:.2f}x |")
    lines += [
        "",
        (
            "Wall: the whole command (start-up, `import torch`, building the model, torchrun's agent for 2 ranks). "
            "Calibration: what the command reports, from the first batch until the statistics are combined "
            "(rank 0; the combine waits for every rank)."
        ),
        "",
        *section_end(SECTION, ".venv/bin/python -m benchmarks.statsfile", seconds),
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    replace_section(RESULTS, SECTION, text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.statsfile")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", default="showcase,drifting_mlp")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    io = save_and_open(max(args.repeats, 5))
    rows = ranks_table(args.samples.split(","), args.repeats)
    text = render(io, rows, args.repeats, time.perf_counter() - started)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
