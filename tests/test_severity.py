"""Severity from measurement: gains, minor findings, ranking, de-duplication, JSON and CLI."""

from __future__ import annotations

import json
import math

import pytest

from tui_quantreport.cli import main
from tui_quantreport.engine import Session, Settings, evaluate, load_model, open_batches
from tui_quantreport.engine.export import to_json_data, to_markdown
from tui_quantreport.engine.plan import Plan
from tui_quantreport.engine.quantsim import SCHEMES, ErrorAnalysis, ProbeRecorder
from tui_quantreport.engine.report import Level, Measured, ModuleError, Status
from tui_quantreport.engine.severity import ADVICE, assess, measure, top_findings


@pytest.fixture(scope="module")
def mlp():
    loaded = load_model("drifting_mlp")
    session = Session(loaded.model)
    settings = Settings.build()
    recorder = ProbeRecorder(open_batches(loaded), 3)
    stats = session.calibrate(recorder, settings)
    return session, stats, settings, recorder.probes


def _measured(sqnr: dict[str, dict[str, float]], quantizer_of: dict[str, str | None]) -> Measured:
    modules = {
        fqn: ModuleError(
            fqn,
            {k: v for k, v in values.items() if k in SCHEMES_},
            {},
            clipped_db=values.get("clipped"),
            equalized_db=values.get("equalized"),
        )
        for fqn, values in sqnr.items()
    }
    return Measured(3, modules, quantizer_of)


SCHEMES_ = ("static_per_tensor", "static_per_channel", "dynamic", "weight_only")


def _values(pt, pc, dyn, clipped, equalized):
    return {
        "static_per_tensor": pt,
        "static_per_channel": pc,
        "dynamic": dyn,
        "weight_only": 50.0,
        "clipped": clipped,
        "equalized": equalized,
    }


def test_gain_decides_major_and_minor_and_ranking(mlp):
    session, stats, settings, _ = mlp
    report = evaluate(session.catalog, stats, settings)
    flagged_eq = report.detectors["input_weight_equalization_detector"].recommended
    assert {"fc1", "fc2", "fc3", "fc4"} <= set(flagged_eq)
    measured = _measured(
        {
            "fc1": _values(30, 30, 31, 30, 30.2),  # equalization gains 0.2 dB: minor
            "fc2": _values(30, 30, 36, 30, 38.0),  # equalization gains 8 dB: major, the largest
            "fc3": _values(30, 30, 30, 30, 33.0),  # 3 dB
            "fc4": _values(30, 30, 30, 30, 31.5),  # 1.5 dB
        },
        {
            "fc1": "fc1",
            "fc2": "fc2",
            "fc3": "fc3",
            "fc4": "fc4",
            "relu1": "fc2",
            "relu2": None,
            "norm": "fc3",
            "relu3": "fc4",
        },
    )
    assessed = assess(report, measured, min_gain_db=1.0)
    eq = "input_weight_equalization_detector"
    assert assessed.severity(eq, "fc1").level is Level.MINOR
    assert "does not support" in assessed.severity(eq, "fc1").note
    assert assessed.severity(eq, "fc2").level is Level.MAJOR and assessed.severity(eq, "fc2").gain_db == pytest.approx(
        8.0
    )
    assert not assessed.badged(eq, "fc1") and assessed.badged(eq, "fc2")
    order = assessed.walk_order()
    assert order[0] == "fc2"  # the largest measured gain first
    assert order.index("fc3") < order.index("fc4")
    # A higher threshold turns fc4 (1.5 dB) minor: re-judged without measuring again.
    stricter = assess(report, measured, min_gain_db=2.0)
    assert stricter.severity(eq, "fc4").level is Level.MINOR
    assert stricter.severity(eq, "fc3").level is Level.MAJOR
    # A tensor no quantizable module reads: nothing to gain, minor.
    if report.detectors["outlier_detector"].findings.statuses.get("relu2") is Status.RECOMMEND:
        sev = assessed.severity("outlier_detector", "relu2")
        assert sev.gain_db is None and sev.level is Level.MINOR and "never used" in sev.note
    # Unmeasurable ones (SQNR undefined) keep their badge and rank after every measured one.
    blind = _measured(
        {"fc1": _values(30, 30, 30, 30, 35), "fc2": _values(30, 30, 30, 30, 30)},
        {"fc1": "fc1", "fc2": "fc2", "fc3": "fc3", "fc4": "fc4"},
    )
    unmeasured = assess(report, blind)
    assert unmeasured.severity(eq, "fc4").level is Level.UNMEASURED and unmeasured.badged(eq, "fc4")
    walk = unmeasured.walk_order()
    assert walk.index("fc1") < walk.index("fc4")
    rows = top_findings(assessed)
    gains = [g for _, _, g, _ in rows if g is not None]
    assert gains == sorted(gains, reverse=True)
    assert all(g is not None for _, _, g, _ in rows[: len(gains)])


def test_a_tensor_is_reported_once_on_the_module_that_quantizes_it(mlp):
    session, stats, settings, _ = mlp
    report = evaluate(session.catalog, stats, settings)
    outliers = report.detectors["outlier_detector"]
    # relu1's input is fc1's output; fc2 reads relu1's output: one tensor, quantized by fc2.
    measured = _measured(
        {f: _values(30, 30, 30, 40, 30) for f in ("fc1", "fc2", "fc3", "fc4")},
        {
            "fc1": "fc1",
            "relu1": "fc2",
            "fc2": "fc2",
            "relu2": None,
            "norm": "fc3",
            "fc3": "fc3",
            "relu3": "fc4",
            "fc4": "fc4",
        },
    )
    assessed = assess(report, measured)
    flagged = set(outliers.recommended)
    if {"relu1", "fc2"} <= flagged:
        sev = assessed.severity("outlier_detector", "relu1")
        assert sev.level is Level.DUPLICATE and sev.reported_on == "fc2" and sev.measured_on == "fc2"
        assert not assessed.badged("outlier_detector", "relu1")
        assert assessed.severity("outlier_detector", "fc2").level is Level.MAJOR
    reported = [fqn for fqn in flagged if assessed.badged("outlier_detector", fqn)]
    subjects = [measured.quantizer_of.get(f) for f in reported if measured.quantizer_of.get(f) is not None]
    assert len(subjects) == len(set(subjects)), "each quantized tensor is reported once"


def test_measured_report_on_showcase_json_has_no_nan_and_says_contradictions():
    loaded = load_model("showcase")
    session = Session(loaded.model)
    settings = Settings.build()
    recorder = ProbeRecorder(open_batches(loaded), 2)
    stats = session.calibrate(recorder, settings)
    analysis = ErrorAnalysis.from_stats(loaded.model, session.catalog, recorder.probes, stats)
    measured = measure(analysis, sensitivity=True)
    report = assess(evaluate(session.catalog, stats, settings), measured)
    data = to_json_data(report)
    json.dumps(data, allow_nan=False)
    m = data["measured"]
    assert m["probe_batches"] == 2 and m["plan"]["format"] == "tui-quantreport.plan/1"
    assert set(m["modules"]) == set(analysis.quantizable)
    for entry in m["modules"].values():
        assert set(entry["sqnr_db"]) == set(SCHEMES) == set(entry["bits_per_weight"])  # every registered scheme
        assert entry["sensitivity_db"] is None or math.isfinite(entry["sensitivity_db"])
    for name, det in data["detectors"].items():
        if name not in ADVICE:  # a detector with no measured alternative (dead channels) has no severity
            continue
        for entry in det["modules"].values():
            assert entry["severity"] in ("major", "minor", "unmeasured", "duplicate", "none")
            assert "gain_db" in entry
    notes = [s.note for s in report.severities.values() if s.level is Level.MINOR]
    assert notes and all("does not support" in n or "never used" in n for n in notes)
    assert "Top findings by measured gain" in to_markdown(report)


def test_cli_report_measures_and_writes_the_plan(tmp_path, capsys):
    out, plan_path = tmp_path / "r.json", tmp_path / "plan.json"
    code = main(
        [
            "report",
            "drifting_mlp",
            "--format",
            "json",
            "--output",
            str(out),
            "--probe-batches",
            "2",
            "--sensitivity",
            "--min-gain",
            "3",
            "--plan-out",
            str(plan_path),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["measured"]["min_gain_db"] == 3 and data["measured"]["sensitivity"] is True
    assert all(e["sensitivity_db"] is not None for e in data["measured"]["modules"].values())
    plan = Plan.load(plan_path)
    assert set(plan.modules) == {"fc1", "fc2", "fc3", "fc4"} and plan.probe_batches == 2
    assert plan.predicted_sqnr_db == pytest.approx(data["measured"]["plan"]["predicted_sqnr_db"])
    assert "sensitivity: " in capsys.readouterr().err


def test_cli_without_probes_does_not_measure(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["report", "drifting_mlp", "--format", "json", "--output", str(out), "--probe-batches", "0"]) == 0
    assert "measured" not in json.loads(out.read_text())
    assert main(["report", "drifting_mlp", "--probe-batches", "0", "--plan-out", str(tmp_path / "p.json")]) == 2
    assert "--plan-out needs measurement" in capsys.readouterr().err
    # An argument error is one line with a --help hint and exit 2 (issue 14 item 8), not SystemExit.
    assert main(["report", "drifting_mlp", "--min-gain", "-1"]) == 2
    assert "--min-gain" in capsys.readouterr().err


def test_a_gain_that_rounds_to_nothing_is_never_negative_zero() -> None:
    """The showcase's rgb_proj read "minor (-0.0 dB)": per-channel weights changed nothing."""
    from tui_quantreport.engine.severity import signed_db

    assert [signed_db(g) for g in (-0.0, -0.04, 0.04, 0.0)] == ["+0.0"] * 4
    assert signed_db(-0.06) == "-0.1"
    assert (signed_db(1.26), signed_db(-2.0)) == ("+1.3", "-2.0")
