"""`report`: calibrate MODEL (or read a stats file) and print or write its report."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from tui_quantreport.cli.common import (
    Progress,
    input_files,
    model_output_to_stderr,
    open_stats,
    stats_settings,
)
from tui_quantreport.cli.options import (
    MODEL_HELP,
    PROG,
    STATS_HELP,
    OneLineParser,
    common_options,
    min_gain_option,
    non_negative_int,
    output_key_option,
    planner_options,
    schemes_option,
    settings_from,
    target_option,
)
from tui_quantreport.engine.defaults import MIN_GAIN_DB, PROBE_BATCHES

if TYPE_CHECKING:  # engine types only: importing them at run time loads torch
    from tui_quantreport.engine.pipeline import Budget, Pipeline
    from tui_quantreport.engine.report import Report
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.stats import Stats


def build_report_parser() -> argparse.ArgumentParser:
    """`report`: headless, to stdout or a file."""
    report = OneLineParser(
        prog=f"{PROG} report", description="Calibrate MODEL (or read a stats file) and print or write its report."
    )
    report.add_argument("model", metavar="MODEL", help=MODEL_HELP + ", or a stats file (.qstats)")
    common_options(report)
    target_option(report, "the deployment target the measured plan is made for (default torchao on the model's device)")
    report.add_argument("--stats", metavar="FILE.qstats", help=STATS_HELP)
    from tui_quantreport.engine import FORMATS  # the renderers' registry (torch-free)

    report.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    report.add_argument(
        "--output", metavar="PATH", help="write here instead of stdout (a file atomically; - is stdout)"
    )
    report.add_argument(
        "--probe-batches",
        metavar="K",
        type=non_negative_int,
        default=PROBE_BATCHES,
        help=f"measure quantization error (SQNR) on the first K calibration batches (default {PROBE_BATCHES}; "
        "0: do not measure)",
    )
    report.add_argument(
        "--sensitivity",
        action="store_true",
        help="also measure one-at-a-time sensitivity (one pass over the probes per quantized module)",
    )
    min_gain_option(report, default=MIN_GAIN_DB)
    report.add_argument(
        "--schemes",
        metavar="LIST",
        type=schemes_option,
        default=None,
        help="schemes to measure: a comma list of names or families (int8, int4, fp8, mx, nvfp4, nf4) or all "
        "(default all; the int8 schemes the recommended plan chooses among are always measured)",
    )
    report.add_argument(
        "--plan-out", metavar="FILE", help="write the recommended plan (JSON) here (with a budget: the budgeted plan)"
    )
    planner_options(report)
    output_key_option(report)

    return report


def run_report(args: argparse.Namespace) -> int:
    from tui_quantreport.engine import render, write_atomic
    from tui_quantreport.engine.errors import UserError
    from tui_quantreport.engine.escape import printable
    from tui_quantreport.engine.pipeline import Pipeline, assess
    from tui_quantreport.engine.stats_path import StatsFileError, is_stats_path

    if is_stats_path(args.model):
        # No model: the report is judged from the file; measured error needs the model's forward.
        sf = open_stats(args.model, args)
        for option, given in (
            ("--sensitivity", args.sensitivity),
            ("--plan-out", args.plan_out),
            (_budget_option(args), _budget(args) is not None),
        ):
            if given:
                raise StatsFileError(
                    f"{option} measures the model, and {args.model} is a stats file (it holds no model); "
                    f"use: {PROG} report {sf.spec} --stats {args.model} {option}"
                )
        from tui_quantreport.engine import evaluate

        report = evaluate(sf.catalog, sf.stats, stats_settings(sf, args, args.model), spec=sf.spec)
        if sf.measured is not None:  # measured before it was saved (in the app): severities from that
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
            pipe = Pipeline.load(args.model, args.calibration)
            if args.stats:  # reuse the file's statistics; probe batches (if any) are read afresh
                from tui_quantreport.engine.pipeline import load_stats_file

                sf = load_stats_file(args.stats)
                sf.check_model(pipe.catalog, args.stats)
                settings = stats_settings(sf, args, args.stats)
                stats = sf.stats
                probes = pipe.probes(args.probe_batches) if args.probe_batches else None
            else:
                run = pipe.calibrate(
                    settings,
                    max_batches=args.batches,
                    probe_batches=args.probe_batches,
                    rerun_failures=not args.no_rerun,
                )
                stats, probes = run.stats, run.probes
                if run.probes_mutated:
                    from tui_quantreport.engine.pipeline import MUTATION_NOTE

                    print(f"{PROG}: note: {MUTATION_NOTE}", file=sys.stderr)
            report = pipe.evaluate(stats, settings)
            if probes is not None:
                report = _measure(args, pipe, stats, settings, probes, report)
    text = render(report, args.format)
    if args.output and args.output != "-":
        path = write_atomic(args.output, text, inputs=input_files(args.model, args.calibration, args.stats))
        print(f"wrote {args.format} report to {printable(str(path))}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _measure(
    args: argparse.Namespace, pipe: Pipeline, stats: Stats, settings: Settings, probes: list[Any], report: Report
) -> Report:
    """Attach measured error (local SQNR, the recommended plan, severities) to ``report``."""
    from tui_quantreport.engine import write_atomic
    from tui_quantreport.engine.escape import printable
    from tui_quantreport.engine.pipeline import Plan, SimulationError, assess, measure

    unsupported = pipe.measurement_unavailable()
    if unsupported:
        print(f"{PROG}: note: {unsupported}", file=sys.stderr)
        return report
    # a graph: a copy with its Linear/Conv as modules
    analysis = pipe.analysis(
        stats, probes, settings, args.target, output_key=args.output_key, schemes=getattr(args, "schemes", None)
    )
    try:
        if args.sensitivity:
            analysis.local_measurements()
            plan = analysis.recommended_plan(args.min_gain)
            print(f"sensitivity: {len(plan.quantized)} modules, {analysis.cost('sensitivity', plan)}", file=sys.stderr)
        measured = measure(analysis, sensitivity=args.sensitivity, min_gain_db=args.min_gain).error
    except SimulationError as exc:  # the calibration's report stands without the measured error
        if args.plan_out:
            raise
        print(f"{PROG}: note: no measured SQNR: {exc}", file=sys.stderr)
        return report
    budget = _budget(args)
    plan_data = measured.plan_data
    if budget is not None:
        from tui_quantreport.engine.pipeline import Planner, planned_measured

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
        from tui_quantreport.engine.pipeline import recommended_warning

        measured = recommended_warning(measured, args.warn_below)
    if args.plan_out:
        path = write_atomic(
            args.plan_out,
            Plan.from_json_data(plan_data).to_json(),
            what="plan",
            inputs=input_files(args.model, args.calibration, args.stats),
        )
        print(f"wrote plan to {printable(str(path))}", file=sys.stderr)
    return assess(report, measured, args.min_gain)


def _budget(args: argparse.Namespace) -> Budget | None:
    """The planner's budget from --budget-bpw / --budget-mb / --min-sqnr (None: no budget)."""
    from tui_quantreport.engine.pipeline import Budget

    for kind, value in (("bpw", args.budget_bpw), ("mb", args.budget_mb), ("sqnr", args.min_sqnr)):
        if value is not None:
            return Budget(kind, value)
    return None


def _budget_option(args: argparse.Namespace) -> str:
    for option, value in (("--budget-bpw", args.budget_bpw), ("--budget-mb", args.budget_mb)):
        if value is not None:
            return option
    return "--min-sqnr"
