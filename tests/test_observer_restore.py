"""Calibration gives the model back: ``torch.ao`` observer buffers are restored in place, and the
re-run that names a failing module is said and can be skipped (docs/bad-input.md)."""

from __future__ import annotations

import pytest
from cli_helpers import model_file, one_line, run

# Observer buffers restored in place; the re-run is said and can be skipped -----------------


def test_observer_buffers_keep_identity_and_values():
    import torch
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

    from tui_quantreport.engine import Session, Settings

    class Observed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.obs = MinMaxObserver()
            self.pc = PerChannelMinMaxObserver(ch_axis=1)

        def forward(self, x):
            return self.pc(self.obs(self.fc(x)))

    model = Observed()
    model(torch.ones(2, 4))  # the observers have values before calibration
    held = {name: buf for name, buf in model.named_buffers()}
    before = {name: buf.clone() for name, buf in held.items()}
    Session(model).calibrate([torch.randn(2, 4) * 100 for _ in range(3)], Settings.build())
    for name, buf in model.named_buffers():
        assert buf is held[name], name
        assert torch.equal(buf, before[name]), name


def test_fresh_per_channel_observer_restored_to_its_empty_buffers():
    import torch
    from torch.ao.quantization import PerChannelMinMaxObserver

    from tui_quantreport.engine import Session, Settings

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), PerChannelMinMaxObserver(ch_axis=1))
    held = {name: buf for name, buf in model.named_buffers()}
    before = {name: buf.clone() for name, buf in held.items()}
    Session(model).calibrate([torch.randn(2, 4) for _ in range(2)], Settings.build())
    for name, buf in model.named_buffers():
        assert buf is held[name] and buf.shape == before[name].shape and torch.equal(buf, before[name]), name


RERUN_MODEL = """
import torch
from torch import nn

CALLS = []

class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        CALLS.append(x.shape)
        return self.fc(x)

def build_model():
    return Counting()

def calibration_batches():
    return [torch.randn(2, 4), torch.randn(2, 5)]
"""


def test_the_rerun_is_said_and_can_be_skipped(tmp_path, capsys):
    path = model_file(tmp_path, RERUN_MODEL, name="rerun_model_i13.py")
    code, out, err = run(capsys, "report", path)
    one_line(code, err, "batch 2 was rejected in module 'fc' (Linear)", "ran batch 2 again")
    code, out, err = run(capsys, "report", path, "--no-rerun")
    line = one_line(code, err, "batch 2 was rejected", "--no-rerun")
    assert "module 'fc'" not in line


def test_session_without_rerun_runs_the_failing_batch_once():
    import torch

    from tui_quantreport.engine import CalibrationError, Session, Settings

    calls = []
    model = torch.nn.Linear(4, 3)
    model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape))
    session = Session(model)
    with pytest.raises(CalibrationError, match="not run again"):
        session.calibrate([torch.randn(2, 4), torch.randn(2, 5)], Settings.build(), rerun_failures=False)
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(CalibrationError, match="ran batch 2 again"):
        session.calibrate([torch.randn(2, 4), torch.randn(2, 5)], Settings.build())
    assert len(calls) == 3
