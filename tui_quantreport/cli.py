"""Command line: open the app, run a headless report, or list the samples.

    tui-quantreport [MODEL] [options]            the app (no MODEL: the default sample)
    tui-quantreport run.qstats [options]         the app on a stats file, without the model
    tui-quantreport report MODEL [options]       headless report (json, markdown, text)
    tui-quantreport report run.qstats [options]  the same report from a stats file
    tui-quantreport calibrate MODEL --output run.qstats [options]   calibrate, save the statistics
    tui-quantreport merge a.qstats b.qstats --output c.qstats      one file for both files' batches
    tui-quantreport samples                      the bundled samples
    tui-quantreport config MODEL [--plan P] --target T --output F   export the plan for torchao/pt2e/torch.ao
    tui-quantreport verify MODEL --plan P [--target T]              apply the export, measure its SQNR

``calibrate`` also runs under ``torchrun`` (one share of the batches per rank).

Bad input prints one line naming the cause and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence

PROG = "tui-quantreport"
EXIT_USAGE = 2
#: The most batches --batches accepts (any more is "all of them" on any real loader).
MAX_BATCHES = 2**63 - 1


class ArgumentError(Exception):
    """A command-line error, already worded as one line (see :class:`OneLineParser`)."""


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


class OneLineParser(_Parser):
    """argparse, but an error is one line with a hint to ``--help`` instead of the usage block."""

    def error(self, message: str):  # type: ignore[override]
        raise ArgumentError(f"{message} (see '{self.prog} --help')")


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calibration", metavar="SPEC", help="where calibration batches come from (same forms as MODEL)"
    )
    parser.add_argument("--batches", metavar="N", type=_positive_int, help="calibrate on at most N batches")
    parser.add_argument(
        "--backend", choices=("fbgemm", "x86", "qnnpack", "onednn"), help="quantized backend (default x86)"
    )
    parser.add_argument(
        "--detectors",
        metavar="LIST",
        help="comma-separated detector names (default: all)",
    )
    parser.add_argument("--tolerance", metavar="FLOAT", help="dynamic-vs-static tolerance in [0, 1] (default 0.5)")
    parser.add_argument(
        "--param",
        metavar="DETECTOR.NAME=VALUE",
        action="append",
        default=[],
        help="set any detector parameter, e.g. outlier.ratio_threshold=5 (repeatable)",
    )
    parser.add_argument(
        "--ch-axis",
        metavar="[PATTERN=]AXIS",
        action="append",
        help="override the channel axis, for every module (-1) or for modules matching a pattern "
        "('model.layers.*.mlp.act_fn=-1'); repeatable or comma-separated "
        "(default: decided per tensor from its module, producer and consumer)",
    )
    parser.add_argument(
        "--no-rerun",
        action="store_true",
        help="when the model rejects a batch, do not run that batch again to name the failing module "
        "(for models whose forward has side effects)",
    )


def _positive_int(text: str) -> int:
    digits = text.strip().lstrip("+").lstrip("0")
    if digits.isdigit() and (len(digits) > len(str(MAX_BATCHES)) or int(digits) > MAX_BATCHES):
        # int() itself refuses more than 4,300 digits; either way the number is simply too large.
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCHES}, not a {len(digits)}-digit number")
    try:
        value = int(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise argparse.ArgumentTypeError(f"must be a whole number, not {shown!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


MODEL_HELP = "sample name, file.py, file.py:factory or package.module:factory"
STATS_HELP = "reuse the statistics in this stats file (.qstats) when it was calibrated on MODEL"
TARGETS = ("torchao", "pt2e", "qconfig_mapping")


def _plan_source_options(parser: argparse.ArgumentParser) -> None:
    """--calibration and --backend: where a recommended plan (no --plan) comes from."""
    parser.add_argument(
        "--calibration", metavar="SPEC", help="where calibration batches come from (same forms as MODEL)"
    )
    parser.add_argument(
        "--backend",
        choices=("fbgemm", "x86", "qnnpack", "onednn"),
        help="backend of the recommended plan when there is no --plan (default x86)",
    )


def build_apply_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """`config` (export a plan for a library) and `verify` (apply that export and measure it)."""
    model_help = "sample name, file.py, file.py:factory or package.module:factory"
    config = OneLineParser(
        prog=f"{PROG} config",
        description="Write the plan as a configuration torchao, PT2E or torch.ao runs "
        "(without --plan: calibrate and use the recommended plan).",
    )
    config.add_argument("model", metavar="MODEL", help=model_help)
    config.add_argument("--plan", metavar="PLAN.json", help="the plan file (saved with `e` in the app)")
    config.add_argument("--target", choices=TARGETS, required=True, help="which library the file is for")
    config.add_argument(
        "--output",
        metavar="FILE",
        required=True,
        help="the .py file to write (torchao also writes FILE's .json and .safetensors beside it)",
    )
    _plan_source_options(config)
    verify = OneLineParser(
        prog=f"{PROG} verify",
        description="Apply the exported configuration with the real library to a copy of MODEL and "
        "compare its end-to-end SQNR on the probe batches with the predicted one.",
    )
    verify.add_argument("model", metavar="MODEL", help=model_help)
    verify.add_argument("--plan", metavar="PLAN.json", help="the plan file (default: the recommended plan)")
    verify.add_argument("--target", choices=TARGETS, default="torchao", help="which export to verify (default torchao)")
    verify.add_argument(
        "--probe-batches",
        metavar="K",
        type=_positive_int,
        help="measure on the first K calibration batches (default: the plan's, else 4)",
    )
    _plan_source_options(verify)
    verify.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    return config, verify


def run_config(args: argparse.Namespace) -> int:
    from tui_quantreport.engine.apply.api import export_plan, load_subject
    from tui_quantreport.engine.errors import UserError

    _check_output(args.output)
    subject = load_subject(args.model, args.plan, args.calibration, args.backend)
    export = export_plan(subject, args.target)
    if args.target == "torchao" and args.output.endswith((".json", ".safetensors")):
        raise UserError(f"--output {args.output}: give the .py file; its .json and .safetensors are written beside it")
    paths = export.write(args.output)
    print(f"wrote {args.target} configuration to {', '.join(str(p) for p in paths)}", file=sys.stderr)
    for change in export.changes:
        print(f"  changed: {change.line()}", file=sys.stderr)
    return 0


def _check_output(output: str, what: str = "") -> None:
    """Refuse an output that cannot be written before the (slow) model load and export or
    calibration; ``what`` names it in the message ("stats file to ")."""
    import os
    from pathlib import Path

    from tui_quantreport.engine.errors import UserError

    target = Path(output).expanduser()
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UserError(f"cannot write {what}{target}: it is a directory")
    if not directory.is_dir():
        raise UserError(f"cannot write {what}{target}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UserError(f"cannot write {what}{target}: permission denied")


def run_verify(args: argparse.Namespace) -> int:
    import json

    from tui_quantreport.engine.apply.api import load_subject, verify_plan

    subject = load_subject(args.model, args.plan, args.calibration, args.backend)
    result = verify_plan(subject, args.target, probe_batches=args.probe_batches)
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_json_data(), indent=2, allow_nan=False) + "\n")
    else:
        sys.stdout.write(result.to_text())
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of dB, 0 or more, not {text}")
    return value


def _min_gain_option(parser: argparse.ArgumentParser, default: float | None) -> None:
    """``--min-gain DB`` (the app's default None: the saved setting, else 1)."""
    parser.add_argument(
        "--min-gain",
        metavar="DB",
        type=_non_negative_float,
        default=default,
        help="findings whose advice gains less than this many dB are minor (default 1)",
    )


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    app = OneLineParser(
        prog=PROG,
        description="Module-by-module quantization advice for a PyTorch model. "
        f"Also: '{PROG} report MODEL' (headless), '{PROG} calibrate MODEL --output run.qstats', "
        f"'{PROG} merge' and '{PROG} samples'.",
    )
    app.add_argument("model", nargs="?", metavar="MODEL", help=MODEL_HELP + ", or a stats file (.qstats)")
    _common_options(app)
    app.add_argument("--stats", metavar="FILE.qstats", help=STATS_HELP)
    _min_gain_option(app, default=None)

    report = OneLineParser(
        prog=f"{PROG} report", description="Calibrate MODEL (or read a stats file) and print or write its report."
    )
    report.add_argument("model", metavar="MODEL", help=MODEL_HELP + ", or a stats file (.qstats)")
    _common_options(report)
    report.add_argument("--stats", metavar="FILE.qstats", help=STATS_HELP)
    report.add_argument(
        "--format", choices=("json", "markdown", "text"), default="text", help="output format (default text)"
    )
    report.add_argument(
        "--output", metavar="PATH", help="write here instead of stdout (a file atomically; - is stdout)"
    )
    report.add_argument(
        "--probe-batches",
        metavar="K",
        type=_count,
        default=4,
        help="measure quantization error (SQNR) on the first K calibration batches (default 4; 0: do not measure)",
    )
    report.add_argument(
        "--sensitivity",
        action="store_true",
        help="also measure one-at-a-time sensitivity (one pass over the probes per quantized module)",
    )
    _min_gain_option(report, default=1.0)
    report.add_argument(
        "--schemes",
        metavar="LIST",
        type=_schemes_option,
        default=None,
        help="schemes to measure: a comma list of names or families (int8, int4, fp8, mx, nvfp4, nf4) or all "
        "(default all; the int8 schemes the recommended plan chooses among are always measured)",
    )
    report.add_argument("--plan-out", metavar="FILE", help="write the recommended plan (JSON) here")

    samples = OneLineParser(prog=f"{PROG} samples", description="List the bundled sample models.")
    return app, report, samples


def build_stats_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    calibrate = OneLineParser(
        prog=f"{PROG} calibrate",
        description="Calibrate MODEL headless and save its statistics to a stats file, to report on or open "
        "in the app anywhere, without the model. Under torchrun each rank calibrates its share of the batches.",
    )
    calibrate.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    _common_options(calibrate)
    calibrate.add_argument(
        "--output", metavar="FILE.qstats", required=True, help="the stats file to write (atomically)"
    )
    calibrate.add_argument(
        "--dist-backend",
        choices=("gloo", "nccl"),
        help="torch.distributed backend under torchrun (default: nccl with CUDA, else gloo)",
    )
    merge = OneLineParser(
        prog=f"{PROG} merge",
        description="Merge stats files of the same model and settings: the result equals one calibration "
        "on all of their batches.",
    )
    merge.add_argument("inputs", nargs="+", metavar="FILE.qstats", help="stats files to merge (two or more)")
    merge.add_argument(
        "--output", metavar="FILE.qstats", required=True, help="the merged stats file to write (atomically)"
    )
    return calibrate, merge


def app_options(model: str, **overrides: object) -> argparse.Namespace:
    """The options ``tui-quantreport MODEL`` starts the app with (the parser's own defaults), with
    ``overrides`` set over them (tests and benchmarks: ``batches=8``, ``probe_batches=0``)."""
    options = build_parsers()[0].parse_args([model])
    for name, value in overrides.items():
        setattr(options, name, value)
    return options


def settings_from(args: argparse.Namespace):
    """Engine settings from the common options (raises ParamError on bad values)."""
    from tui_quantreport.engine import Settings

    return Settings.from_options(
        detectors=args.detectors,
        params=args.param,
        tolerance=args.tolerance,
        backend=args.backend,
        ch_axis=args.ch_axis,
    )


def run_report(args: argparse.Namespace) -> int:
    from tui_quantreport.engine import (
        Evaluator,
        Session,
        load_model,
        open_batches,
        render,
        statsfile,
        write_atomic,
    )
    from tui_quantreport.engine.errors import UserError

    if statsfile.is_stats_path(args.model):
        # No model: the report is judged from the file; measured error needs the model's forward.
        sf = _open_stats(args.model, args)
        for option, given in (("--sensitivity", args.sensitivity), ("--plan-out", args.plan_out)):
            if given:
                raise statsfile.StatsFileError(
                    f"{option} measures the model, and {args.model} is a stats file (it holds no model); "
                    f"use: {PROG} report {sf.spec} --stats {args.model} {option}"
                )
        report = Evaluator(sf.catalog).evaluate(sf.stats, stats_settings(sf, args, args.model), spec=sf.spec)
        if sf.measured is not None:  # measured before it was saved (in the app): severities from that
            from tui_quantreport.engine.severity import assess

            report = assess(report, sf.measured, args.min_gain)
        elif args.probe_batches:
            print(f"{PROG}: note: no measured SQNR: {args.model} holds statistics, not the model", file=sys.stderr)
    else:
        settings = settings_from(args)
        if args.plan_out and not args.probe_batches:
            raise UserError("--plan-out needs measurement: give --probe-batches 1 or more")
        with model_output_to_stderr():  # the model's prints must not mix with the report on stdout
            loaded = load_model(args.model, args.calibration)
            session = Session(loaded.model, label=loaded.spec)
            probes = None
            if args.stats:  # reuse the file's statistics; probe batches (if any) are read afresh
                sf = statsfile.load(args.stats)
                sf.check_model(session.catalog, args.stats)
                settings = stats_settings(sf, args, args.stats)
                stats = sf.stats
                if args.probe_batches:
                    from tui_quantreport.engine.quantsim.probes import take_probes

                    probes = take_probes(open_batches(loaded), args.probe_batches)
            else:
                batches = open_batches(loaded)
                recorder = None
                if args.probe_batches:
                    from tui_quantreport.engine.quantsim import ProbeRecorder

                    batches = recorder = ProbeRecorder(batches, args.probe_batches)
                stats = session.calibrate(
                    batches,
                    settings,
                    max_batches=args.batches,
                    rerun_failures=not args.no_rerun,
                )
                probes = recorder.probes if recorder is not None else None
            report = Evaluator(session.catalog).evaluate(stats, settings, spec=loaded.spec)
            if probes is not None:
                report = _measure(args, session, stats, settings, probes, report)
    text = render(report, args.format)
    if args.output and args.output != "-":
        path = write_atomic(args.output, text)
        print(f"wrote {args.format} report to {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


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


def _schemes_option(value: str) -> tuple[str, ...]:
    """``--schemes``: names read from the scheme registry (argparse turns a ValueError into one line)."""
    from tui_quantreport.engine.quantsim.schemes import select_schemes

    try:
        return select_schemes(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _measure(args, session, stats, settings, probes, report):
    """Attach measured error (local SQNR, the recommended plan, severities) to ``report``."""
    from tui_quantreport.engine.quantsim import Plan
    from tui_quantreport.engine.quantsim.availability import analysis_for, unavailable_note, unavailable_reason
    from tui_quantreport.engine.severity import assess, measure

    unsupported = unavailable_reason(session)
    if unsupported:
        print(f"tui-quantreport: note: {unavailable_note(unsupported)}", file=sys.stderr)
        return report
    backend = settings.params.get("per_channel_detector", {}).get("backend", "x86")
    analysis = analysis_for(session, probes, stats, backend)  # a graph: a copy with its Linear/Conv as modules
    if args.sensitivity:
        analysis.local_measurements()
        plan = analysis.recommended_plan(args.min_gain)
        print(f"sensitivity: {len(plan.quantized)} modules, {analysis.cost('sensitivity', plan)}", file=sys.stderr)
    if getattr(args, "schemes", None) is not None:
        analysis.measure_schemes(args.schemes)
    measured = measure(analysis, sensitivity=args.sensitivity, min_gain_db=args.min_gain)
    if args.plan_out:
        path = Plan.from_json_data(measured.plan_data).save(args.plan_out)
        print(f"wrote plan to {path}", file=sys.stderr)
    return assess(report, measured, args.min_gain)


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
        sf,
        source,
        detectors=args.detectors,
        params=args.param,
        tolerance=args.tolerance,
        backend=args.backend,
        ch_axis=args.ch_axis,
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
        stats_file, started = _calibrate_here(args, None)
        return _write_stats(args, stats_file, time.perf_counter() - started)
    world = distributed.start(world, args.dist_backend)
    try:
        return _calibrate_distributed(args, world)
    finally:
        distributed.stop()


def _calibrate_here(args: argparse.Namespace, world):
    """Load, calibrate this process's batches; (StatsFile, when its first batch started)."""
    from tui_quantreport.engine import (
        Session,
        distributed,
        load_model,
        open_batches,
        statsfile,
    )

    main_rank = world is None or world.is_main
    if main_rank:
        _check_stats_output(args.output)  # before calibrating, not after
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
    extra = {} if world is None else {"world_size": world.size, "backend": world.backend}
    return statsfile.make(loaded.spec, session.catalog, stats, settings, **extra), started


def _check_stats_output(path: str) -> None:
    _check_output(path, "stats file to ")


def _calibrate_distributed(args: argparse.Namespace, world) -> int:
    from dataclasses import replace

    from tui_quantreport.engine import distributed
    from tui_quantreport.engine.errors import UserError

    error = None
    stats_file = None
    started = time.perf_counter()
    try:
        stats_file, started = _calibrate_here(args, world)
    except UserError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - the user's model or data can raise anything: every rank must hear of it
        text = str(exc).strip().splitlines()
        error = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    try:
        distributed.settle(world, error)  # raises RankFailed on every rank if any rank failed
        assert stats_file is not None  # this rank succeeded, or settle raised
        merged = distributed.combine(world, stats_file.stats)
    except UserError as exc:
        if not world.is_main:
            return EXIT_USAGE  # rank 0 says it, once
        raise exc from None
    if not world.is_main:
        return 0
    # From rank 0's first batch until every rank's statistics are merged (it waits for the slowest).
    return _write_stats(args, replace(stats_file, stats=merged), time.perf_counter() - started)


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
    from tui_quantreport.engine.spec import BATCHES_FACTORY, check_spec, default_sample
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
        check_spec(args.calibration, BATCHES_FACTORY)  # a calibration file needs no build_model()
    if args.stats:
        _open_stats_quickly(args.stats)
    from tui_quantreport.engine.export import install_sigterm_cleanup
    from tui_quantreport.tui.app import QuantReportApp

    install_sigterm_cleanup()  # the app writes in worker threads: SIGTERM removes their temporary files
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
        if argv and argv[0] in ("config", "verify"):
            config_parser, verify_parser = build_apply_parsers()
            if argv[0] == "config":
                return run_config(config_parser.parse_args(argv[1:]))
            return run_verify(verify_parser.parse_args(argv[1:]))
        if argv and argv[0] == "samples":
            samples_parser.parse_args(argv[1:])
            return run_samples()
        return run_app(app_parser.parse_args(argv))
    except (UserError, ArgumentError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
