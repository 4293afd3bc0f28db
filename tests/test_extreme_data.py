"""Data at the edges: tensors with no elements are skipped, counted and reported; a channel
axis out of range is never clamped; values near the float maximum give finite statistics
(docs/bad-input.md)."""

from __future__ import annotations

import json
import math

import pytest
from cli_helpers import TINY, model_file, run

# Tensors with no elements are skipped, counted and reported, never calls --------------------

EMPTY_MODEL = """
import torch
from torch import nn

def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

def calibration_batches():
    gen = torch.Generator().manual_seed(1)
    real = [torch.randn(16, 4, generator=gen) * (1 + i) for i in range(REAL)]
    return real + [torch.randn(0, 4)] * EMPTY
"""


def report_json(capsys, tmp_path, real, empty, name):
    path = model_file(tmp_path, f"REAL, EMPTY = {real}, {empty}\n" + EMPTY_MODEL, name=name)
    code, out, err = run(capsys, "report", path, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_empty_batches_change_nothing_but_are_reported(tmp_path, capsys):
    real = report_json(capsys, tmp_path, 2, 0, "real.py")
    mixed = report_json(capsys, tmp_path, 2, 2, "mixed.py")
    dyn, dyn_real = (d["detectors"]["dynamic_vs_static_detector"]["modules"] for d in (mixed, real))
    for fqn in ("0", "2"):
        for key in ("pre_observer_comp_stat", "post_observer_comp_stat", "dynamic_recommended"):
            assert dyn[fqn][key] == dyn_real[fqn][key], (fqn, key)
    out_mixed = mixed["detectors"]["outlier_detector"]["modules"]["0"]
    out_real = real["detectors"]["outlier_detector"]["modules"]["0"]
    assert out_mixed["sufficient_batches"] == out_real["sufficient_batches"]
    assert out_mixed["percentile_ratio"] == out_real["percentile_ratio"]
    assert mixed["points"]["0"]["pre"]["calls"] == 2
    assert mixed["points"]["0"]["pre"]["empty_skipped"] == 2
    assert real["points"]["0"]["pre"]["empty_skipped"] == 0


def test_all_empty_batches_say_so(tmp_path, capsys):
    data = report_json(capsys, tmp_path, 0, 3, "all_empty.py")
    for det in ("dynamic_vs_static_detector", "outlier_detector", "input_weight_equalization_detector"):
        entry = data["detectors"][det]["modules"]["0"]
        assert entry["status"] == "not_observed", (det, entry)
        assert "empty" in entry["reason"], (det, entry["reason"])
        assert "NaN" not in entry["reason"] and "number of channels" not in entry["reason"]
    path = tmp_path / "all_empty.py"
    code, out, err = run(capsys, "report", path, "--format", "text")
    assert "empty" in out


def test_accumulator_skips_empty_tensors():
    import torch

    from tui_quantreport.engine import Session, Settings

    session = Session(torch.nn.Sequential(torch.nn.Linear(4, 2)))
    batches = [torch.randn(3, 4), torch.randn(0, 4), torch.randn(3, 4) * 2]
    stats = session.calibrate(batches, Settings.build())
    point = stats.point("0", "pre")
    assert point.calls == 2 and point.empty == 1
    alone = session.calibrate([batches[0], batches[2]], Settings.build()).point("0", "pre")
    assert point.comparison_stat == alone.comparison_stat
    merged = stats.merge(stats).point("0", "pre")
    assert merged.calls == 4 and merged.empty == 2


# --ch-axis out of range: per point, never clamped -------------------------------------------


@pytest.mark.parametrize("axis", ["99", "-5"])
def test_out_of_range_channel_axis_is_never_clamped(capsys, axis):
    code, out, err = run(capsys, "report", TINY, "--format", "json", f"--ch-axis={axis}")
    assert code == 0, err
    data = json.loads(out)
    outliers = data["detectors"]["outlier_detector"]["modules"]
    assert not any(entry["status"] == "recommend" for entry in outliers.values())
    for fqn in ("0", "3"):  # a 4-D and a 2-D input: out of range for both
        assert outliers[fqn]["status"] == "not_applicable"
        assert "out of range" in outliers[fqn]["reason"]
        assert data["points"][fqn]["pre"]["axis"] is None
        assert "out of range" in data["points"][fqn]["pre"]["axis_reason"]


def test_an_axis_in_range_is_recorded_per_point(capsys):
    code, out, err = run(capsys, "report", TINY, "--format", "json", "--ch-axis=1")
    assert code == 0, err
    points = json.loads(out)["points"]
    assert points["0"]["pre"]["axis"] == 1 and points["3"]["pre"]["axis"] == 1


# Very large values: no overflow into inf or NaN ---------------------------------------------

LARGE_MODEL = """
import torch
from torch import nn

DTYPE = getattr(torch, DTYPE_NAME)

def build_model():
    fc = nn.Linear(1, 1).to(DTYPE)
    with torch.no_grad():
        fc.weight.fill_(1.0)
        fc.bias.zero_()
    return nn.Sequential(fc)

def calibration_batches():
    return [torch.tensor([[-SCALE], [SCALE]], dtype=DTYPE) for _ in range(4)]
"""


@pytest.mark.parametrize("dtype, scale", [("float32", 3e38), ("float64", 1e300)])
def test_huge_finite_values_give_finite_statistics(tmp_path, capsys, dtype, scale):
    path = model_file(tmp_path, f"DTYPE_NAME, SCALE = {dtype!r}, {scale!r}\n" + LARGE_MODEL)
    # The calibration statistics; the measured-SQNR section (--probe-batches) simulates int8 with
    # float32 scales, where a range of 6e38 cannot be represented: not part of this check.
    code, out, err = run(capsys, "report", path, "--format", "json", "--probe-batches", "0")
    assert code == 0, err
    assert "overflow" not in err.lower()
    entry = json.loads(out)["detectors"]["dynamic_vs_static_detector"]["modules"]["0"]
    assert entry["pre_observer_comp_stat"] == pytest.approx(1.0)
    assert entry["post_observer_comp_stat"] == pytest.approx(1.0)
    assert entry["post_observer_data_dist"] == "stationary"
    assert "NaN" not in entry["reason"] and "infinite" not in entry["reason"]
    code, text, err = run(capsys, "report", path, "--format", "text", "--probe-batches", "0")
    assert "inf" not in text.replace("info", "") and "nan" not in text.lower()


def test_comparison_stat_is_never_inf_or_nan():
    from tui_quantreport.engine.stats import PointStats

    point = PointStats(
        calls=2,
        axis=1,
        shapes=((1,),),
        global_min=-1e308,
        global_max=1e308,
        range_sum=math.inf,
        channel_min=None,
        channel_max=None,
    )
    assert point.comparison_stat is None
