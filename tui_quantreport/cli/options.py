"""The command line's parsers and option types, shared by every command.

Every choice is read from a registry (targets from engine/apply/targets, schemes from the scheme
registry, detectors from the detector registry when help is printed) and every default from
engine/defaults.py; nothing here imports torch.
"""

from __future__ import annotations

import argparse

from tui_quantreport.engine.defaults import BACKENDS, DEFAULT_BACKEND, MIN_GAIN_DB

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
        from tui_quantreport.engine import short_names

        for action in self._actions:
            if action.dest == "detectors":
                action.help = f"comma-separated: {','.join(short_names())} (default: all)"
        return super().format_help()


class OneLineParser(_Parser):
    """argparse, but an error is one line with a hint to ``--help`` instead of the usage block."""

    def error(self, message: str):  # type: ignore[override]
        raise ArgumentError(f"{message} (see '{self.prog} --help')")


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calibration", metavar="SPEC", help="where calibration batches come from (same forms as MODEL)"
    )
    parser.add_argument("--batches", metavar="N", type=positive_int, help="calibrate on at most N batches")
    parser.add_argument("--backend", choices=BACKENDS, help=f"quantized backend (default {DEFAULT_BACKEND})")
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
    trust_pickle_option(parser)
    parser.add_argument(
        "--no-rerun",
        action="store_true",
        help="when the model rejects a batch, do not run that batch again to name the failing module "
        "(for models whose forward has side effects)",
    )


def trust_pickle_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow opening a .pt2 model: torch.export.load unpickles it, so a crafted file can run code "
        "(only for files you trust; stats, plan and settings files are never unpickled)",
    )


def trusting(args: argparse.Namespace) -> argparse.Namespace:
    """Record ``--trust-pickle`` for the loader, then hand the options on."""
    if getattr(args, "trust_pickle", False):
        from tui_quantreport.engine import trust_pickle

        trust_pickle()
    return args


def positive_int(text: str) -> int:
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


def target_option(parser: argparse.ArgumentParser, help_text: str, required: bool = False) -> None:
    """``--target NAME``: a deployment target of the registry (engine/apply/targets), or an old name."""
    from tui_quantreport.engine import NAMES, TARGETS

    parser.add_argument(
        "--target",
        metavar="NAME",
        type=_target_name,
        required=required,
        help=f"{help_text}: {', '.join(TARGETS)} (old names {', '.join(n for n in NAMES if n not in TARGETS)} "
        "still work)",
    )


def _target_name(text: str) -> str:
    from tui_quantreport.engine import NAMES, TARGETS

    if text not in NAMES:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise argparse.ArgumentTypeError(f"unknown target {shown!r}; choose one of {', '.join(TARGETS)}")
    return text


def plan_source_options(parser: argparse.ArgumentParser) -> None:
    """--calibration and --backend: where a recommended plan (no --plan) comes from."""
    parser.add_argument(
        "--calibration", metavar="SPEC", help="where calibration batches come from (same forms as MODEL)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="ignored for the plan: its target (--target) decides the activation grid; kept for old scripts",
    )
    output_key_option(parser)


OUTPUT_KEY_HELP = (
    "the model output the end-to-end SQNR reads (a name such as logits, 0 or encoder_last_hidden_state; "
    "default: every floating-point output, combined energy-weighted)"
)


def output_key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-key", metavar="NAME", help=OUTPUT_KEY_HELP)


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of dB, 0 or more, not {text}")
    return value


def finite_float(what: str, positive: bool = False):
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


def planner_options(parser: argparse.ArgumentParser) -> None:
    """The budgeted planner: a budget (one of three), the sensitivity cache, the frontier, the warning."""
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-bpw",
        metavar="BPW",
        type=finite_float("bits per weight", positive=True),
        help="plan mixed precision for at most this average of deployed bits per weight (scales counted)",
    )
    budget.add_argument(
        "--budget-mb",
        metavar="MB",
        type=finite_float("MB", positive=True),
        help="plan mixed precision for a model of at most this size (MB = 10^6 bytes, every parameter counted)",
    )
    budget.add_argument(
        "--min-sqnr",
        metavar="DB",
        type=finite_float("dB"),
        help="plan the smallest mix whose end-to-end SQNR reaches this many dB",
    )
    parser.add_argument(
        "--sensitivity-cache-mb",
        metavar="MB",
        type=finite_float("MiB"),
        default=1024.0,
        help="memory for the float activations the planner's sensitivity passes re-run from (default 1024; "
        "0: every pass from the input)",
    )
    parser.add_argument(
        "--frontier-points",
        metavar="N",
        type=non_negative_int,
        default=6,
        help="budgets on the planner's SQNR-vs-size frontier, beside the uniform plans (default 6)",
    )
    parser.add_argument(
        "--warn-below",
        metavar="DB",
        type=finite_float("dB"),
        default=20.0,
        help="warn at the top of the report when the plan's end-to-end SQNR is below this (default 20)",
    )


def min_gain_option(parser: argparse.ArgumentParser, default: float | None) -> None:
    """``--min-gain DB`` (the app's default None: the saved setting, else ``MIN_GAIN_DB``)."""
    parser.add_argument(
        "--min-gain",
        metavar="DB",
        type=non_negative_float,
        default=default,
        help=f"findings whose advice gains less than this many dB are minor (default {MIN_GAIN_DB:g})",
    )


def schemes_option(value: str) -> tuple[str, ...]:
    """``--schemes``: names read from the scheme registry (argparse turns a ValueError into one line)."""
    from tui_quantreport.engine.pipeline import select_schemes

    try:
        return select_schemes(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
