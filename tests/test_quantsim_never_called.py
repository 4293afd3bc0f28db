"""The local pass runs no range pass for modules calibration saw never called, and checks it was right.

tiny_transformer's MultiheadAttention out_proj modules are never called (attention reads their
weight): with calibrated ranges for every other module, the local pass is one float pass, and
its measurements equal those taken after a range pass. A module calibration never saw called but
the probes do call is measured all the same: the check re-runs the range pass and the local pass.
"""

from __future__ import annotations

import torch
from torch import nn

from tui_quantreport.engine import ModelCatalog, Session, Settings, load_model, open_batches
from tui_quantreport.engine.quantsim import ErrorAnalysis, ProbeRecorder


def _count_range_passes(monkeypatch) -> list[int]:
    count = [0]
    real = ErrorAnalysis._range_pass

    def counted(self, *args, **kwargs):
        count[0] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ErrorAnalysis, "_range_pass", counted)
    return count


def test_modules_never_called_in_calibration_need_no_range_pass(monkeypatch):
    loaded = load_model("tiny_transformer")
    session = Session(loaded.model)
    recorder = ProbeRecorder(open_batches(loaded), 2)
    stats = session.calibrate(recorder, Settings.build())

    def fresh() -> ErrorAnalysis:
        return ErrorAnalysis.from_stats(loaded.model, session.catalog, recorder.probes, stats)

    after_range_pass = fresh()
    after_range_pass._range_pass(lambda done, total: None, None)
    expected = after_range_pass.local_measurements(advice=False)
    count = _count_range_passes(monkeypatch)
    analysis = fresh()
    never = [fqn for fqn in analysis.targets if fqn.endswith("out_proj")]
    assert never and all(analysis.targets[fqn].range is None for fqn in never)
    measured = analysis.local_measurements(advice=False)
    assert count[0] == 0
    assert measured == expected
    for fqn in never:
        assert "was never called during calibration" in measured[fqn].sqnr["static_per_channel"].reason


class _Branchy(nn.Module):
    """``extra`` runs only on batches whose mean is positive."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.extra = nn.Linear(8, 8)

    def forward(self, x):
        y = self.fc(x)
        if bool(x.mean() > 0):
            y = self.extra(torch.relu(y))
        return y


def test_a_module_the_probes_call_after_all_is_measured(monkeypatch):
    torch.manual_seed(0)
    model = _Branchy().eval()
    calibration = [-(torch.rand(6, 8) + 1) for _ in range(3)]  # the branch is never taken
    probes = [torch.rand(6, 8) + 1 for _ in range(2)]  # it is taken on every probe
    session = Session(model)
    stats = session.calibrate(calibration, Settings.build())
    analysis = ErrorAnalysis.from_stats(model, ModelCatalog.build(model), probes, stats)
    assert analysis.targets["extra"].range is None
    count = _count_range_passes(monkeypatch)
    measured = analysis.local_measurements(advice=False)
    assert count[0] == 1
    assert measured["extra"].range_source == "probes"
    assert measured["extra"].sqnr["static_per_channel"].defined
    assert measured["extra"].calls == 2
