"""Calibrating a ``torch.export`` / PT2E graph: the same loop as :class:`.session.Session`, observed at nodes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.batches import ObserverFault, batch_count, first_tensor
from tui_quantreport.engine.errors import CalibrationCancelled, CalibrationError
from tui_quantreport.engine.graph import GraphView, is_exported_graph
from tui_quantreport.engine.graph_runner import GraphRunner, _Sites, freeze_graph_state, weight_ranges
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.observer import _Observer
from tui_quantreport.engine.stats import (
    Stats,
)


def _graph_view(model: nn.Module, catalog: ModelCatalog) -> Any:
    return GraphView(model, catalog) if is_exported_graph(model) else None  # type: ignore[arg-type]


def _calibrate_graph(
    session: Any,
    batches: Iterable[Any],
    plan: Mapping[tuple[str, str], Any],
    *,
    max_batches: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Any:
    """:meth:`Session.calibrate` for an exported graph: the same loop, observed at nodes."""
    view: GraphView = session.graph
    total = batch_count(batches)
    if max_batches is not None:
        total = max_batches if total is None else min(total, max_batches)
    observer = _Observer(session.catalog)
    for point, request in plan.items():
        if point[0] in session.catalog.modules:
            observer.request(point, request)
    sites = _Sites(view, observer.accumulators)
    inputs: dict[str, Any] = {}  # invocation key -> its input value (first batch: producer tags need it)

    on_value = _node_observer(observer, sites, inputs)
    runner = GraphRunner(view, sites.nodes, on_value)
    restore = freeze_graph_state(view.gm)
    done = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if max_batches is not None and done >= max_batches:
                    break
                if should_cancel is not None and should_cancel():
                    raise CalibrationCancelled()
                observer.new_batch()
                runner.failed_at = None
                try:
                    runner.run(*view.flat_inputs(batch), enable_io_processing=False)
                except ObserverFault:
                    raise
                except Exception as exc:
                    raise _graph_rejected(session, runner.failed_at, done + 1, exc) from exc
                finally:
                    runner.env = {}
                observer.end_batch()
                inputs.clear()
                done += 1
                if progress is not None:
                    progress(done, total)
    finally:
        observer.end_discovery()
        observer.new_batch()
        inputs.clear()
        restore()
    points = {key: acc.freeze() for key, acc in observer.accumulators.items()}
    return Stats(batches=done, points=points, weights=weight_ranges(view), layouts=dict(observer.layouts))


def _node_observer(observer: _Observer, sites: _Sites, inputs: dict[str, Any]) -> Callable[[torch.fx.Node, Any], None]:
    """The graph runner's callback: observe each value at the invocations it starts or ends
    (first batch: also feed the layout tracker, which needs each invocation's input)."""
    tracker = observer.tracker

    def on_value(node: torch.fx.Node, value: Any) -> None:
        try:
            for inv, observed in sites.ends.get(node, ()):
                if tracker.discovering:
                    source = inputs.get(inv.key)
                    tracker._producer_hook(inv.fqn)(None, (source,) if source is not None else (), {}, value)
                if observed:
                    observer.observe((inv.fqn, "post"), first_tensor(value))
            for inv, observed in sites.starts.get(node, ()):
                if tracker.discovering:
                    inputs[inv.key] = value
                    tracker._consumer_hook(inv.fqn)(None, (value,), {})
                if observed:
                    observer.observe((inv.fqn, "pre"), first_tensor(value))
        except Exception as exc:
            raise ObserverFault(f"tui-quantreport failed while observing: {type(exc).__name__}: {exc}") from exc

    return on_value


def _graph_rejected(session: Any, node: torch.fx.Node | None, index: int, exc: Exception) -> Exception:
    module = session.graph.module_of(node) if node is not None else None
    where = ""
    if module:
        info = session.catalog.modules.get(module)
        where = f" in module '{module}' ({info.class_name if info else 'unknown'})"
    elif node is not None:
        where = f" in the model's own forward ({session.catalog.class_name})"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CalibrationError(
        f"batch {index} was rejected{where}: {type(exc).__name__}: {detail}", batch=index, module=module
    )
