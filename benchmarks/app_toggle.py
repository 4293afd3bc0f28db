"""What-if toggle latency in the app: ``python -m benchmarks.app_toggle [--model large_generated]
[--batches 8] [--toggles 6] [--size 120x40]``.

Drives the real app headless (Textual's ``run_test``, as a user with Pilot): calibrates, waits for
the measurement, then for each of ``--toggles`` quantizable modules spread over the model moves
the tree's cursor there, presses ``f`` and times until the header shows the plan's new end-to-end
SQNR (the plan no longer pending, its value in the header's text, the screen refreshed). Each
toggle is a plan not evaluated before (no cache hit). It splits the time into: key (``f`` to
the new plan set, its redraws included), debounce (until the worker starts: :data:`PLAN_DELAY`
for changes in quick succession, none for a single one), engine (the plan evaluation in the
worker), header (the result message handled, the header's text set) and paint (until the next screen
update: the header on screen).
It also times the engine alone on the same kind of plan with the UI idle, for comparison, and the
floor under it: the float model's plain forward over the same probe rows (merged as the evaluation
runs them), which any evaluation of a new plan must at least run. A benchmark,
not a test: prints a table, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from argparse import Namespace
from typing import Any


def _options(model: str, batches: int) -> Namespace:
    from tui_quantreport.cli import app_options

    return app_options(model, batches=batches)


def _instrument(app, main, marks: dict[str, float], state: dict) -> Any:
    """Mark the toggle's moments in ``marks``: the plan set, its evaluation's start and end, the
    header's text set (``state["ready"]``) and the screen updated after it (``state["painted"]``);
    returns the analysis's own ``plan_sqnr``."""
    from tui_quantreport.tui.panes.sqnr_panel import sqnr_text

    analysis = main.measured.analysis
    real_plan_sqnr = analysis.plan_sqnr

    def timed_plan_sqnr(plan, should_cancel=None):
        # Only the evaluation of the plan the key made: the measurement of what limits the new
        # plan (started once its SQNR is in) also calls plan_sqnr and must not move the marks.
        mine = plan is state.get("plan") and "eval_start" not in marks
        if mine:
            marks["eval_start"] = time.perf_counter()
        try:
            return real_plan_sqnr(plan, should_cancel)
        finally:
            if mine:
                marks["eval_end"] = time.perf_counter()

    analysis.plan_sqnr = timed_plan_sqnr
    real_set_plan = main.set_plan

    def timed_set_plan(plan):
        state["plan"] = plan
        real_set_plan(plan)
        marks["plan_set"] = time.perf_counter()

    main.set_plan = timed_set_plan

    def header_changed(value: str) -> None:
        # The header shows the new plan's SQNR: not pending, the evaluated value in its text. (The
        # key keeps the module float, or quantizes it again when a kept edited plan already had it
        # float: the plan the key made, either way.)
        ready = state["ready"]
        if (
            not main.plan_pending
            and "eval_end" in marks
            and main.plan is state["plan"]
            and sqnr_text(main.plan_sqnr) in value
            and not ready.is_set()
        ):
            marks["header"] = time.perf_counter()
            ready.set()

    main.watch(app, "sub_title", header_changed, init=False)
    screen = app.screen
    real_refresh = screen._compositor_refresh

    def timed_refresh() -> None:
        # The first screen update after the header's text changed: the header is on the screen.
        real_refresh()
        if "header" in marks and "paint" not in marks:
            marks["paint"] = time.perf_counter()
            state["painted"].set()

    screen._compositor_refresh = timed_refresh  # type: ignore[method-assign]
    return real_plan_sqnr


async def _run(
    model: str,
    batches: int,
    toggles: int,
    size: tuple[int, int],
    engine_alone: list[float],
    profile=None,
    plain_forward: list[float] | None = None,
) -> list[dict[str, float]]:
    from textual import events

    from tui_quantreport.tui import main_screen as ms
    from tui_quantreport.tui.app import QuantReportApp
    from tui_quantreport.tui.panes.module_tree import ModuleTree
    from tui_quantreport.tui.panes.sqnr_panel import sqnr_text

    app = QuantReportApp(model, _options(model, batches))
    marks: dict[str, float] = {}
    async with app.run_test(size=size) as pilot:
        main = app.main

        async def idle() -> None:
            for _ in range(100000):
                await app.workers.wait_for_complete()
                await pilot.pause()
                if not any(w.is_running for w in app.workers) and not main.measuring and main.loaded:
                    return

        started = time.perf_counter()
        await idle()
        print(f"loaded in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        await pilot.press("c")
        while main.measured is None or main.measuring or main.calibrating:
            await idle()
        print(
            f"calibrated ({batches} batches) and measured in {time.perf_counter() - started:.1f} s; "
            f"plan {sqnr_text(main.plan_sqnr)}, {len(main.plan.modules):,} quantizable modules"
        )

        state: dict = {"target": None, "plan": None, "ready": asyncio.Event(), "painted": asyncio.Event()}
        real_plan_sqnr = _instrument(app, main, marks, state)
        tree = app.query_one(ModuleTree)
        modules = list(main.plan.modules)
        step = max(1, len(modules) // toggles)
        rows = []
        for fqn in modules[::step][:toggles]:
            tree.reveal(fqn)
            tree.focus()
            for _ in range(200):  # the detail view follows the cursor
                await pilot.pause(0.01)
                if main.detail_fqn == fqn:
                    break
            await idle()
            marks.clear()
            ready = state["ready"] = asyncio.Event()
            painted = state["painted"] = asyncio.Event()
            state["plan"] = None
            state["target"] = fqn
            if profile is not None:
                profile.enable()
            t0 = time.perf_counter()
            # The key as a terminal delivers it, without Pilot's waits (press() also waits for every
            # widget and forces refreshes, which would compete with the worker for the GIL).
            app.post_message(events.Key("f", "f"))
            await asyncio.wait_for(ready.wait(), 120)
            # Not pilot.pause(): it waits for the whole process to go idle, i.e. for the measurement
            # of what limits the new plan, which starts once the header has its value.
            await asyncio.wait_for(painted.wait(), 120)
            done = marks["paint"]
            if profile is not None:
                profile.disable()
            rows.append(
                {
                    "module": fqn,
                    "total": done - t0,
                    "key": marks["plan_set"] - t0,
                    "debounce": marks["eval_start"] - marks["plan_set"],
                    "engine": marks["eval_end"] - marks["eval_start"],
                    "header": marks["header"] - marks["eval_end"],
                    "paint": done - marks["header"],
                }
            )
        print(f"debounce (PLAN_DELAY) {ms.PLAN_DELAY * 1000:.0f} ms")
        # The engine alone, in the same process with the UI idle: the same kind of change (one more
        # module kept float), each a plan not evaluated before.
        base = main.plan
        for fqn in modules[step // 2 :: step][:toggles]:
            plan = base.with_scheme([fqn], "float")
            t0 = time.perf_counter()
            real_plan_sqnr(plan)
            engine_alone.append(time.perf_counter() - t0)
        if plain_forward is not None:
            plain_forward.extend(_plain_forwards(main.measured.analysis, toggles))
    return rows


def _plain_forwards(analysis, times: int) -> list[float]:
    """The floor under the engine: the float model's plain forward over the same probe rows, as the
    evaluation runs them (one merged batch where the probes merge), nothing simulated, no SQNR."""
    import torch

    from tui_quantreport.engine.batches import call_batch
    from tui_quantreport.engine.model_lock import model_lock

    merged = analysis._merged_probes()
    batches = [merged.batch] if merged is not None else list(analysis.probes)
    seconds = []
    with model_lock(analysis.model), torch.no_grad():
        for _ in range(times + 1):
            t0 = time.perf_counter()
            for batch in batches:
                call_batch(analysis.model, batch)
            seconds.append(time.perf_counter() - t0)
    return seconds[1:]  # after one warm-up


def measure(
    model: str = "large_generated", batches: int = 8, toggles: int = 6, size: tuple[int, int] = (120, 40)
) -> dict:
    """Medians in ms (key to header, and its parts) of ``toggles`` toggles in the headless app; for
    ``benchmarks.run``'s target list."""
    engine_alone: list[float] = []
    plain: list[float] = []
    rows = asyncio.run(_run(model, batches, toggles, size, engine_alone, plain_forward=plain))
    totals = [r["total"] * 1e3 for r in rows]
    return {
        "total_ms": statistics.median(totals),
        "min_ms": min(totals),
        "max_ms": max(totals),
        "engine_ms": statistics.median(r["engine"] * 1e3 for r in rows),
        "paint_ms": statistics.median(r["paint"] * 1e3 for r in rows),
        "engine_alone_ms": statistics.median(v * 1e3 for v in engine_alone),
        "plain_forward_ms": statistics.median(v * 1e3 for v in plain),
        "toggles": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="large_generated")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--toggles", type=int, default=6)
    parser.add_argument("--size", default="120x40")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads before the app starts (default: torch's own; the app then leaves one "
        "core to the UI, unless OMP_NUM_THREADS is set)",
    )
    parser.add_argument("--profile", action="store_true", help="profile the UI thread from f to the header")
    args = parser.parse_args()
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"torch threads before the app: {torch.get_num_threads()} (the app's workers use one fewer unless "
        "OMP_NUM_THREADS is set)"
    )
    width, height = (int(v) for v in args.size.split("x"))
    engine_alone: list[float] = []
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
    plain: list[float] = []
    rows = asyncio.run(_run(args.model, args.batches, args.toggles, (width, height), engine_alone, profile, plain))
    keys = ("total", "key", "debounce", "engine", "header", "paint")
    print(f"\n{'module':<40} " + " ".join(f"{k:>8}" for k in keys) + "  (ms)")
    for r in rows:
        print(f"{r['module'][-40:]:<40} " + " ".join(f"{r[k] * 1e3:8.0f}" for k in keys))
    for key in keys:
        values = [r[key] * 1e3 for r in rows]
        print(f"median {key:<9} {statistics.median(values):7.0f} ms  (min {min(values):.0f}, max {max(values):.0f})")
    alone = [v * 1e3 for v in engine_alone]
    print(
        f"engine alone (plan_sqnr, UI idle): median {statistics.median(alone):.0f} ms "
        f"(min {min(alone):.0f}, max {max(alone):.0f})"
    )
    print(
        f"plain forward over the same probes (float model, nothing simulated): median "
        f"{statistics.median(plain) * 1e3:.0f} ms (min {min(plain) * 1e3:.0f}, max {max(plain) * 1e3:.0f})"
    )
    if profile is not None:
        import pstats

        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
