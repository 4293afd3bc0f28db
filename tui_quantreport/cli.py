"""Command line: open the app, run a headless report, or list the samples.

    tui-quantreport [MODEL] [options]            the app (no MODEL: the default sample)
    tui-quantreport run.qstats [options]         the app on a stats file, without the model
    tui-quantreport report MODEL [options]       headless report (json, markdown, text)
    tui-quantreport report run.qstats [options]  the same report from a stats file
    tui-quantreport calibrate MODEL --output run.qstats [options]   calibrate, save the statistics
    tui-quantreport merge a.qstats b.qstats --output c.qstats      one file for both files' batches
    tui-quantreport samples                      the bundled samples

``calibrate`` also runs under ``torchrun`` (one share of the batches per rank).

Bad input prints one line naming the cause and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

PROG = "tui-quantreport"
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose help lists the registered detectors.

    The list is read from the registry when help is printed, not when the
    parser is built: reading it imports torch, which the app must not wait for.
    """

    def format_help(self) -> str:
        from tui_quantreport.engine.detectors import short_names

        for action in self._actions:
            if action.dest == "detectors":
                action.help = f"comma-separated: {','.join(short_names())} (default: all)"
        return super().format_help()


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", metavar="SPEC", help="where calibration batches come from (same forms as MODEL)")
    parser.add_argument("--batches", metavar="N", type=_positive_int, help="calibrate on at most N batches")
    parser.add_argument("--backend", choices=("fbgemm", "x86", "qnnpack", "onednn"), help="quantized backend (default x86)")
    parser.add_argument(
        "--detectors", metavar="LIST",
        help="comma-separated detector names (default: all)",
    )
    parser.add_argument("--tolerance", metavar="FLOAT", help="dynamic-vs-static tolerance in [0, 1] (default 0.5)")
    parser.add_argument(
        "--param", metavar="DETECTOR.NAME=VALUE", action="append", default=[],
        help="set any detector parameter, e.g. outlier.ratio_threshold=5 (repeatable)",
    )
    parser.add_argument(
        "--ch-axis", metavar="[PATTERN=]AXIS", action="append",
        help="override the channel axis, for every module (-1) or for modules matching a pattern "
        "('model.layers.*.mlp.act_fn=-1'); repeatable or comma-separated "
        "(default: decided per tensor from its module, producer and consumer)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


MODEL_HELP = "sample name, file.py, file.py:factory or package.module:factory"
STATS_HELP = "reuse the statistics in this stats file (.qstats) when it was calibrated on MODEL"


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    app = _Parser(
        prog=PROG,
        description="Module-by-module quantization advice for a PyTorch model. "
        f"Also: '{PROG} report MODEL' (headless), '{PROG} calibrate MODEL --output run.qstats', "
        f"'{PROG} merge' and '{PROG} samples'.",
    )
    app.add_argument("model", nargs="?", metavar="MODEL", help=MODEL_HELP + ", or a stats file (.qstats)")
    _common_options(app)
    app.add_argument("--stats", metavar="FILE.qstats", help=STATS_HELP)

    report = _Parser(prog=f"{PROG} report", description="Calibrate MODEL (or read a stats file) and print or write its report.")
    report.add_argument("model", metavar="MODEL", help=MODEL_HELP + ", or a stats file (.qstats)")
    _common_options(report)
    report.add_argument("--stats", metavar="FILE.qstats", help=STATS_HELP)
    report.add_argument("--format", choices=("json", "markdown", "text"), default="text", help="output format (default text)")
    report.add_argument("--output", metavar="PATH", help="write here (atomically) instead of stdout")

    samples = argparse.ArgumentParser(prog=f"{PROG} samples", description="List the bundled sample models.")
    return app, report, samples


def build_stats_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    calibrate = _Parser(
        prog=f"{PROG} calibrate",
        description="Calibrate MODEL headless and save its statistics to a stats file, to report on or open "
        "in the app anywhere, without the model. Under torchrun each rank calibrates its share of the batches.",
    )
    calibrate.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    _common_options(calibrate)
    calibrate.add_argument("--output", metavar="FILE.qstats", required=True, help="the stats file to write (atomically)")
    calibrate.add_argument(
        "--dist-backend", choices=("gloo", "nccl"),
        help="torch.distributed backend under torchrun (default: nccl with CUDA, else gloo)",
    )
    merge = _Parser(
        prog=f"{PROG} merge",
        description="Merge stats files of the same model and settings: the result equals one calibration "
        "on all of their batches.",
    )
    merge.add_argument("inputs", nargs="+", metavar="FILE.qstats", help="stats files to merge (two or more)")
    merge.add_argument("--output", metavar="FILE.qstats", required=True, help="the merged stats file to write (atomically)")
    return calibrate, merge


def settings_from(args: argparse.Namespace):
    """Engine settings from the common options (raises ParamError on bad values)."""
    from tui_quantreport.engine import Settings

    return Settings.from_options(
        detectors=args.detectors, params=args.param, tolerance=args.tolerance,
        backend=args.backend, ch_axis=args.ch_axis,
    )


def run_report(args: argparse.Namespace) -> int:
    from tui_quantreport.engine import (
        Session, evaluate, load_model, open_batches, render, write_atomic,
    )
    from tui_quantreport.engine import statsfile

    if statsfile.is_stats_path(args.model):
        sf = _open_stats(args.model, args)
        report = evaluate(sf.catalog, sf.stats, stats_settings(sf, args, args.model), spec=sf.spec)
    else:
        settings = settings_from(args)
        loaded = load_model(args.model, args.calibration)
        session = Session(loaded.model, label=loaded.spec)
        if args.stats:
            sf = statsfile.load(args.stats)
            sf.check_model(session.catalog, args.stats)
            settings = stats_settings(sf, args, args.stats)
            stats = sf.stats
        else:
            stats = session.calibrate(open_batches(loaded), settings, max_batches=args.batches)
        report = evaluate(session.catalog, stats, settings, spec=loaded.spec)
    text = render(report, args.format)
    if args.output:
        path = write_atomic(args.output, text)
        print(f"wrote {args.format} report to {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _open_stats(path: str, args: argparse.Namespace):
    """A stats file named as MODEL; options that need the model are refused."""
    from tui_quantreport.engine import statsfile

    for option, value in (("--calibration", args.calibration), ("--batches", args.batches), ("--stats", args.stats)):
        if value:
            raise statsfile.StatsFileError(f"{option} needs the model, and {path} is a stats file (it holds no model)")
    return statsfile.load(path)


def stats_settings(sf, args: argparse.Namespace, source: str):
    """The stats file's settings with the command line's options over them; refused when they need new data."""
    from tui_quantreport.engine import statsfile

    return statsfile.settings_for(
        sf, source, detectors=args.detectors, params=args.param, tolerance=args.tolerance,
        backend=args.backend, ch_axis=args.ch_axis,
    )


class Progress:
    """Calibration progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise."""

    WIDTH = 30
    #: Seconds between plain progress lines (and between redraws of the bar).
    LINE_EVERY = 2.0
    DRAW_EVERY = 0.1

    def __init__(self, label: str, stream=None):
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
        count = f"{done:,}/{total:,} batches" if total is not None else f"{done:,} batches"
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


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate headless (one process, or one rank under torchrun) and write a stats file."""
    from tui_quantreport.engine import distributed

    world = distributed.from_environment()
    if world is None or (world.size == 1 and args.dist_backend is None):
        stats_file, seconds = _calibrate_here(args, None)
        return _write_stats(args, stats_file, seconds)
    world = distributed.start(world, args.dist_backend)
    try:
        return _calibrate_distributed(args, world)
    finally:
        distributed.stop()


def _calibrate_here(args: argparse.Namespace, world):
    """Load, calibrate this process's batches; (StatsFile, seconds)."""
    from tui_quantreport.engine import Session, load_model, open_batches, statsfile
    from tui_quantreport.engine import distributed

    main_rank = world is None or world.is_main
    if main_rank:
        _check_output(args.output)  # before calibrating, not after
    settings = settings_from(args)
    loaded = load_model(args.model, args.calibration)
    session = Session(loaded.model, label=loaded.spec)
    label = "calibrating" if world is None else f"calibrating (rank 0 of {world.size})"
    progress = Progress(label) if main_rank else None
    started = time.perf_counter()
    try:
        if world is None:
            stats = session.calibrate(open_batches(loaded), settings, max_batches=args.batches, progress=progress)
        else:
            stats = session.calibrate(distributed.open_shard(loaded, world, args.batches), settings, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - started
    extra = {} if world is None else {"world_size": world.size, "backend": world.backend}
    return statsfile.make(loaded.spec, session.catalog, stats, settings, **extra), seconds


def _check_output(path: str) -> None:
    from pathlib import Path

    from tui_quantreport.engine.errors import UserError

    target = Path(path).expanduser()
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UserError(f"cannot write stats file to {target}: it is a directory")
    if not directory.is_dir():
        raise UserError(f"cannot write stats file to {target}: directory {directory} does not exist")


def _calibrate_distributed(args: argparse.Namespace, world) -> int:
    from dataclasses import replace

    from tui_quantreport.engine import distributed
    from tui_quantreport.engine.errors import UserError

    error = None
    stats_file = None
    seconds = 0.0
    try:
        stats_file, seconds = _calibrate_here(args, world)
    except UserError as exc:
        error = str(exc)
    except Exception as exc:  # the user's model or data can raise anything: every rank must hear of it
        text = str(exc).strip().splitlines()
        error = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    try:
        distributed.settle(world, error)  # raises RankFailed on every rank if any rank failed
        merged = distributed.combine(world, stats_file.stats)
    except UserError as exc:
        if not world.is_main:
            return EXIT_USAGE  # rank 0 says it, once
        raise exc from None
    if not world.is_main:
        return 0
    return _write_stats(args, replace(stats_file, stats=merged), seconds)


def _write_stats(args: argparse.Namespace, stats_file, seconds: float) -> int:
    from tui_quantreport.engine import statsfile

    path = statsfile.save(args.output, stats_file)
    world = stats_file.provenance.get("world_size")
    ranks = f" on {world} ranks" if world else ""
    print(
        f"calibrated {stats_file.stats.batches:,} batches{ranks} in {seconds:.1f} s; wrote {path} "
        f"({stats_file.catalog.class_name}, fingerprint {stats_file.fingerprint})",
        file=sys.stderr,
    )
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from tui_quantreport.engine import statsfile

    if len(args.inputs) < 2:
        raise statsfile.StatsFileError("merge needs at least two stats files")
    files = [statsfile.load(path) for path in args.inputs]
    merged = statsfile.merge(files, args.inputs)
    path = statsfile.save(args.output, merged)
    print(f"merged {len(files)} files ({merged.stats.batches:,} batches) into {path}", file=sys.stderr)
    return 0


def run_samples() -> int:
    from tui_quantreport.engine import list_samples

    samples = list_samples()
    width = max(len(s.name) for s in samples)
    for i, sample in enumerate(samples):
        mark = " (default)" if i == 0 else ""
        print(f"{sample.name.ljust(width)}  {sample.description}{mark}")
    return 0


def run_app(args: argparse.Namespace) -> int:
    from tui_quantreport.engine.spec import check_spec, default_sample

    from tui_quantreport.engine.statsfile import StatsFileError, is_stats_path

    spec = args.model or default_sample()
    if is_stats_path(spec):
        # Checked before the UI starts: the file must exist; everything else is read by the loader.
        _open_stats_quickly(spec)
        for option, value in (("--calibration", args.calibration), ("--stats", args.stats)):
            if value:
                raise StatsFileError(f"{option} needs the model, and {spec} is a stats file (it holds no model)")
    else:
        check_spec(spec)
    if args.calibration:
        check_spec(args.calibration)
    if args.stats:
        _open_stats_quickly(args.stats)
    from tui_quantreport.tui.app import QuantReportApp

    app = QuantReportApp(spec=spec, options=args)
    app.run()
    return app.return_code or 0


def _open_stats_quickly(path: str) -> None:
    from pathlib import Path

    from tui_quantreport.engine.statsfile import StatsFileError

    target = Path(path).expanduser()
    if not target.is_file():
        raise StatsFileError(f"{path}: no such file" if not target.exists() else f"{path}: not a file")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    app_parser, report_parser, samples_parser = build_parsers()
    from tui_quantreport.engine.errors import UserError

    try:
        if argv and argv[0] == "report":
            return run_report(report_parser.parse_args(argv[1:]))
        if argv and argv[0] in ("calibrate", "merge"):
            calibrate_parser, merge_parser = build_stats_parsers()
            if argv[0] == "calibrate":
                return run_calibrate(calibrate_parser.parse_args(argv[1:]))
            return run_merge(merge_parser.parse_args(argv[1:]))
        if argv and argv[0] == "samples":
            samples_parser.parse_args(argv[1:])
            return run_samples()
        return run_app(app_parser.parse_args(argv))
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
