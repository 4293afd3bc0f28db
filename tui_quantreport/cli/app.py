"""The app (``tui-quantreport [MODEL]``) and ``samples``."""

from __future__ import annotations

import argparse
import sys

from tui_quantreport.cli.options import (
    MODEL_HELP,
    PROG,
    STATS_HELP,
    OneLineParser,
    common_options,
    min_gain_option,
    target_option,
)


def build_app_parser() -> argparse.ArgumentParser:
    """The app: ``tui-quantreport [MODEL] [options]``."""
    app = OneLineParser(
        prog=PROG,
        description="Module-by-module quantization advice for a PyTorch model. "
        f"Also: '{PROG} report MODEL' (headless), '{PROG} calibrate MODEL --output run.qstats', "
        f"'{PROG} merge', '{PROG} config MODEL --plan P --target T' (the plan as a library's configuration), "
        f"'{PROG} verify MODEL --plan P' (apply it and measure) and '{PROG} samples'.",
    )
    app.add_argument("model", nargs="?", metavar="MODEL", help=MODEL_HELP + ", or a stats file (.qstats)")
    common_options(app)
    target_option(app, "the deployment target the plan is made for (default torchao on the model's device)")
    app.add_argument("--stats", metavar="FILE.qstats", help=STATS_HELP)
    app.add_argument(
        "--plan",
        metavar="FILE.plan.json",
        help="start from this plan (a plan file the app or report --plan-out wrote) instead of the "
        "recommended one, once the error is measured",
    )
    min_gain_option(app, default=None)
    return app


def build_samples_parser() -> argparse.ArgumentParser:
    """`samples`: list the bundled sample models."""
    return OneLineParser(prog=f"{PROG} samples", description="List the bundled sample models.")


def app_options(model: str, **overrides: object) -> argparse.Namespace:
    """The options ``tui-quantreport MODEL`` starts the app with (the parser's own defaults), with
    ``overrides`` set over them (tests and benchmarks: ``batches=8``, ``probe_batches=0``)."""
    options = build_app_parser().parse_args([model])
    for name, value in overrides.items():
        setattr(options, name, value)
    return options


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
    from tui_quantreport.engine.stats_path import StatsFileError, is_stats_path

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
        from tui_quantreport.engine.plan import read_plan_file

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

    from tui_quantreport.engine.stats_path import StatsFileError

    target = Path(path).expanduser()
    if not target.is_file():
        raise StatsFileError(f"{path}: no such file" if not target.exists() else f"{path}: not a file")
