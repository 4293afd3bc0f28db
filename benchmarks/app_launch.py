"""Child process of the app-launch measurement: ``python -m benchmarks.app_launch SPEC MIN_NODES TIMEOUT``.

Starts ``QuantReportApp(spec=SPEC)`` headless (``App.run_test``) and polls until
a ``Tree`` widget holds at least MIN_NODES nodes. Prints one JSON line:
``{"ok": true, "seconds": ..., "nodes": ...}`` or ``{"ok": false, "reason": ...}``.
Never raises: the parent reports "app: not measured (reason)".
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def _t0() -> float:
    try:
        return float(os.environ["TUI_QUANTREPORT_BENCH_T0"])
    except (KeyError, ValueError):
        return _STARTED


def _emit(**fields) -> None:
    sys.stdout.write("\n" + json.dumps(fields) + "\n")
    sys.stdout.flush()


def _count_nodes(tree) -> int:
    nodes = getattr(tree, "_tree_nodes", None)
    if isinstance(nodes, dict):
        return len(nodes)
    count, stack = 0, [tree.root]
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(getattr(node, "children", ()))
    return count


def _largest_tree(app) -> tuple[int, str]:
    from textual.widgets import Tree

    best, name = 0, ""
    roots = [app]
    try:
        roots.append(app.screen)
    except Exception:
        pass
    for root in roots:
        try:
            found = list(root.query(Tree))
        except Exception:
            continue
        for tree in found:
            n = _count_nodes(tree)
            if n > best:
                best, name = n, type(tree).__name__
    return best, name


#: The headless terminal size (columns, rows) of the measurement.
SIZE = (160, 50)


async def _measure(spec: str, min_nodes: int, timeout: float) -> dict:
    try:
        from tui_quantreport.tui.app import QuantReportApp
    except Exception as exc:  # the app is optional for the benchmark
        return {"ok": False, "reason": f"app not importable: {type(exc).__name__}: {exc}"}
    try:
        try:
            app = QuantReportApp(spec=spec)
        except TypeError:
            app = QuantReportApp(spec)
    except Exception as exc:
        return {"ok": False, "reason": f"QuantReportApp({spec!r}) failed: {type(exc).__name__}: {exc}"}
    t0 = _t0()
    deadline = time.perf_counter() + timeout
    seen, widget = 0, ""
    try:
        async with app.run_test(headless=True, size=SIZE) as pilot:
            while time.perf_counter() < deadline:
                seen, widget = _largest_tree(app)
                if seen >= min_nodes:
                    result = {
                        "ok": True,
                        "seconds": time.perf_counter() - t0,
                        "in_process_seconds": time.perf_counter() - _STARTED,
                        "nodes": seen,
                        "widget": widget,
                        "size": f"{SIZE[0]}x{SIZE[1]}",
                    }
                    # Then until the model itself has loaded (the tree may be the one kept from the
                    # last run), and until the app has kept this tree for the next launch.
                    while time.perf_counter() < deadline and not getattr(app.main, "loaded", True):
                        await pilot.pause(0.01)
                    result["loaded_seconds"] = time.perf_counter() - t0
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(
                            app.workers.wait_for_complete(), max(0.1, deadline - time.perf_counter())
                        )
                    return result
                await pilot.pause(0.01)
    except Exception as exc:
        return {
            "ok": False,
            "reason": f"the app raised {type(exc).__name__} at {SIZE[0]}x{SIZE[1]}: {str(exc)[:160]}",
        }
    where = f"the largest Tree ({widget}) had {seen} nodes" if widget else "no Tree widget was found"
    return {"ok": False, "reason": f"tree not populated within {timeout:g} s: {where}"}


def main() -> None:
    spec = sys.argv[1] if len(sys.argv) > 1 else "large_generated"
    min_nodes = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    try:
        result = asyncio.run(_measure(spec, min_nodes, timeout))
    except BaseException as exc:  # noqa: BLE001
        result = {"ok": False, "reason": f"{type(exc).__name__}: {str(exc)[:160]}"}
    _emit(**result)
    os._exit(0)  # do not wait for worker threads the app may have left running


if __name__ == "__main__":
    main()
