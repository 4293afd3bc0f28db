"""Command line: open the app, run a headless report, or list the samples.

    tui-quantreport [MODEL] [options]            the app (no MODEL: the default sample)
    tui-quantreport run.qstats [options]         the app on a stats file, without the model
    tui-quantreport report MODEL [options]       headless report (json, markdown, text)
    tui-quantreport report run.qstats [options]  the same report from a stats file
    tui-quantreport calibrate MODEL --output run.qstats [options]   calibrate, save the statistics
    tui-quantreport merge a.qstats b.qstats --output c.qstats      one file for both files' batches
    tui-quantreport samples                      the bundled samples
    tui-quantreport config MODEL [--plan P] [--target T] --output F export the plan for its deployment target
    tui-quantreport verify MODEL [--plan P] [--target T]            apply the export, measure its SQNR

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
from typing import Any

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
    _trust_pickle_option(parser)
    parser.add_argument(
        "--no-rerun",
        action="store_true",
        help="when the model rejects a batch, do not run that batch again to name the failing module "
        "(for models whose forward has side effects)",
    )


def _trust_pickle_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow opening a .pt2 model: torch.export.load unpickles it, so a crafted file can run code "
        "(only for files you trust; stats, plan and settings files are never unpickled)",
    )


def _trusting(args: argparse.Namespace) -> argparse.Namespace:
    """Record ``--trust-pickle`` for the loader, then hand the options on."""
    if getattr(args, "trust_pickle", False):
        from tui_quantreport.engine.graph_file import trust_pickle

        trust_pickle()
    return args


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
#: The files a target's library writes beside --output (checked before the model loads; the writer
#: checks again).
SIDECARS = {"torchao": (".json", ".safetensors")}


def _target_option(parser: argparse.ArgumentParser, help_text: str, required: bool = False) -> None:
    """``--target NAME``: a deployment target of the registry (engine/apply/targets), or an old name."""
    from tui_quantreport.engine.apply.targets import NAMES, TARGETS

    parser.add_argument(
        "--target",
        metavar="NAME",
        type=_target_name,
        required=required,
        help=f"{help_text}: {', '.join(TARGETS)} (old names {', '.join(n for n in NAMES if n not in TARGETS)} "
        "still work)",
    )


def _target_name(text: str) -> str:
    from tui_quantreport.engine.apply.targets import NAMES, TARGETS

    if text not in NAMES:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise argparse.ArgumentTypeError(f"unknown target {shown!r}; choose one of {', '.join(TARGETS)}")
    return text


def _plan_source_options(parser: argparse.ArgumentParser) -> None:
    """--calibration and --backend: where a recommended plan (no --plan) comes from."""
    parser.add_argument(
        "--calibration", metavar="SPEC", help="where calibration batches come from (same forms as MODEL)"
    )
    parser.add_argument(
        "--backend",
        choices=("fbgemm", "x86", "qnnpack", "onednn"),
        help="ignored for the plan: its target (--target) decides the activation grid; kept for old scripts",
    )
    _output_key_option(parser)


OUTPUT_KEY_HELP = (
    "the model output the end-to-end SQNR reads (a name such as logits, 0 or encoder_last_hidden_state; "
    "default: every floating-point output, combined energy-weighted)"
)


def _output_key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-key", metavar="NAME", help=OUTPUT_KEY_HELP)


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
    _target_option(config, "which target the file is for (default: the plan's, else torchao on the model's device)")
    config.add_argument(
        "--output",
        metavar="FILE",
        required=True,
        help="the .py file to write (torchao also writes FILE's .json and .safetensors beside it)",
    )
    config.add_argument(
        "--force",
        action="store_true",
        help="replace FILE's existing .json/.safetensors side-cars (refused by default: you named only FILE)",
    )
    _plan_source_options(config)
    _trust_pickle_option(config)
    verify = OneLineParser(
        prog=f"{PROG} verify",
        description="Apply the exported configuration with the real library to a copy of MODEL and "
        "compare its end-to-end SQNR on the probe batches with the predicted one.",
    )
    verify.add_argument("model", metavar="MODEL", help=model_help)
    verify.add_argument("--plan", metavar="PLAN.json", help="the plan file (default: the recommended plan)")
    _target_option(verify, "which target's export to verify (default: the plan's, else torchao on the model's device)")
    verify.add_argument(
        "--probe-batches",
        metavar="K",
        type=_positive_int,
        help="measure on the first K calibration batches (default: the plan's, else 4)",
    )
    _plan_source_options(verify)
    verify.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    _trust_pickle_option(verify)
    return config, verify


def run_config(args: argparse.Namespace) -> int:
    from tui_quantreport.engine.apply.api import export_plan, load_subject
    from tui_quantreport.engine.errors import UserError
    from tui_quantreport.engine.escape import printable

    named = None
    if args.target:
        from tui_quantreport.engine.apply.targets import resolve

        named = resolve(args.target)
    sidecars = SIDECARS.get(named.library, ()) if named is not None else ()
    if sidecars and args.output.endswith(sidecars):
        raise UserError(
            f"--output {printable(args.output)}: give the .py file; its .json and .safetensors are written beside it"
        )
    _check_output(args.output, inputs=_inputs(args.model, args.calibration, args.plan))
    if not args.force:  # before the slow load and export: the side-cars the user did not name
        from pathlib import Path

        from tui_quantreport.engine.apply.common import is_own_sidecar, sidecar_path

        for suffix in sidecars:
            sidecar = sidecar_path(Path(args.output).expanduser(), suffix)
            if os.path.lexists(sidecar) and not is_own_sidecar(sidecar):
                raise UserError(
                    f"cannot write the {named.name if named else ''} configuration: {printable(str(sidecar))} exists "
                    "and would be replaced; move it, choose another --output, or pass --force"
                )
    subject = load_subject(
        args.model, args.plan, args.calibration, args.backend, args.target, output_key=args.output_key
    )
    export = export_plan(subject)
    if export.sidecars and args.output.endswith(tuple(export.sidecars)):
        raise UserError(
            f"--output {printable(args.output)}: give the .py file; its .json and .safetensors are written beside it"
        )
    paths = export.write(args.output, force=args.force, inputs=_inputs(args.model, args.calibration, args.plan))
    print(f"wrote {export.target} configuration to {', '.join(printable(str(p)) for p in paths)}", file=sys.stderr)
    for change in export.changes:
        print(f"  changed: {printable(change.line())}", file=sys.stderr)
    return 0


def _inputs(*given: str | None) -> list[str]:
    """The files this command reads (model and calibration sources, plan, stats files): never written over."""
    from tui_quantreport.engine.spec import source_path
    from tui_quantreport.engine.statsfile import is_stats_path

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


def _check_output(output: str, what: str = "", inputs: Sequence[str] = ()) -> None:
    """Refuse an output that cannot be written before the (slow) model load and export or
    calibration; ``what`` names it ("stats file"); ``inputs`` are files the command reads."""
    from tui_quantreport.engine.export import check_writable

    check_writable(output, what or "output", inputs)


def run_verify(args: argparse.Namespace) -> int:
    import json

    from tui_quantreport.engine.apply.api import load_subject, verify_plan

    with model_output_to_stderr():  # the model's prints must not corrupt the JSON or text on stdout
        subject = load_subject(
            args.model, args.plan, args.calibration, args.backend, args.target, output_key=args.output_key
        )
        result = verify_plan(subject, probe_batches=args.probe_batches)
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


def _finite_float(what: str, positive: bool = False):
    """A float option: finite (and above 0 when ``positive``), else one line naming it."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            shown = text if len(text) <= 40 else text[:40] + "…"
            raise argparse.ArgumentTypeError(f"must be a number of {what}, not {shown!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number of {what}, not {text}")
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"must be a number of {what} above 0, not {text}")
        return value

    return parse


def _planner_options(parser: argparse.ArgumentParser) -> None:
    """The budgeted planner: a budget (one of three), the sensitivity cache, the frontier, the warning."""
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-bpw",
        metavar="BPW",
        type=_finite_float("bits per weight", positive=True),
        help="plan mixed precision for at most this average of deployed bits per weight (scales counted)",
    )
    budget.add_argument(
        "--budget-mb",
        metavar="MB",
        type=_finite_float("MB", positive=True),
        help="plan mixed precision for a model of at most this size (MB = 10^6 bytes, every parameter counted)",
    )
    budget.add_argument(
        "--min-sqnr",
        metavar="DB",
        type=_finite_float("dB"),
        help="plan the smallest mix whose end-to-end SQNR reaches this many dB",
    )
    parser.add_argument(
        "--sensitivity-cache-mb",
        metavar="MB",
        type=_finite_float("MiB"),
        default=1024.0,
        help="memory for the float activations the planner's sensitivity passes re-run from (default 1024; "
        "0: every pass from the input)",
    )
    parser.add_argument(
        "--frontier-points",
        metavar="N",
        type=_count,
        default=6,
        help="budgets on the planner's SQNR-vs-size frontier, beside the uniform plans (default 6)",
    )
    parser.add_argument(
        "--warn-below",
        metavar="DB",
        type=_finite_float("dB"),
        default=20.0,
        help="warn at the top of the report when the plan's end-to-end SQNR is below this (default 20)",
    )


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
        f"'{PROG} merge', '{PROG} config MODEL --plan P --target T' (the plan as a library's configuration), "
        f"'{PROG} verify MODEL --plan P' (apply it and measure) and '{PROG} samples'.",
    )
    app.add_argument("model", nargs="?", metavar="MODEL", help=MODEL_HELP + ", or a stats file (.qstats)")
    _common_options(app)
    _target_option(app, "the deployment target the plan is made for (default torchao on the model's device)")
    app.add_argument("--stats", metavar="FILE.qstats", help=STATS_HELP)
    app.add_argument(
        "--plan",
        metavar="FILE.plan.json",
        help="start from this plan (a plan file the app or report --plan-out wrote) instead of the "
        "recommended one, once the error is measured",
    )
    _min_gain_option(app, default=None)

    report = OneLineParser(
        prog=f"{PROG} report", description="Calibrate MODEL (or read a stats file) and print or write its report."
    )
    report.add_argument("model", metavar="MODEL", help=MODEL_HELP + ", or a stats file (.qstats)")
    _common_options(report)
    _target_option(
        report, "the deployment target the measured plan is made for (default torchao on the model's device)"
    )
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
    report.add_argument(
        "--plan-out", metavar="FILE", help="write the recommended plan (JSON) here (with a budget: the budgeted plan)"
    )
    _planner_options(report)
    _output_key_option(report)

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
        "--probe-batches",
        metavar="K",
        type=_count,
        default=0,
        help="also measure the quantization error (SQNR per module and scheme, the recommended plan) on "
        "the first K calibration batches and keep it in the stats file (default 0: do not measure)",
    )
    calibrate.add_argument(
        "--sensitivity",
        action="store_true",
        help="with --probe-batches: also measure one-at-a-time sensitivity (one pass per quantized module)",
    )
    _min_gain_option(calibrate, default=1.0)
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
    from tui_quantreport.engine.escape import printable

    if statsfile.is_stats_path(args.model):
        # No model: the report is judged from the file; measured error needs the model's forward.
        sf = _open_stats(args.model, args)
        for option, given in (
            ("--sensitivity", args.sensitivity),
            ("--plan-out", args.plan_out),
            (_budget_option(args), _budget(args) is not None),
        ):
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
        if _budget(args) is not None and not args.probe_batches:
            raise UserError(f"{_budget_option(args)} needs measurement: give --probe-batches 1 or more")
        if args.sensitivity_cache_mb < 0:
            raise UserError(f"--sensitivity-cache-mb must be 0 or more, not {args.sensitivity_cache_mb:g}")
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
                if recorder is not None and recorder.mutated:
                    from tui_quantreport.engine.quantsim.probes import MUTATION_NOTE

                    print(f"{PROG}: note: {MUTATION_NOTE}", file=sys.stderr)
            report = Evaluator(session.catalog).evaluate(stats, settings, spec=loaded.spec)
            if probes is not None:
                report = _measure(args, session, stats, settings, probes, report)
    text = render(report, args.format)
    if args.output and args.output != "-":
        path = write_atomic(args.output, text, inputs=_inputs(args.model, args.calibration, args.stats))
        print(f"wrote {args.format} report to {printable(str(path))}", file=sys.stderr)
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
    from tui_quantreport.engine.escape import printable
    from tui_quantreport.engine.quantsim import Plan, SimulationError
    from tui_quantreport.engine.quantsim.availability import analysis_for, unavailable_note, unavailable_reason
    from tui_quantreport.engine.severity import assess, measure

    unsupported = unavailable_reason(session)
    if unsupported:
        print(f"tui-quantreport: note: {unavailable_note(unsupported)}", file=sys.stderr)
        return report
    backend = settings.params.get("per_channel_detector", {}).get("backend", "x86")
    # a graph: a copy with its Linear/Conv as modules
    analysis = analysis_for(session, probes, stats, backend, args.target, output_key=args.output_key)
    rows = settings.params.get("under_calibrated_detector", {}).get("min_rows")
    if rows is not None:  # the same threshold as the under-calibrated finding
        analysis.min_rows = int(rows)
    if getattr(args, "schemes", None) is not None:
        analysis.measure_schemes(args.schemes)
    try:
        if args.sensitivity:
            analysis.local_measurements()
            plan = analysis.recommended_plan(args.min_gain)
            print(f"sensitivity: {len(plan.quantized)} modules, {analysis.cost('sensitivity', plan)}", file=sys.stderr)
        measured = measure(analysis, sensitivity=args.sensitivity, min_gain_db=args.min_gain)
    except SimulationError as exc:  # the calibration's report stands without the measured error
        if args.plan_out:
            raise
        print(f"{PROG}: note: no measured SQNR: {exc}", file=sys.stderr)
        return report
    budget = _budget(args)
    plan_data = measured.plan_data
    if budget is not None:
        from tui_quantreport.engine.quantsim.planner import Planner, planned_measured

        planner = Planner(analysis, cache_mb=args.sensitivity_cache_mb)
        units = planner.units()
        planner.check(units, budget)
        items = sum(len(u.candidates) - 1 for u in units)
        print(f"planner: {len(units)} decision units, {items} sensitivity items (a unit's schemes and probe batches "
              "in one pass, from the changed module on)", file=sys.stderr)  # fmt: skip
        bar = Progress("planner", unit="items")
        eta = planner.sens

        def progress(stage: str, done: int, total: int | None) -> None:
            left = f" (about {eta.eta:.0f} s left)" if stage == "sensitivity" and eta.eta is not None else ""
            bar.label = f"planner {stage}{left}"
            bar(done, total)

        try:
            result = planner.run(budget, frontier_points=args.frontier_points, progress=progress)
        finally:
            bar.close()
        measured = planned_measured(measured, result, args.warn_below)
        if result.chosen is not None:
            plan_data = result.chosen.plan.to_json_data()
    else:
        from tui_quantreport.engine.quantsim.planner import recommended_warning

        measured = recommended_warning(measured, args.warn_below)
    if args.plan_out:
        path = Plan.from_json_data(plan_data).save(
            args.plan_out, inputs=_inputs(args.model, args.calibration, args.stats)
        )
        print(f"wrote plan to {printable(str(path))}", file=sys.stderr)
    return assess(report, measured, args.min_gain)


def _budget(args: argparse.Namespace):
    """The planner's budget from --budget-bpw / --budget-mb / --min-sqnr (None: no budget)."""
    from tui_quantreport.engine.quantsim.planner import Budget

    for kind, value in (("bpw", args.budget_bpw), ("mb", args.budget_mb), ("sqnr", args.min_sqnr)):
        if value is not None:
            return Budget(kind, value)
    return None


def _budget_option(args: argparse.Namespace) -> str:
    for option, value in (("--budget-bpw", args.budget_bpw), ("--budget-mb", args.budget_mb)):
        if value is not None:
            return option
    return "--min-sqnr"


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


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate headless (one process, or one rank under torchrun) and write a stats file."""
    from tui_quantreport.engine import distributed
    from tui_quantreport.engine.errors import UserError

    if args.sensitivity and not args.probe_batches:
        raise UserError("--sensitivity needs measurement: give --probe-batches 1 or more")
    world = distributed.from_environment()
    if world is None or (world.size == 1 and args.dist_backend is None):
        stats_file, started, measure = _calibrate_here(args, None)
        return _write_stats(args, measure(stats_file), time.perf_counter() - started)
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
        _check_output(args.output, "stats file", _inputs(args.model, args.calibration))  # before calibrating
    settings = settings_from(args)
    loaded = load_model(args.model, args.calibration)
    session = Session(loaded.model, label=loaded.spec)
    label = "calibrating" if world is None else f"calibrating (rank 0 of {world.size})"
    progress = Progress(label) if main_rank else None
    started = time.perf_counter()
    recorder = None
    try:
        if world is None:
            batches = open_batches(loaded)
            if args.probe_batches:
                from tui_quantreport.engine.quantsim import ProbeRecorder

                batches = recorder = ProbeRecorder(batches, args.probe_batches)
            stats = session.calibrate(batches, settings, max_batches=args.batches, progress=progress)
        else:
            shard: Any = distributed.open_shard(loaded, world, args.batches)
            stats = session.calibrate(shard, settings, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    extra = {} if world is None else {"world_size": world.size, "backend": world.backend}

    def measure(stats_file):
        """``stats_file`` with the measured error of its (merged) statistics, when asked for. Under
        torchrun on the probe batches a 1-process run takes; with --sensitivity every rank takes part
        (the modules split across them)."""
        from dataclasses import replace

        from tui_quantreport.engine.quantsim import Sqnr, take_probes

        # Under torchrun: the probe batches a 1-process run takes, read by every rank that measures.
        count = args.probe_batches if args.batches is None else min(args.probe_batches, args.batches)
        if world is not None and args.probe_batches and not args.sensitivity:
            if not world.is_main:
                return stats_file
            measured = _measure_error(
                args, session, stats_file.stats, settings, take_probes(open_batches(loaded), count)
            )
        elif world is not None and args.probe_batches:
            split = distributed.SplitSensitivity(world, Sqnr)
            try:
                probes = take_probes(open_batches(loaded), count)
                split.digest = distributed.probe_digest(probes)
                measured = _measure_error(args, session, stats_file.stats, settings, probes, split)
            finally:
                split.close()
            for note in split.notes:
                print(f"{PROG}: note: {note}", file=sys.stderr)
            if split.measured_by:
                shares = ", ".join(f"rank {r}: {n}" for r, n in sorted(split.measured_by.items()))
                print(f"sensitivity split across {world.size} ranks ({shares} modules)", file=sys.stderr)
        elif recorder is None:
            return stats_file
        else:
            measured = _measure_error(args, session, stats_file.stats, settings, recorder.probes)
        return stats_file if measured is None else replace(stats_file, measured=measured)

    return statsfile.make(loaded.spec, session.catalog, stats, settings, **extra), started, measure


def _measure_error(args: argparse.Namespace, session, stats, settings, probes, split=None):
    """The measured error (local SQNR, the recommended plan and its SQNR, sensitivity when asked)
    of ``stats`` on the ``probes``, as the app measures it; None (said) when the model cannot be
    simulated. With ``split`` (torchrun), ranks other than 0 measure their share of the
    sensitivity and return None; rank 0 gathers it."""
    from tui_quantreport.engine.quantsim.availability import analysis_for, unavailable_note, unavailable_reason
    from tui_quantreport.engine.severity import measure

    main_rank = split is None or split.world.is_main
    unsupported = unavailable_reason(session)
    if unsupported:
        if main_rank:
            print(f"{PROG}: note: no measured error kept: {unavailable_note(unsupported)}", file=sys.stderr)
        return None
    backend = settings.params.get("per_channel_detector", {}).get("backend", "x86")
    started = time.perf_counter()
    analysis = analysis_for(session, probes, stats, backend)
    if split is not None:
        split.analysis = analysis
        if not main_rank:
            split.share()
            return None
    measured = measure(analysis, sensitivity=args.sensitivity, min_gain_db=args.min_gain, sensitivity_of=split)
    plan_db = f"{measured.plan_sqnr_db:.1f} dB" if measured.plan_sqnr_db is not None else measured.plan_reason
    print(
        f"measured the error on {len(probes)} probe batches in {time.perf_counter() - started:.1f} s: "
        f"recommended plan {plan_db}" + (" (with sensitivity)" if args.sensitivity else ""),
        file=sys.stderr,
    )
    return measured


def _calibrate_distributed(args: argparse.Namespace, world) -> int:
    from dataclasses import replace

    from tui_quantreport.engine import distributed
    from tui_quantreport.engine.errors import UserError

    error = None
    stats_file = None
    started = time.perf_counter()
    measure = None
    try:
        stats_file, started, measure = _calibrate_here(args, world)
    except UserError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - the user's model or data can raise anything: every rank must hear of it
        text = str(exc).strip().splitlines()
        error = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    try:
        distributed.settle(world, error)  # raises RankFailed on every rank if any rank failed
        assert stats_file is not None  # this rank succeeded, or settle raised
        distributed.check_same_model(world, stats_file.catalog)  # one model on every rank, or no file
        merged = distributed.combine(world, stats_file.stats)
    except UserError as exc:
        if not world.is_main:
            return EXIT_USAGE  # rank 0 says it, once
        raise exc from None
    assert measure is not None
    try:
        measured = measure(replace(stats_file, stats=merged))  # every rank: the sensitivity is split across them
    except Exception:
        if world.is_main:
            raise
        return EXIT_USAGE  # rank 0 says it, once (or measured this rank's share itself)
    if not world.is_main:
        return 0
    # From rank 0's first batch until every rank's statistics are merged (it waits for the slowest).
    return _write_stats(args, measured, time.perf_counter() - started)


def _write_stats(args: argparse.Namespace, stats_file, seconds: float) -> int:
    from tui_quantreport.engine import statsfile

    path = statsfile.save(args.output, stats_file, inputs=_inputs(args.model, args.calibration))
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
    from tui_quantreport.engine.escape import printable

    if len(args.inputs) < 2:
        raise statsfile.StatsFileError("merge needs at least two stats files")
    _check_output(args.output, "stats file", args.inputs)  # never over one of its inputs
    files = [statsfile.load(path) for path in args.inputs]
    merged = statsfile.merge(files, args.inputs)
    path = statsfile.save(args.output, merged, inputs=args.inputs)
    print(f"merged {len(files)} files ({merged.stats.batches:,} batches) into {printable(str(path))}", file=sys.stderr)
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
    if args.plan:
        from tui_quantreport.engine.kept_plan import read_plan_file

        read_plan_file(args.plan)  # one line and exit 2 before the UI starts; the app reads it again
    from tui_quantreport.engine.export import install_sigterm_cleanup
    from tui_quantreport.tui.app import QuantReportApp

    install_sigterm_cleanup()  # the app writes in worker threads: SIGTERM removes their temporary files
    app = QuantReportApp(spec=spec, options=args)
    app.run()
    if app.error_line:  # a bad option found while loading: one line, as the headless commands say it
        print(f"{PROG}: error: {app.error_line}", file=sys.stderr)
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
            return run_report(_trusting(report_parser.parse_args(argv[1:])))
        if argv and argv[0] in ("calibrate", "merge"):
            calibrate_parser, merge_parser = build_stats_parsers()
            if argv[0] == "calibrate":
                return run_calibrate(_trusting(calibrate_parser.parse_args(argv[1:])))
            return run_merge(merge_parser.parse_args(argv[1:]))
        if argv and argv[0] in ("config", "verify"):
            config_parser, verify_parser = build_apply_parsers()
            if argv[0] == "config":
                return run_config(_trusting(config_parser.parse_args(argv[1:])))
            return run_verify(_trusting(verify_parser.parse_args(argv[1:])))
        if argv and argv[0] == "samples":
            samples_parser.parse_args(argv[1:])
            return run_samples()
        return run_app(_trusting(app_parser.parse_args(argv)))
    except (UserError, ArgumentError) as exc:
        from tui_quantreport.engine.escape import printable

        print(f"{PROG}: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
