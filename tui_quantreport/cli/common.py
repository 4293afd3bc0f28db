"""What the commands share at run time: the files they read, stdout kept for the report, progress."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # engine types only: importing them at run time loads torch
    from tui_quantreport.engine.pipeline import StatsFile
    from tui_quantreport.engine.settings import Settings


def input_files(*given: str | None) -> list[str]:
    """The files this command reads (model and calibration sources, plan, stats files): never written over."""
    from tui_quantreport.engine import source_path
    from tui_quantreport.engine.stats_path import is_stats_path

    files = []
    for item in given:
        if not item:
            continue
        path = item if is_stats_path(item) or item.endswith(".json") else source_path(item)
        if path:
            files.append(path)
        if os.path.isfile(os.path.expanduser(item)):
            files.append(item)
    return files


def check_output(output: str, what: str = "", inputs: Sequence[str] = ()) -> None:
    """Refuse an output that cannot be written before the (slow) model load and export or
    calibration; ``what`` names it ("stats file"); ``inputs`` are files the command reads."""
    from tui_quantreport.engine import check_writable

    check_writable(output, what or "output", inputs)


@contextlib.contextmanager
def model_output_to_stderr() -> Iterator[None]:
    """While the user's code runs, what it prints goes to stderr: ``print`` (sys.stdout) and,
    when stdout is a real file descriptor, writes to fd 1 from C code or ``os.write``."""
    sys.stdout.flush()
    saved = None
    try:
        if sys.stdout.fileno() == 1 and sys.stderr.fileno() != 1:
            saved = os.dup(1)
            os.dup2(sys.stderr.fileno(), 1)
    except (AttributeError, OSError, ValueError):  # no real fd (captured, replaced): sys.stdout only
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            sys.stderr.flush()
            os.dup2(saved, 1)
            os.close(saved)


class Progress:
    """Calibration progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise."""

    WIDTH = 30
    #: Seconds between plain progress lines (and between redraws of the bar).
    LINE_EVERY = 2.0
    DRAW_EVERY = 0.1

    def __init__(self, label: str, stream=None, unit: str = "batches"):
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = label
        self.started = time.monotonic()
        self.last = -1e9
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self.last < (self.DRAW_EVERY if self.tty else self.LINE_EVERY):
            return
        self.last = now
        count = f"{done:,}/{total:,} {self.unit}" if total is not None else f"{done:,} {self.unit}"
        elapsed = f"{now - self.started:.1f} s"
        if self.tty:
            bar = ""
            if total:
                filled = round(self.WIDTH * done / total)
                bar = "[" + "#" * filled + "." * (self.WIDTH - filled) + "] "
            self.stream.write(f"\r{self.label} {bar}{count}  {elapsed}\x1b[K")
            self.drawn = True
        else:
            self.stream.write(f"{self.label}: {count} ({elapsed})\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def open_stats(path: str, args: argparse.Namespace) -> StatsFile:
    """A stats file named as MODEL; options that need the model are refused."""
    from tui_quantreport.engine.pipeline import load_stats_file
    from tui_quantreport.engine.stats_path import StatsFileError

    for option, value in (("--calibration", args.calibration), ("--batches", args.batches), ("--stats", args.stats)):
        if value:
            raise StatsFileError(f"{option} needs the model, and {path} is a stats file (it holds no model)")
    return load_stats_file(path)


def stats_settings(sf: StatsFile, args: argparse.Namespace, source: str) -> Settings:
    """The stats file's settings with the command line's options over them; refused when they need new data."""
    from tui_quantreport.engine.pipeline import stats_file_settings

    settings: Settings = stats_file_settings(
        sf,
        source,
        detectors=args.detectors,
        params=args.param,
        tolerance=args.tolerance,
        backend=args.backend,
        ch_axis=args.ch_axis,
    )
    return settings
