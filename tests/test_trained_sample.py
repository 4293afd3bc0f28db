"""The trained sample (``trained_lm``): shipped weights that were trained, used for SQNR,
sensitivity and verify on something other than random init."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from tests.cli_helpers import run
from tui_quantreport.engine import load_model, open_batches


@pytest.fixture(scope="module")
def report():
    import contextlib
    import io

    from tui_quantreport.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["report", "trained_lm", "--format", "json", "--sensitivity"])
    assert code == 0
    return json.loads(out.getvalue())


def test_the_weights_are_trained_and_load_the_same_every_time():
    from sample_models import trained_lm

    first, second = trained_lm.build_model(), trained_lm.build_model()
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    batches = trained_lm.calibration_batches()
    with torch.no_grad():
        loss = sum(
            float(F.cross_entropy(first(b[:, :-1]).reshape(-1, trained_lm.VOCAB), b[:, 1:].reshape(-1)))
            for b in batches
        ) / len(batches)
    assert loss < 0.5 * math.log(trained_lm.VOCAB)  # random init sits at ln(32) = 3.47


def test_trained_sample_sqnr_and_sensitivity_are_finite(report):
    measured = report["measured"]
    plan = measured["plan"]
    assert plan["sqnr_db"] is not None and 20 < plan["sqnr_db"] < 80
    modules = measured["modules"]
    assert len(modules) == 15
    for fqn, entry in modules.items():
        assert entry["rows"] is not None and entry["rows"] >= 64, fqn
        sens = entry["sensitivity_db"]
        assert sens is not None and math.isfinite(sens), fqn
        # One module quantized alone costs less than the whole plan.
        assert sens >= plan["sqnr_db"] - 0.1, fqn


def test_trained_sample_verify_matches_the_export_prediction(capsys):
    code, out, err = run(capsys, "verify", "trained_lm", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["achieved_sqnr_db"] is not None
    assert abs(data["gap_db"]) <= 0.5, data
    loaded = load_model("trained_lm")
    assert len(list(open_batches(loaded))) == 16
