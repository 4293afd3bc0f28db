"""SQNR along the network's depth under a plan: at each quantizable module's input, the data the
plan's model feeds it (everything before it quantized as the plan says) against the float model's.

Local SQNR says how much error a module adds by itself; this says how much has built up by the
time the data reaches it (the last point, the model's output, is the plan's end-to-end SQNR), so a
plot along depth shows where the end-to-end SQNR is lost. Inputs, not outputs: a static module's
raw output does not exist in a converted model (it is fused with its ReLU and emitted as int8),
while what the next module reads does. Two passes over the probe batches (the float model, then
the plan's) with forward pre-hooks on the quantizable modules, seen before the module quantizes
its own input; a module called several times per batch is compared call by call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from tui_quantreport.engine.batches import first_tensor
from tui_quantreport.engine.quantsim.analysis_base import _check_cancel
from tui_quantreport.engine.quantsim.sqnr import Sqnr, SqnrAccumulator

if TYPE_CHECKING:
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis


def depth_sqnr(analysis: ErrorAnalysis, plan: Plan, should_cancel: Callable[[], bool] | None = None) -> dict[str, Sqnr]:
    """{fqn: SQNR of its input under ``plan``} for every module ``plan`` covers, in plan order.

    Empty when the plan cannot be simulated at all (its end-to-end SQNR says why)."""
    end_to_end = analysis.plan_sqnr(plan, should_cancel)  # validates the plan; runs the range pass
    if end_to_end.db is None and not end_to_end.infinite:
        return {}
    fqns = [fqn for fqn in plan.modules if fqn in analysis.targets]
    reference: dict[str, list[list[torch.Tensor | None]]] = {fqn: [] for fqn in fqns}
    accumulators = {fqn: SqnrAccumulator() for fqn in fqns}
    batch_index = [0]
    call_index: dict[str, int] = {}
    recording = [True]

    def make_hook(fqn: str) -> Callable[..., None]:
        def hook(module: Any, args: Any) -> None:
            out = _input_tensor(args[0]) if args else None
            if recording[0]:
                reference[fqn][batch_index[0]].append(None if out is None else out.detach().clone())
                return
            calls = call_index.get(fqn, 0)
            call_index[fqn] = calls + 1
            kept = reference[fqn][batch_index[0]]
            ref = kept[calls] if calls < len(kept) else None
            if ref is not None and out is not None and out.shape == ref.shape:
                accumulators[fqn].add(ref, out)

        return hook

    handles = [analysis.submodule(fqn).register_forward_pre_hook(make_hook(fqn)) for fqn in fqns]
    try:
        with analysis._float_mode():
            for i, batch in enumerate(analysis.probes):
                _check_cancel(should_cancel)
                batch_index[0] = i
                for fqn in fqns:
                    reference[fqn].append([])
                analysis._run(batch, i)
        recording[0] = False
        with analysis._float_mode(), analysis._swapped(plan.quantized):
            for i, batch in enumerate(analysis.probes):
                _check_cancel(should_cancel)
                batch_index[0] = i
                call_index.clear()
                analysis._grid.tensors.clear()
                analysis._memo.clear()
                analysis._run(batch, i)
    finally:
        for handle in handles:
            handle.remove()
        analysis._memo.clear()
        analysis._grid.tensors.clear()
    return {fqn: accumulators[fqn].result(f"{fqn}'s input") for fqn in fqns}


def _input_tensor(value: Any) -> torch.Tensor | None:
    """The first floating-point tensor of a module's first argument (detached), or None."""
    tensor = first_tensor(value)
    if tensor is None or not tensor.is_floating_point():
        return None
    return tensor.detach()
