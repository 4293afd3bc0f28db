"""The measurements beside the main table: re-evaluation, stats memory, app launch."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import to_device

REPO_ROOT = Path(__file__).resolve().parent.parent


def reevaluation(device: torch.device, runs: int = 11) -> dict[str, Any]:
    """evaluate() after a threshold change on large_generated (2,000+ modules), median ms.

    An ``Evaluator`` keeps each detector's report per (stats, parameters), so a
    value seen before is a cache hit: the headline number changes the
    dynamic-vs-static tolerance to a value not used before on every run
    (0.30, 0.31, ...). A value already seen (alternating 0.3 / 0.5) and the
    first evaluation of a fresh snapshot (every detector, module summaries)
    are reported beside it.
    """
    from tui_quantreport.engine import Evaluator, Session, Settings, load_model

    loaded = load_model("large_generated")
    model = loaded.model.to(device)
    batches = to_device(list(loaded.batches_factory()), device)
    session = Session(model, label="large_generated")
    settings = Settings.build()
    stats = session.calibrate(batches, settings)
    evaluator = Evaluator(session.catalog)

    def once(tolerance: float | None) -> float:
        started = time.perf_counter()
        chosen = (
            settings if tolerance is None else settings.with_param("dynamic_vs_static_detector", "tolerance", tolerance)
        )
        evaluator.evaluate(stats, chosen)
        return (time.perf_counter() - started) * 1e3

    first_ms = once(None)  # first evaluation of a fresh snapshot
    new_values = [once(round(0.30 + 0.01 * i, 2)) for i in range(runs)]
    seen_values = [once(t) for t in itertools.islice(itertools.cycle((0.3, 0.5)), runs)]
    return {
        "modules": len(session.catalog.modules),
        "points": len(stats.points),
        "first_ms": first_ms,
        "median_ms": statistics.median(new_values),
        "cached_ms": statistics.median(seen_values),
        "runs": runs,
    }


def tensor_bytes(value: Any, seen: set[int] | None = None) -> int:
    """Bytes of every tensor reachable from a Stats snapshot (dataclasses, dicts, sequences)."""
    seen = set() if seen is None else seen
    if isinstance(value, torch.Tensor):
        if id(value) in seen:
            return 0
        seen.add(id(value))
        return value.element_size() * value.nelement()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(tensor_bytes(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(tensor_bytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in value)
    return 0


def stats_memory(device: torch.device, counts: tuple[int, ...] = (10, 100)) -> list[dict[str, Any]]:
    """Bytes held by the Stats snapshot after N batches of drifting_mlp (batches repeated cyclically)."""
    from tui_quantreport.engine import Session, Settings, load_model

    loaded = load_model("drifting_mlp")
    model = loaded.model.to(device)
    base = to_device(list(loaded.batches_factory()), device)
    session = Session(model, label="drifting_mlp")
    settings = Settings.build()
    rows = []
    for n in counts:
        batches = list(itertools.islice(itertools.cycle(base), n))
        stats = session.calibrate(batches, settings)
        rows.append(
            {
                "batches": stats.batches,
                "bytes": tensor_bytes(stats),
                "point_bytes": tensor_bytes(stats.points),
                "weight_bytes": tensor_bytes(stats.weights),
                "points": len(stats.points),
            }
        )
    return rows


def app_launch(spec: str = "large_generated", min_nodes: int = 2000, timeout_s: float = 20.0) -> dict[str, Any]:
    """Seconds from spawning a fresh interpreter until the app's module tree holds >= min_nodes nodes,
    first with no kept tree (``seconds``: the first launch of a model), then again with the tree the
    first launch kept (``warm_seconds``: every later launch; the tree is shown before torch is
    imported, and ``warm_loaded_seconds`` is when the model itself had loaded). Both in a private
    XDG_CACHE_HOME / XDG_CONFIG_HOME, so the user's own are neither read nor written."""
    with tempfile.TemporaryDirectory(prefix="tqr-launch-") as home:
        env = dict(os.environ, XDG_CACHE_HOME=f"{home}/cache", XDG_CONFIG_HOME=f"{home}/config")
        cold = _launch_once(spec, min_nodes, timeout_s, env)
        if not cold.get("ok"):
            return cold
        warm = _launch_once(spec, min_nodes, timeout_s, env)
    if warm.get("ok"):
        cold["warm_seconds"], cold["warm_loaded_seconds"] = warm["seconds"], warm.get("loaded_seconds")
    else:
        cold["warm_reason"] = warm.get("reason", "unknown")
    torch_import = torch_import_seconds()
    if torch_import is not None:
        cold["torch_import_seconds"] = torch_import
    return cold


def torch_import_seconds(timeout_s: float = 120.0) -> float | None:
    """Seconds a fresh interpreter takes from its spawn to the end of ``import torch``, nothing else
    (what the first launch of a model cannot do without: the model is built by torch code); None if
    it fails. The same clock as :func:`_launch_once`."""
    code = "import os, time, torch; print(time.perf_counter() - float(os.environ['T0']))"
    env = dict(os.environ, T0=repr(time.perf_counter()))
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
        )
        return float(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def _launch_once(spec: str, min_nodes: int, timeout_s: float, env: dict[str, str]) -> dict[str, Any]:
    """One launch. The child (benchmarks/app_launch.py) reports ``time.perf_counter() - T0``
    where T0 is this process's ``perf_counter()`` just before the spawn
    (CLOCK_MONOTONIC, shared by both processes on Linux), so interpreter start,
    ``import torch`` and building the model all count.
    """
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "benchmarks.app_launch", spec, str(min_nodes), str(timeout_s)]
    env["TUI_QUANTREPORT_BENCH_T0"] = repr(time.perf_counter())
    try:
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s + 60,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"the app process did not finish within {timeout_s + 60:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and '"ok"' in line:
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "reason": f"the app process exited with code {done.returncode}: {tail[:160]}"}
