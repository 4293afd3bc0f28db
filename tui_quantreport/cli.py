"""Command line: open the app, run a headless report, or list the samples.

    tui-quantreport [MODEL] [options]            the app (no MODEL: the default sample)
    tui-quantreport report MODEL [options]       headless report (json, markdown, text)
    tui-quantreport samples                      the bundled samples
    tui-quantreport config MODEL [--plan P] --target T --output F   export the plan for torchao/pt2e/torch.ao
    tui-quantreport verify MODEL --plan P [--target T]              apply the export, measure its SQNR

Bad input prints one line naming the cause and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
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
    parser.add_argument(
        "--no-rerun", action="store_true",
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


TARGETS = ("torchao", "pt2e", "qconfig_mapping")


def build_apply_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """`config` (export a plan for a library) and `verify` (apply that export and measure it)."""
    model_help = "sample name, file.py, file.py:factory or package.module:factory"
    config = argparse.ArgumentParser(
        prog=f"{PROG} config",
        description="Write the plan as a configuration torchao, PT2E or torch.ao runs "
        "(without --plan: calibrate and use the recommended plan).",
    )
    config.add_argument("model", metavar="MODEL", help=model_help)
    config.add_argument("--plan", metavar="PLAN.json", help="the plan file (saved with `e` in the app)")
    config.add_argument("--target", choices=TARGETS, required=True, help="which library the file is for")
    config.add_argument("--output", metavar="FILE", required=True,
                        help="the .py file to write (torchao also writes FILE's .json and .safetensors beside it)")
    config.add_argument("--calibration", metavar="SPEC", help="where calibration batches come from (same forms as MODEL)")
    config.add_argument("--backend", choices=("fbgemm", "x86", "qnnpack", "onednn"),
                        help="backend of the recommended plan when there is no --plan (default x86)")
    verify = argparse.ArgumentParser(
        prog=f"{PROG} verify",
        description="Apply the exported configuration with the real library to a copy of MODEL and "
        "compare its end-to-end SQNR on the probe batches with the predicted one.",
    )
    verify.add_argument("model", metavar="MODEL", help=model_help)
    verify.add_argument("--plan", metavar="PLAN.json", help="the plan file (default: the recommended plan)")
    verify.add_argument("--target", choices=TARGETS, default="torchao", help="which export to verify (default torchao)")
    verify.add_argument("--probe-batches", metavar="K", type=_positive_int,
                        help="measure on the first K calibration batches (default: the plan's, else 4)")
    verify.add_argument("--calibration", metavar="SPEC", help="where calibration batches come from (same forms as MODEL)")
    verify.add_argument("--backend", choices=("fbgemm", "x86", "qnnpack", "onednn"),
                        help="backend of the recommended plan when there is no --plan (default x86)")
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


def _check_output(output: str) -> None:
    """Refuse an output that cannot be written before the (slow) model load and export."""
    import os
    from pathlib import Path

    from tui_quantreport.engine.errors import UserError

    target = Path(output).expanduser()
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UserError(f"cannot write {target}: it is a directory")
    if not directory.is_dir():
        raise UserError(f"cannot write {target}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UserError(f"cannot write {target}: permission denied")


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


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    app = OneLineParser(
        prog=PROG,
        description="Module-by-module quantization advice for a PyTorch model. "
        f"Also: '{PROG} report MODEL' (headless) and '{PROG} samples'.",
    )
    app.add_argument("model", nargs="?", metavar="MODEL", help="sample name, file.py, file.py:factory or package.module:factory")
    _common_options(app)

    report = OneLineParser(prog=f"{PROG} report", description="Calibrate MODEL and print or write its report.")
    report.add_argument("model", metavar="MODEL", help="sample name, file.py, file.py:factory or package.module:factory")
    _common_options(report)
    report.add_argument("--format", choices=("json", "markdown", "text"), default="text", help="output format (default text)")
    report.add_argument("--output", metavar="PATH", help="write here instead of stdout (a file atomically; - is stdout)")
    report.add_argument(
        "--probe-batches", metavar="K", type=_count, default=4,
        help="measure quantization error (SQNR) on the first K calibration batches (default 4; 0: do not measure)",
    )
    report.add_argument(
        "--sensitivity", action="store_true",
        help="also measure one-at-a-time sensitivity (one pass over the probes per quantized module)",
    )
    report.add_argument(
        "--min-gain", metavar="DB", type=_non_negative_float, default=1.0,
        help="findings whose advice gains less than this many dB are minor (default 1)",
    )
    report.add_argument("--plan-out", metavar="FILE", help="write the recommended plan (JSON) here")

    samples = OneLineParser(prog=f"{PROG} samples", description="List the bundled sample models.")
    return app, report, samples


def settings_from(args: argparse.Namespace):
    """Engine settings from the common options (raises ParamError on bad values)."""
    from tui_quantreport.engine import Settings

    return Settings.from_options(
        detectors=args.detectors, params=args.param, tolerance=args.tolerance,
        backend=args.backend, ch_axis=args.ch_axis,
    )


def run_report(args: argparse.Namespace) -> int:
    from tui_quantreport.engine import (
        Evaluator,
        Session,
        load_model,
        open_batches,
        render,
        write_atomic,
    )
    from tui_quantreport.engine.errors import UserError

    settings = settings_from(args)
    if args.plan_out and not args.probe_batches:
        raise UserError("--plan-out needs measurement: give --probe-batches 1 or more")
    with model_output_to_stderr():  # the model's prints must not mix with the report on stdout
        loaded = load_model(args.model, args.calibration)
        session = Session(loaded.model, label=loaded.spec)
        batches = open_batches(loaded)
        recorder = None
        if args.probe_batches:
            from tui_quantreport.engine.quantsim import ProbeRecorder

            batches = recorder = ProbeRecorder(batches, args.probe_batches)
        stats = session.calibrate(batches, settings, max_batches=args.batches, rerun_failures=not args.no_rerun)
        report = Evaluator(session.catalog).evaluate(stats, settings, spec=loaded.spec)
        if recorder is not None:  # runs the model again, on the probe batches
            report = _measure(args, session, stats, settings, recorder.probes, report)
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


def _measure(args, session, stats, settings, probes, report):
    """Attach measured error (local SQNR, the recommended plan, severities) to ``report``."""
    from tui_quantreport.engine.quantsim import ErrorAnalysis, Plan
    from tui_quantreport.engine.severity import assess, measure

    backend = settings.params.get("per_channel_detector", {}).get("backend", "x86")
    analysis = ErrorAnalysis.from_stats(session.model, session.catalog, probes, stats, backend)
    if args.sensitivity:
        analysis.local_measurements()
        plan = analysis.recommended_plan(args.min_gain)
        print(f"sensitivity: {len(plan.quantized)} modules, {analysis.cost('sensitivity', plan)}", file=sys.stderr)
    measured = measure(analysis, sensitivity=args.sensitivity, min_gain_db=args.min_gain)
    if args.plan_out:
        path = Plan.from_json_data(measured.plan_data).save(args.plan_out)
        print(f"wrote plan to {path}", file=sys.stderr)
    return assess(report, measured, args.min_gain)


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

    spec = args.model or default_sample()
    check_spec(spec)
    if args.calibration:
        check_spec(args.calibration)
    from tui_quantreport.tui.app import QuantReportApp

    app = QuantReportApp(spec=spec, options=args)
    app.run()
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    app_parser, report_parser, samples_parser = build_parsers()
    from tui_quantreport.engine.errors import UserError

    try:
        if argv and argv[0] == "report":
            return run_report(report_parser.parse_args(argv[1:]))
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
