"""`config` (export a plan for a library) and `verify` (apply that export and measure it)."""

from __future__ import annotations

import argparse
import os
import sys

from tui_quantreport.cli.common import check_output, input_files, model_output_to_stderr
from tui_quantreport.cli.options import (
    MODEL_HELP,
    PROG,
    OneLineParser,
    plan_source_options,
    positive_int,
    target_option,
    trust_pickle_option,
)
from tui_quantreport.engine.defaults import PROBE_BATCHES

#: The files a target's library writes beside --output (checked before the model loads; the writer
#: checks again).
SIDECARS = {"torchao": (".json", ".safetensors")}


def build_config_parser() -> argparse.ArgumentParser:
    """`config`: export a plan for a library."""
    config = OneLineParser(
        prog=f"{PROG} config",
        description="Write the plan as a configuration torchao, PT2E or torch.ao runs "
        "(without --plan: calibrate and use the recommended plan).",
    )
    config.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    config.add_argument("--plan", metavar="PLAN.json", help="the plan file (saved with `e` in the app)")
    target_option(config, "which target the file is for (default: the plan's, else torchao on the model's device)")
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
    plan_source_options(config)
    trust_pickle_option(config)
    return config


def build_verify_parser() -> argparse.ArgumentParser:
    """`verify`: apply the export and measure it."""
    verify = OneLineParser(
        prog=f"{PROG} verify",
        description="Apply the exported configuration with the real library to a copy of MODEL and "
        "compare its end-to-end SQNR on the probe batches with the predicted one.",
    )
    verify.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    verify.add_argument("--plan", metavar="PLAN.json", help="the plan file (default: the recommended plan)")
    target_option(verify, "which target's export to verify (default: the plan's, else torchao on the model's device)")
    verify.add_argument(
        "--probe-batches",
        metavar="K",
        type=positive_int,
        help=f"measure on the first K calibration batches (default: the plan's, else {PROBE_BATCHES})",
    )
    plan_source_options(verify)
    verify.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    trust_pickle_option(verify)
    return verify


def run_config(args: argparse.Namespace) -> int:
    from tui_quantreport.engine.errors import UserError
    from tui_quantreport.engine.escape import printable

    named = None
    if args.target:
        from tui_quantreport.engine.pipeline import resolve_target

        named = resolve_target(args.target)
    sidecars = SIDECARS.get(named.library, ()) if named is not None else ()
    if sidecars and args.output.endswith(sidecars):
        raise UserError(
            f"--output {printable(args.output)}: give the .py file; its .json and .safetensors are written beside it"
        )
    check_output(args.output, inputs=input_files(args.model, args.calibration, args.plan))
    if not args.force:  # before the slow load and export: the side-cars the user did not name
        from pathlib import Path

        from tui_quantreport.engine.pipeline import is_own_sidecar, sidecar_path

        for suffix in sidecars:
            sidecar = sidecar_path(Path(args.output).expanduser(), suffix)
            if os.path.lexists(sidecar) and not is_own_sidecar(sidecar):
                raise UserError(
                    f"cannot write the {named.name if named else ''} configuration: {printable(str(sidecar))} exists "
                    "and would be replaced; move it, choose another --output, or pass --force"
                )
    from tui_quantreport.engine.pipeline import export_plan, load_subject

    subject = load_subject(
        args.model, args.plan, args.calibration, args.backend, args.target, output_key=args.output_key
    )
    export = export_plan(subject)
    if export.sidecars and args.output.endswith(tuple(export.sidecars)):
        raise UserError(
            f"--output {printable(args.output)}: give the .py file; its .json and .safetensors are written beside it"
        )
    paths = export.write(args.output, force=args.force, inputs=input_files(args.model, args.calibration, args.plan))
    print(f"wrote {export.target} configuration to {', '.join(printable(str(p)) for p in paths)}", file=sys.stderr)
    for change in export.changes:
        print(f"  changed: {printable(change.line())}", file=sys.stderr)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    import json

    from tui_quantreport.engine.pipeline import load_subject, verify_plan

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
