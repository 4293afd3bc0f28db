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

This module is the program's entry point (``tui-quantreport``, ``python -m tui_quantreport``): the
one place that sees both front ends, choosing the headless commands (``cli/``'s other modules) or
the app (``tui/``). It is a layer of its own above them (tests/test_layers.py), so the commands
never import the app and the app never imports the commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tui_quantreport.cli.app import app_options, build_app_parser, build_samples_parser, checked_app_spec, run_samples
from tui_quantreport.cli.apply import build_config_parser, build_verify_parser, run_config, run_verify
from tui_quantreport.cli.calibrate import build_calibrate_parser, build_merge_parser, run_calibrate, run_merge
from tui_quantreport.cli.common import Progress, model_output_to_stderr
from tui_quantreport.cli.options import EXIT_USAGE, PROG, ArgumentError, OneLineParser, settings_from, trusting
from tui_quantreport.cli.report import build_report_parser, run_report

__all__ = [
    "EXIT_USAGE",
    "PROG",
    "ArgumentError",
    "OneLineParser",
    "Progress",
    "app_options",
    "build_parsers",
    "main",
    "model_output_to_stderr",
    "run_app",
    "settings_from",
]

#: The commands named by the first argument: (its parser, what runs it, whether --trust-pickle applies).
#: Anything else is the app's MODEL (argparse subparsers cannot have an optional positional beside them).
COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[argparse.Namespace], int], bool]] = {
    "report": (build_report_parser, run_report, True),
    "calibrate": (build_calibrate_parser, run_calibrate, True),
    "merge": (build_merge_parser, run_merge, False),
    "config": (build_config_parser, run_config, True),
    "verify": (build_verify_parser, run_verify, True),
    "samples": (build_samples_parser, lambda args: run_samples(), False),
}


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    """The app's, ``report``'s and ``samples``' parsers."""
    return build_app_parser(), build_report_parser(), build_samples_parser()


def run_app(args: argparse.Namespace) -> int:
    """``tui-quantreport [MODEL]``: check the options (one line and exit 2 before the UI starts),
    then run the app until it quits."""
    spec = checked_app_spec(args)
    from tui_quantreport.engine import install_sigterm_cleanup
    from tui_quantreport.tui.app import QuantReportApp

    install_sigterm_cleanup()  # the app writes in worker threads: SIGTERM removes their temporary files
    app = QuantReportApp(spec=spec, options=args)
    app.run()
    if app.error_line:  # a bad option found while loading: one line, as the headless commands say it
        print(f"{PROG}: error: {app.error_line}", file=sys.stderr)
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from tui_quantreport.engine.errors import UserError

    try:
        if argv and argv[0] in COMMANDS:
            build, run, trusts = COMMANDS[argv[0]]
            args = build().parse_args(argv[1:])
            return run(trusting(args) if trusts else args)
        return run_app(trusting(build_app_parser().parse_args(argv)))
    except (UserError, ArgumentError) as exc:
        from tui_quantreport.engine.escape import printable

        print(f"{PROG}: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
