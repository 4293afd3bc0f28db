"""`calibrate` (headless, or one rank under torchrun) and `merge`: stats files."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tui_quantreport.cli.common import Progress, check_output, input_files
from tui_quantreport.cli.options import (
    EXIT_USAGE,
    MODEL_HELP,
    PROG,
    OneLineParser,
    common_options,
    min_gain_option,
    non_negative_int,
    settings_from,
)
from tui_quantreport.engine.defaults import MIN_GAIN_DB

if TYPE_CHECKING:  # engine types only: importing them at run time loads torch
    from tui_quantreport.engine.pipeline import Measured, Pipeline, SplitSensitivity, StatsFile, World
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.stats import Stats


def build_calibrate_parser() -> argparse.ArgumentParser:
    """`calibrate`: calibrate headless and write a stats file."""
    calibrate = OneLineParser(
        prog=f"{PROG} calibrate",
        description="Calibrate MODEL headless and save its statistics to a stats file, to report on or open "
        "in the app anywhere, without the model. Under torchrun each rank calibrates its share of the batches.",
    )
    calibrate.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    common_options(calibrate)
    calibrate.add_argument(
        "--output", metavar="FILE.qstats", required=True, help="the stats file to write (atomically)"
    )
    calibrate.add_argument(
        "--probe-batches",
        metavar="K",
        type=non_negative_int,
        default=0,
        help="also measure the quantization error (SQNR per module and scheme, the recommended plan) on "
        "the first K calibration batches and keep it in the stats file (default 0: do not measure)",
    )
    calibrate.add_argument(
        "--sensitivity",
        action="store_true",
        help="with --probe-batches: also measure one-at-a-time sensitivity (one pass per quantized module)",
    )
    min_gain_option(calibrate, default=MIN_GAIN_DB)
    calibrate.add_argument(
        "--dist-backend",
        choices=("gloo", "nccl"),
        help="torch.distributed backend under torchrun (default: nccl with CUDA, else gloo)",
    )
    return calibrate


def build_merge_parser() -> argparse.ArgumentParser:
    """`merge`: one stats file for several files' batches."""
    merge = OneLineParser(
        prog=f"{PROG} merge",
        description="Merge stats files of the same model and settings: the result equals one calibration "
        "on all of their batches.",
    )
    merge.add_argument("inputs", nargs="+", metavar="FILE.qstats", help="stats files to merge (two or more)")
    merge.add_argument(
        "--output", metavar="FILE.qstats", required=True, help="the merged stats file to write (atomically)"
    )
    return merge


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate headless (one process, or one rank under torchrun) and write a stats file."""
    from tui_quantreport.engine.errors import UserError
    from tui_quantreport.engine.pipeline import from_environment, start, stop

    if args.sensitivity and not args.probe_batches:
        raise UserError("--sensitivity needs measurement: give --probe-batches 1 or more")
    world = from_environment()
    if world is None or (world.size == 1 and args.dist_backend is None):
        stats_file, started, measure = _calibrate_here(args, None)
        return _write_stats(args, measure(stats_file), time.perf_counter() - started)
    world = start(world, args.dist_backend)
    try:
        return _calibrate_distributed(args, world)
    finally:
        stop()


def _calibrate_here(args: argparse.Namespace, world: World | None) -> tuple[StatsFile, float, Callable[..., Any]]:
    """Load, calibrate this process's batches; (StatsFile, when its first batch started, what
    measures its error)."""
    from tui_quantreport.engine.pipeline import Pipeline, make_stats_file, open_shard

    main_rank = world is None or world.is_main
    if main_rank:
        check_output(args.output, "stats file", input_files(args.model, args.calibration))  # before calibrating
    settings = settings_from(args)
    pipe = Pipeline.load(args.model, args.calibration)
    label = "calibrating" if world is None else f"calibrating (rank 0 of {world.size})"
    progress = Progress(label) if main_rank else None
    started = time.perf_counter()
    try:
        if world is None:
            run = pipe.calibrate(
                settings, max_batches=args.batches, probe_batches=args.probe_batches, progress=progress
            )
        else:
            shard: Any = open_shard(pipe.loaded, world, args.batches)
            run = pipe.calibrate(settings, progress=progress, batches=shard)
    finally:
        if progress is not None:
            progress.close()
    extra = {} if world is None else {"world_size": world.size, "backend": world.backend}

    def measure(stats_file: StatsFile) -> StatsFile:
        """``stats_file`` with the measured error of its (merged) statistics, when asked for. Under
        torchrun on the probe batches a 1-process run takes; with --sensitivity every rank takes part
        (the modules split across them)."""
        from dataclasses import replace

        from tui_quantreport.engine.pipeline import SplitSensitivity, Sqnr, probe_digest

        # Under torchrun: the probe batches a 1-process run takes, read by every rank that measures.
        count = args.probe_batches if args.batches is None else min(args.probe_batches, args.batches)
        if world is not None and args.probe_batches and not args.sensitivity:
            if not world.is_main:
                return stats_file
            measured = _measure_error(args, pipe, stats_file.stats, settings, pipe.probes(count))
        elif world is not None and args.probe_batches:
            split = SplitSensitivity(world, Sqnr)
            try:
                probes = pipe.probes(count)
                split.digest = probe_digest(probes)
                measured = _measure_error(args, pipe, stats_file.stats, settings, probes, split)
            finally:
                split.close()
            for note in split.notes:
                print(f"{PROG}: note: {note}", file=sys.stderr)
            if split.measured_by:
                shares = ", ".join(f"rank {r}: {n}" for r, n in sorted(split.measured_by.items()))
                print(f"sensitivity split across {world.size} ranks ({shares} modules)", file=sys.stderr)
        elif run.probes is None:
            return stats_file
        else:
            measured = _measure_error(args, pipe, stats_file.stats, settings, run.probes)
        return stats_file if measured is None else replace(stats_file, measured=measured)

    return make_stats_file(pipe.spec, pipe.catalog, run.stats, settings, **extra), started, measure


def _measure_error(
    args: argparse.Namespace,
    pipe: Pipeline,
    stats: Stats,
    settings: Settings,
    probes: list[Any],
    split: SplitSensitivity | None = None,
) -> Measured | None:
    """The measured error (local SQNR, the recommended plan and its SQNR, sensitivity when asked)
    of ``stats`` on the ``probes``, as the app measures it; None (said) when the model cannot be
    simulated. With ``split`` (torchrun), ranks other than 0 measure their share of the
    sensitivity and return None; rank 0 gathers it."""
    from tui_quantreport.engine.pipeline import measure

    main_rank = split is None or split.world.is_main
    unsupported = pipe.measurement_unavailable()
    if unsupported:
        if main_rank:
            print(f"{PROG}: note: no measured error kept: {unsupported}", file=sys.stderr)
        return None
    started = time.perf_counter()
    analysis = pipe.analysis(stats, probes, settings)
    if split is not None:
        split.analysis = analysis
        if not main_rank:
            split.share()
            return None
    measured = measure(analysis, sensitivity=args.sensitivity, min_gain_db=args.min_gain, sensitivity_of=split).error
    plan_db = f"{measured.plan_sqnr_db:.1f} dB" if measured.plan_sqnr_db is not None else measured.plan_reason
    print(
        f"measured the error on {len(probes)} probe batches in {time.perf_counter() - started:.1f} s: "
        f"recommended plan {plan_db}" + (" (with sensitivity)" if args.sensitivity else ""),
        file=sys.stderr,
    )
    return measured


def _calibrate_distributed(args: argparse.Namespace, world: World) -> int:
    from dataclasses import replace

    from tui_quantreport.engine.errors import UserError
    from tui_quantreport.engine.pipeline import check_same_model, combine, settle

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
        settle(world, error)  # raises RankFailed on every rank if any rank failed
        assert stats_file is not None  # this rank succeeded, or settle raised
        check_same_model(world, stats_file.catalog)  # one model on every rank, or no file
        merged = combine(world, stats_file.stats)
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


def _write_stats(args: argparse.Namespace, stats_file: StatsFile, seconds: float) -> int:
    from tui_quantreport.engine.pipeline import save_stats_file

    path = save_stats_file(args.output, stats_file, inputs=input_files(args.model, args.calibration))
    world = stats_file.provenance.get("world_size")
    ranks = f" on {world} ranks" if world else ""
    print(
        f"calibrated {stats_file.stats.batches:,} batches{ranks} in {seconds:.1f} s; wrote {path} "
        f"({stats_file.catalog.class_name}, fingerprint {stats_file.fingerprint})",
        file=sys.stderr,
    )
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from tui_quantreport.engine.escape import printable
    from tui_quantreport.engine.pipeline import load_stats_file, merge_stats_files, save_stats_file
    from tui_quantreport.engine.stats_path import StatsFileError

    if len(args.inputs) < 2:
        raise StatsFileError("merge needs at least two stats files")
    check_output(args.output, "stats file", args.inputs)  # never over one of its inputs
    files = [load_stats_file(path) for path in args.inputs]
    merged = merge_stats_files(files, args.inputs)
    path = save_stats_file(args.output, merged, inputs=args.inputs)
    print(f"merged {len(files)} files ({merged.stats.batches:,} batches) into {printable(str(path))}", file=sys.stderr)
    return 0
