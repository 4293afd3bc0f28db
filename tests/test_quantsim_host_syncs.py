"""The measurement reads nothing back to the host per probe batch on an accelerator.

On the CPU the per-batch paths may read values back (it costs nothing there); on a GPU each read
waits for the device. :func:`device_path` makes the CPU take the accelerator's read-free paths;
with ``Tensor.item``, ``__bool__``, ``__float__``, ``__int__`` and ``tolist`` trapped, the local
measurement (with its range pass) and a plan evaluation must:

- read nothing back inside the model's forward (every per-module hook and swapped forward runs there);
- read back as often with four probe batches as with two (the reads left are once per pass);
- give the very same results as the CPU's own paths (tiny_transformer: the per-token dynamic path).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from tui_quantreport.engine import Session, Settings, load_model, open_batches
from tui_quantreport.engine.quantsim import ErrorAnalysis, ProbeRecorder
from tui_quantreport.engine.quantsim.hostsync import device_path

_TRAPPED = ("item", "__bool__", "__float__", "__int__", "tolist")


class _Trap:
    """Counts host reads of tensors; raises on one made while ``inside`` is set."""

    def __init__(self) -> None:
        self.reads = 0
        self.inside = False

    @contextlib.contextmanager
    def installed(self, monkeypatch):
        for name in _TRAPPED:
            original = getattr(torch.Tensor, name)

            def trapped(t, *args, _original=original, _name=name, **kwargs):
                if self.inside:
                    raise AssertionError(f"host read ({_name}) inside the model's forward")
                self.reads += 1
                return _original(t, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, trapped)
        try:
            yield self
        finally:
            monkeypatch.undo()

    def wrap_forward(self, model: torch.nn.Module) -> None:
        forward = model.forward

        def trapped_forward(*args, **kwargs):
            self.inside = True
            try:
                return forward(*args, **kwargs)
            finally:
                self.inside = False

        model.forward = trapped_forward  # type: ignore[method-assign]


def _measure(sample: str, batches: int, trap: _Trap | None):
    loaded = load_model(sample)
    session = Session(loaded.model)
    recorder = ProbeRecorder(open_batches(loaded), batches)
    stats = session.calibrate(recorder, Settings.build())
    given = ErrorAnalysis.from_stats(loaded.model, session.catalog, recorder.probes, stats)
    plan = given.recommended_plan()
    measured = ErrorAnalysis(loaded.model, session.catalog, recorder.probes)  # ranges from the probes
    if trap is None:
        return given.local_measurements(advice=True), given.plan_sqnr(plan), measured.local_measurements(advice=True)
    trap.wrap_forward(loaded.model)
    with device_path():
        trap.reads = 0
        results = (
            given.local_measurements(advice=True),
            given.plan_sqnr(plan),
            measured.local_measurements(advice=True),
        )
    del loaded.model.forward  # the class's forward again
    return results


@pytest.mark.parametrize("sample", ["showcase", "drifting_mlp", "tiny_transformer"])
def test_measurement_reads_nothing_back_per_batch_and_gives_the_same_results(monkeypatch, sample):
    expected = _measure(sample, 2, None)
    counts = []
    for batches in (2, 4):
        trap = _Trap()
        with trap.installed(monkeypatch):
            results = _measure(sample, batches, trap)
            counts.append(trap.reads)
        if batches == 2:
            assert results == expected
    assert counts[0] == counts[1]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    nan = torch.isnan(a)
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and bool(torch.equal(nan, torch.isnan(b)))
        and bool(torch.equal(a[~nan], b[~nan]))
    )


def _dynamic_inputs():
    torch.manual_seed(3)
    x = torch.randn(4, 12, 600) * torch.logspace(-3, 3, 12).view(1, 12, 1) + 0.3
    yield "mixed scales", x
    yield "NaN", torch.where(x > 2, torch.nan, x)
    yield "inf", torch.where(x > 2, torch.inf, x)
    yield "width beyond float32", torch.where(x > 0, 3e38, -3e38)
    yield "zero rows", torch.where(torch.arange(12).view(1, 12, 1) % 3 == 0, 0.0, x)
    yield "bfloat16", x.bfloat16()
    yield "tiny", x[:1, :2, :3]


@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("case", [c[0] for c in _dynamic_inputs()])
def test_dynamic_quantization_without_host_reads_equals_the_cpu_path(case, per_token):
    from tui_quantreport.engine.quantsim.qparams import fake_quantize_dynamic

    x = next(c for c in _dynamic_inputs() if c[0] == case)[1]
    expected = fake_quantize_dynamic(x, 0, 255, per_token)
    with device_path():
        assert _same(fake_quantize_dynamic(x, 0, 255, per_token), expected)


def _norm_inputs():
    torch.manual_seed(4)
    d = torch.randn(3, 500, dtype=torch.float64)
    yield "plain", d
    yield "overflowing norm", d * 1e300
    yield "NaN", torch.where(d > 2, torch.nan, d)
    yield "inf", torch.where(d > 2, torch.inf, d)
    yield "inf and NaN", torch.where(d > 2, torch.inf, torch.where(d < -2, torch.nan, d))
    yield "zeros", torch.zeros(3, 4, dtype=torch.float64)
    yield "empty", torch.zeros(0, dtype=torch.float64)
    yield "float32", d.float()


@pytest.mark.parametrize("case", [c[0] for c in _norm_inputs()])
def test_log_norm_without_host_reads_equals_the_cpu_path(case):
    from tui_quantreport.engine.quantsim.sqnr import SqnrAccumulator, log_norm

    t = next(c for c in _norm_inputs() if c[0] == case)[1]
    expected = log_norm(t)
    cpu = SqnrAccumulator()
    cpu.add(t, t * 0.99)
    with device_path():
        assert _same(log_norm(t), expected)
        device = SqnrAccumulator()
        device.add(t, t * 0.99)
        assert device.result() == cpu.result()
