"""The benchmark: ``python -m benchmarks.run [--threads 1] [--repeats 3] [--batches N]
[--device cpu|cuda] [--models a,b] [--quick] [--no-write]``.

In one process, on the same batches, with the thread count fixed, it times per
model:

- **plain**: ``model.eval()`` + ``torch.no_grad()`` forward over the batches;
- **ours**: ``Session.calibrate(batches, settings)`` with all four detectors, end to
  end (hooks attached and removed, stats frozen); ``evaluate`` is timed apart;
- **reference**: torch's ``ModelReport`` with the same four detectors on a
  ``prepare_fx`` copy of the model (``get_default_qconfig_mapping("x86")``),
  timing the batches after ``prepare_detailed_calibration()``; its
  ``generate_model_report`` is timed apart. Failures are reported, not raised.

Each contender runs once as a warm-up, then ``--repeats`` times, interleaved;
the table shows medians in ms per batch. Then: re-evaluation after a threshold
change on the 2,000+ module sample, the stats snapshot's bytes after 10 and 100
batches, and the app's launch-to-populated-tree time. The report is printed and
written to ``benchmarks/results.md`` (one section per device, merged).

A benchmark is not a test: nothing here asserts on a number.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import os
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks import extras
from benchmarks.machine import cpu_model, describe
from benchmarks.models import DEFAULT_MODELS, all_cases
from benchmarks.reference import describe_failure, generate_report, prepare_reference, short_reason
from benchmarks.results_file import write_results
from benchmarks.targets import CALIBRATION_PLAIN, CALIBRATION_TRANSFORMERS, against
from benchmarks.timing import call_batch, fmt_bytes, fmt_ms, fmt_ratio, median, timed, to_device

RESULTS = Path(__file__).resolve().parent / "results.md"


@dataclass
class Row:
    key: str
    label: str
    batches: int = 0
    batch_shape: str = ""
    modules: int = 0
    points: int = 0
    plain_ms: float | None = None
    ours_ms: float | None = None
    ours_failure: str | None = None
    #: The session's first calibration (the warm-up; one sample), ms per batch.
    ours_first_ms: float | None = None
    evaluate_ms: float | None = None
    ref_ms: float | None = None
    ref_failure: str | None = None
    ref_prepare_s: float | None = None
    ref_observers: int = 0
    ref_report_ms: float | None = None
    ref_report_failure: str | None = None
    #: A model with nn.TransformerEncoderLayer: its plain forward with the fused fast path off, x plain.
    unfused_over_plain: float | None = None
    #: The MLP and conv samples: our calibration without the outlier detector (no exact per-channel
    #: percentile, every other statistic kept), x plain: what the rest costs, the selection aside.
    no_percentiles_over_plain: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ours_over_plain(self) -> float | None:
        if self.ours_ms is None or not self.plain_ms:
            return None
        return self.ours_ms / self.plain_ms

    @property
    def ref_over_ours(self) -> float | None:
        if self.ref_ms is None or not self.ours_ms:
            return None
        return self.ref_ms / self.ours_ms


#: The detectors torch's reference model report has: "ours" runs the same four, so the
#: comparison is like for like (the fifth, dead channels, adds one comparison per channel).
REFERENCE_DETECTORS = ("per_channel", "dynamic_static", "equalization", "outlier")


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def shape_of(batch: Any) -> str:
    if isinstance(batch, torch.Tensor):
        return "x".join(str(d) for d in batch.shape)
    if isinstance(batch, dict):
        return ", ".join(f"{k}: {shape_of(v)}" for k, v in batch.items())
    if isinstance(batch, (tuple, list)):
        return "(" + ", ".join(shape_of(v) for v in batch) + ")"
    return type(batch).__name__


def plain_pass(model: torch.nn.Module, batches: list[Any]) -> None:
    model.eval()
    with torch.no_grad():
        for batch in batches:
            call_batch(model, batch)


def bench_case(key: str, device: torch.device, repeats: int, n_batches: int | None, label_suffix: str) -> Row:
    from tui_quantreport.engine import Session, Settings, evaluate, observation_plan

    case = all_cases()[key]
    row = Row(key, key + label_suffix)
    model, note = case.build()
    model = model.eval()
    if note:
        row.notes.append(note)
    batches_cpu = case.batches(n_batches)
    row.batches = len(batches_cpu)
    row.batch_shape = shape_of(batches_cpu[0])

    # The reference is prepared first, on a deep copy of the untouched CPU model.
    reference = None
    try:
        reference = prepare_reference(model, batches_cpu[0], device)
        row.ref_prepare_s = reference.prepare_seconds
        row.ref_observers = reference.observers
    except Exception as exc:  # noqa: BLE001 - the table reports why
        row.ref_failure = short_reason(exc)

    model = model.to(device)
    batches = to_device(batches_cpu, device)
    if device.type != "cpu":
        del batches_cpu
    session = Session(model, label=key)
    settings = Settings.build(REFERENCE_DETECTORS)
    plan = observation_plan(session.catalog, settings)
    row.modules = len(session.catalog.modules)
    row.points = len(plan)

    def ours() -> Any:
        return session.calibrate(batches, settings)

    def run_reference() -> None:
        plain_pass(reference.model, batches)

    # Warm-up: one pass of each contender. Ours is then the session's first calibration: timed
    # (one sample) as the cold figure, since the session keeps its set-up for the next ones.
    plain_pass(model, batches)
    try:
        seconds, stats = timed(ours, device)
        row.ours_first_ms = seconds / len(batches) * 1e3
    except Exception as exc:  # noqa: BLE001
        row.ours_failure = "fails: " + describe_failure(exc)
    if reference is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run_reference()
        except Exception as exc:  # noqa: BLE001
            row.ref_failure = short_reason(exc)
            reference = None

    plain_s, ours_s, ref_s, eval_s = [], [], [], []
    for _ in range(repeats):
        seconds, _ = timed(lambda: plain_pass(model, batches), device)
        plain_s.append(seconds)
        if row.ours_failure is None:
            seconds, stats = timed(ours, device)
            ours_s.append(seconds)
            seconds, _ = timed(lambda stats=stats: evaluate(session.catalog, stats, settings), device)
            eval_s.append(seconds)
        if reference is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds, _ = timed(run_reference, device)
            ref_s.append(seconds)

    n = len(batches)
    row.plain_ms = median(plain_s) / n * 1e3
    row.unfused_over_plain = unfused_plain(model, batches, device, repeats, median(plain_s))
    row.no_percentiles_over_plain = without_percentiles(row, model, batches, device, repeats)
    if ours_s:
        row.ours_ms = median(ours_s) / n * 1e3
        row.evaluate_ms = median(eval_s) * 1e3
    if ref_s:
        row.ref_ms = median(ref_s) / n * 1e3
        try:
            seconds, _ = timed(lambda: generate_report(reference), device)
            row.ref_report_ms = seconds * 1e3
        except Exception as exc:  # noqa: BLE001
            row.ref_report_failure = describe_failure(exc)

    return row  # the model, batches and session go with this frame: the caller frees the memory


def unfused_plain(
    model: torch.nn.Module, batches: list[Any], device: torch.device, repeats: int, plain_s: float
) -> float | None:
    """For a model with ``nn.TransformerEncoderLayer``: its plain forward with the fused fast path off,
    over the plain one. Observing the layers' inner modules turns that path off, so this is what it
    costs by itself (the transformer samples' calibration floor)."""
    if not any(isinstance(m, torch.nn.TransformerEncoderLayer) for m in model.modules()):
        return None
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        unfused = [timed(lambda: plain_pass(model, batches), device)[0] for _ in range(repeats)]
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)
    return median(unfused) / plain_s


def without_percentiles(
    row: Row, model: torch.nn.Module, batches: list[Any], device: torch.device, repeats: int
) -> float | None:
    """For the MLP, conv and transformer calibration samples: our calibration without the outlier detector (the only
    one that asks for exact per-channel percentiles), over the plain forward timed in the same rounds
    (alternated; median of the per-round ratios): their floor is the selection on top of it. None for
    other models, or where our calibration failed."""
    from tui_quantreport.engine import Session, Settings

    if row.key not in (*CALIBRATION_PLAIN, *CALIBRATION_TRANSFORMERS) or row.ours_failure is not None:
        return None
    session = Session(model)
    settings = Settings.build(tuple(d for d in REFERENCE_DETECTORS if d != "outlier"))
    session.calibrate(batches, settings)  # warm-up
    ratios = []
    for _ in range(max(repeats, 3)):
        plain = timed(lambda: plain_pass(model, batches), device)[0]
        ratios.append(timed(lambda: session.calibrate(batches, settings), device)[0] / plain)
    return median(ratios)


def release_memory(device: torch.device) -> None:
    """Collect what the last case left and hand cached device memory back."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- rendering


def main_table(rows: list[Row]) -> list[str]:
    lines = [
        "| model | plain ms/batch | ours ms/batch | ours/plain | reference ms/batch | reference/ours |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours = row.ours_failure or fmt_ms(row.ours_ms)
        if row.ref_failure:
            ref, ratio = row.ref_failure, "-"
        else:
            mark = " †" if row.ref_report_failure else ""
            ref, ratio = fmt_ms(row.ref_ms) + mark, fmt_ratio(row.ref_over_ours)
        lines.append(
            f"| {row.label} | {fmt_ms(row.plain_ms)} | {ours} | {fmt_ratio(row.ours_over_plain)} | {ref} | {ratio} |"
        )
    return lines


def detail_table(rows: list[Row]) -> list[str]:
    lines = [
        "| model | batches | batch shape | modules | points observed (ours) | ours first calibration ms/batch "
        "(x plain) | ours evaluate ms | reference prepare s | reference observers | reference generate_model_report ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        prep = f"{row.ref_prepare_s:.2f}" if row.ref_prepare_s is not None else "-"
        report = row.ref_report_failure and "fails" or fmt_ms(row.ref_report_ms)
        first = "-"
        if row.ours_first_ms is not None:
            ratio = row.ours_first_ms / row.plain_ms if row.plain_ms else None
            first = f"{fmt_ms(row.ours_first_ms)} ({fmt_ratio(ratio)})"
        lines.append(
            f"| {row.label} | {row.batches} | {row.batch_shape} | {row.modules} | {row.points} | {first} | "
            f"{fmt_ms(row.evaluate_ms)} | {prep} | {row.ref_observers or '-'} | {report} |"
        )
    return lines


def notes(rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        for note in row.notes:
            lines.append(f"- {row.label}: {note}.")
        if row.ref_report_failure:
            lines.append(
                f"- † {row.label}: the reference's calibration ran, but `generate_model_report()` "
                f"failed: {row.ref_report_failure}"
            )
    lines.append(
        "- ours first calibration: the session's first `calibrate` (the warm-up, one sample, beside the median plain "
        "time). The timed repeats reuse what a session keeps between calibrations: the observing forward wrappers, "
        "the observation plan for equal settings, unchanged weights' ranges, and the channel-axis decisions when the "
        "first batch has the same shapes (no discovery pass); results are identical to a fresh session's (tested)."
    )
    lines.append(
        "- plain: `model.eval()`, `torch.no_grad()`; ours: `Session.calibrate` end to end (observing wrappers "
        "installed and removed, stats frozen), all four detectors; reference: the batches through `prepare_fx(deepcopy(model), "
        'get_default_qconfig_mapping("x86"))` after `ModelReport(...).prepare_detailed_calibration()` with '
        'PerChannelDetector("x86"), DynamicStaticDetector(), InputWeightEqualizationDetector(0.5), '
        "OutlierDetector(); its time includes the default qconfig's observers that `prepare_fx` inserts, as its "
        "documented workflow requires. Preparation and report generation are timed apart (table above)."
    )
    return lines


def run_suite(args: argparse.Namespace, device: torch.device, out: list[str]) -> dict[str, Any]:
    """The other benchmarks of the targets, in this process: measured error (plan evaluation, what-if
    toggle, local SQNR: ``quantsim_bench``), merged calibration batches, the app's toggle from key to
    header on large_generated and the planner. Each writes its own section of results.md (unless
    ``--no-write``); ``--quick`` runs the smallest of each and says what it left out."""
    from benchmarks import merged_calibration, quantsim_bench
    from benchmarks.targets import QUANTSIM_SAMPLES

    found: dict[str, Any] = {"quantsim": {}, "merged": None, "toggle": None, "why_not": {}}
    why_not = found["why_not"]
    if device.type != "cpu":
        for part in ("quantsim", "merged", "toggle"):
            why_not[part] = "CPU benchmarks (run without --device cuda)"
        return found
    samples = [("drifting_mlp", 2)] if args.quick else list(QUANTSIM_SAMPLES)
    if args.quick:
        why_not["quantsim"] = "--quick measures drifting_mlp only (2 probes)"
    rows = []
    for name, k in samples:
        log(f"measured error: {name} ({k} probes) ...")
        t = time.perf_counter()
        local_repeats = 1 if name == "large_generated" else None
        try:
            row = quantsim_bench.bench(
                name, args.repeats, k, with_floors=False, with_advice=False, local_repeats=local_repeats
            )
        except Exception as exc:  # noqa: BLE001 - the list says why
            why_not["quantsim"] = f"{name} failed: {describe_failure(exc)}"
            continue
        found["quantsim"][name] = row
        rows.append(row)
        log(f"{name} done in {time.perf_counter() - t:.1f} s")
    command = (
        f"python -m benchmarks.quantsim_bench --probes 4 --threads 1 --repeats {args.repeats} --no-floors --no-advice"
    )
    quantsim_bench.section(
        rows, torch.get_num_threads(), args.repeats, True, command + " (from benchmarks.run)", write=not args.no_write
    )

    log("merged calibration batches ...")
    merged_models = ("large_generated",) if args.quick else merged_calibration.DEFAULT
    merged_argv = ["--models", ",".join(merged_models), "--repeats", str(args.repeats)] + (
        ["--no-write"] if args.no_write else []
    )
    try:
        with contextlib.redirect_stdout(sys.stderr):
            merged_rows = merged_calibration.run(merged_argv)
    except Exception as exc:  # noqa: BLE001 - the list says why
        why_not["merged"] = f"failed: {describe_failure(exc)}"
        merged_rows = []
    for key, _n, _shape, p, _one, _merged, _folded, same, r_one, r_merged in merged_rows:
        if key == "large_generated":
            found["merged"] = {"plain_ms": p, "one": r_one, "merged": r_merged, "same": "yes" if same else "NO"}

    if args.quick:
        why_not["toggle"] = "not run with --quick (the app calibrates and measures large_generated first, ~1 min)"
        why_not["planner"] = "not run with --quick"
    else:
        from benchmarks import app_toggle

        log("app: what-if toggle on large_generated, key to header ...")
        try:
            with contextlib.redirect_stdout(sys.stderr):
                found["toggle"] = app_toggle.measure("large_generated", batches=8, toggles=6)
        except Exception as exc:  # noqa: BLE001 - the list says why
            why_not["toggle"] = f"failed: {describe_failure(exc)}"
        log(f"app toggle: {found['toggle']}")
        log("planner sensitivity ...")
        try:
            out.append(planner_line(args))
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            out.append(f"- planner sensitivity: failed: {describe_failure(exc)}")
    return found


def planner_line(args: argparse.Namespace) -> str:
    """The planner's sensitivity on the tests' small LLaMA (no target; its own section of results.md)."""
    from benchmarks import planner_bench

    started = time.perf_counter()
    planner_rows = [planner_bench.measure(64, 2, 2, 2, 16, False)]
    text = planner_bench.render(planner_rows, 2, time.perf_counter() - started)
    if not args.no_write:
        planner_bench.write_section(text)
    r = planner_rows[0]
    return (
        f"- planner sensitivity ({r['model']}): {r['full_s']:.1f} s uncached, {r['merged_s']:.1f} s cached and "
        f"merged ({r['full_s'] / r['merged_s']:.1f}x, identical: {'yes' if r['identical'] else 'NO'}); "
        "`python -m benchmarks.planner_bench --configs 64x2:2x16` (no target)"
    )


def resolve_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit(
            f"error: --device {name} was given but CUDA is not available "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}; "
            f"{torch.cuda.device_count()} CUDA devices visible). Install a CUDA build of torch "
            "or run with --device cpu."
        )
    return torch.device("cuda", torch.cuda.current_device())


def command_line(argv: list[str]) -> str:
    exe = Path(sys.executable)
    try:
        python = str(exe.relative_to(Path.cwd()))
    except ValueError:
        python = "python"
    return " ".join([python, "-m", "benchmarks.run", *map(shlex.quote, argv)])


def parse_args(argv: list[str]) -> argparse.Namespace:
    cases = all_cases()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Time plain forward vs tui-quantreport calibration vs torch's ModelReport.",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up (default 3)")
    parser.add_argument(
        "--batches",
        type=int,
        default=None,
        help="batches per model, cycling the sample's own (default: the sample's count; "
        "large_activation: 2, at most 4)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated, from: {', '.join(cases)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 2 batches, implies --no-write")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {RESULTS.name}")
    parser.add_argument("--skip-extras", action="store_true", help="only the main table")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in cases]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(cases)}")
    if args.threads < 1 or args.repeats < 1 or (args.batches is not None and args.batches < 1):
        parser.error("--threads, --repeats and --batches must be >= 1")
    if args.quick:
        args.repeats = 1
        args.batches = args.batches or 2
        args.no_write = True
    return args


def selection_line() -> str:
    """Which per-channel selection the host path uses in this run (the optional kernel or not)."""
    from tui_quantreport.engine.stats import kernel

    mode = kernel.mode()
    if mode == "torch" or not kernel.available():
        why = f"{kernel.ENV}=torch" if mode == "torch" else kernel.unavailable_reason()
        return f"NumPy path everywhere ({why})"
    import numba

    where = (
        "every host float32 tensor"
        if mode == "numba"
        else f"host float32 tensors of {kernel.AUTO_MIN_NUMEL:,}+ elements"
    )
    return f"numba {numba.__version__} kernel on {where}, NumPy path elsewhere"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    machine = describe(device)
    machine["selection"] = selection_line()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"threads: {torch.get_num_threads()}  torch: {torch.__version__}  CPU: {cpu_model()}")
    print(
        f"device: {device}{f' ({gpu})' if gpu else ''}  repeats: {args.repeats} (+1 warm-up)  models: {', '.join(args.models)}"
    )
    if args.repeats < 3 and not args.quick:
        print("note: fewer than 3 repeats; medians are less reliable")
    sys.stdout.flush()

    started = time.perf_counter()
    suffix = f" [{gpu}]" if gpu else ""
    rows = []
    for key in args.models:
        log(f"{key} ...")
        t = time.perf_counter()
        rows.append(bench_case(key, device, args.repeats, args.batches, suffix))
        release_memory(device)
        log(f"{key} done in {time.perf_counter() - t:.1f} s")

    reeval = memory = launch = None
    if not args.skip_extras:
        log("re-evaluation on large_generated ...")
        reeval = extras.reevaluation(device, runs=5 if args.quick else 11)
        log("stats memory on drifting_mlp ...")
        memory = extras.stats_memory(device)
        if device.type == "cpu":
            log("app launch (subprocess) ...")
            launch = extras.app_launch()
    suite_lines: list[str] = []
    if args.skip_extras:
        skipped = "--skip-extras runs the calibration table only"
        suite: dict[str, Any] = {
            "quantsim": {},
            "merged": None,
            "toggle": None,
            "why_not": dict.fromkeys(("quantsim", "merged", "toggle", "extras"), skipped),
        }
    else:
        suite = run_suite(args, device, suite_lines)
    models_left = {
        "calibration:" + m: f"not in --models ({', '.join(args.models)})" for m in all_cases() if m not in args.models
    }
    suite["why_not"].update(models_left)

    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    machine_line = "; ".join(f"{k}: {v}" for k, v in machine.items())
    key = "cpu" if device.type == "cpu" else f"cuda: {gpu}"
    title = "CPU" if device.type == "cpu" else f"CUDA: {gpu}"
    out = [
        f"## {title}",
        "",
        f"Machine: {machine_line}.  ",
        f"Date: {when}. Repeats: {args.repeats} after 1 warm-up, medians; threads fixed at {torch.get_num_threads()}.",
        "",
        *main_table(rows),
        "",
        *detail_table(rows),
        "",
        *notes(rows),
        "",
    ]
    if not args.skip_extras:
        out += ["### Other measurements", ""]
        out.append(
            f"- re-evaluation after a threshold change (large_generated, {reeval['modules']} modules, "
            f"{reeval['points']} points): median {fmt_ms(reeval['median_ms'])} ms over {reeval['runs']} runs, "
            f'each `Evaluator.evaluate(stats, settings.with_param("dynamic_vs_static_detector", "tolerance", t))` '
            f"with a t not used before (0.30, 0.31, ...). For context: a value seen before (0.3/0.5 alternating, "
            f"served from the evaluator's per-stats cache) {fmt_ms(reeval['cached_ms'])} ms; the first evaluate of a "
            f"fresh snapshot (all four detectors + module summaries) {fmt_ms(reeval['first_ms'])} ms"
        )
        a, b = memory[0], memory[-1]
        growth = b["bytes"] / a["bytes"] if a["bytes"] else float("nan")
        out.append(
            f"- stats snapshot size (drifting_mlp, {a['points']} points, tensors in `Stats.points` + `Stats.weights`): "
            f"{fmt_bytes(a['bytes'])} ({a['bytes']:,} B) after {a['batches']} batches vs "
            f"{fmt_bytes(b['bytes'])} ({b['bytes']:,} B) after {b['batches']} batches: x{growth:.2f}"
        )
        if launch is None:
            out.append("- app launch to populated tree: measured in the CPU section only")
        elif launch.get("ok"):
            out.append(
                f"- app launch to populated tree (large_generated, fresh process incl. `import torch`, headless "
                f"`run_test` at {launch.get('size', '?')}): {launch['seconds']:.2f} s until the {launch.get('widget', 'Tree')} held "
                f"{launch['nodes']:,} nodes, the first time this model is opened (no kept tree)"
            )
            if launch.get("warm_seconds") is not None:
                out.append(
                    f"- the same, launched again: {launch['warm_seconds']:.2f} s until the tree (kept from the "
                    "first launch, read before `import torch`) was shown; the model itself had loaded at "
                    f"{launch.get('warm_loaded_seconds') or float('nan'):.2f} s"
                )
            if launch.get("torch_import_seconds") is not None:
                out.append(
                    f"- a fresh interpreter's `import torch` alone (spawn to imported, nothing else): "
                    f"{launch['torch_import_seconds']:.2f} s"
                )
        else:
            out.append(f"- app: not measured ({launch.get('reason', 'unknown reason')})")
        out += suite_lines
        if device.type == "cpu":
            out.append(
                "- measured error, merged calibration, app toggle and planner: their own sections of "
                "`benchmarks/results.md` (`quantsim: cpu`, `merged calibration: cpu`, `planner: cpu`), "
                "measured in this run" + (" (not written: --no-write)" if args.no_write else "")
            )
        out.append("")
    out += [
        "### Against the targets (CPU, 1 thread)"
        if device.type == "cpu"
        else "### Against the CPU targets (for reference)",
        "",
    ]
    lines = against(
        calibration={
            r.key: {
                "ours_over_plain": r.ours_over_plain,
                "ref_over_ours": r.ref_over_ours,
                "unfused_over_plain": r.unfused_over_plain,
                "no_percentiles_over_plain": r.no_percentiles_over_plain,
                "failure": r.ours_failure,
            }
            for r in rows
        },
        quantsim=suite["quantsim"],
        merged=suite["merged"],
        toggle=suite["toggle"],
        reeval=reeval,
        launch=launch,
        device=device.type,
        why_not=suite["why_not"],
        repeats=args.repeats,
    )
    out += [line.render() for line in lines]
    out += ["", f"Command: `{command_line(argv)}` (total {time.perf_counter() - started:.0f} s)", ""]

    text = "\n".join(out)
    print()
    print(text)
    if not args.no_write:
        header = "\n".join(
            [
                f"Machine: {machine_line}.  ",
                f"Date: {when}.",
            ]
        )
        write_results(RESULTS, key, text, header)
        print(f"written: {os.path.relpath(RESULTS)} (section '{key}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
