"""The command line: every bad input is one clear line and exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import one_line as assert_one_clear_line
from cli_helpers import run

TINY = str(Path(__file__).parent / "models" / "tiny.py")
BROKEN = str(Path(__file__).parent / "models" / "broken.py")


def test_report_text_on_a_model_file(capsys):
    code, out, err = run(capsys, "report", TINY)
    assert code == 0, err
    assert "Sequential, 7 modules, 6 batches" in out
    assert "Input-weight equalization [E]" in out


def test_report_json_to_a_file_is_valid(tmp_path, capsys):
    target = tmp_path / "r.json"
    code, out, err = run(capsys, "report", TINY, "--format", "json", "--output", str(target), "--batches", "3")
    assert code == 0, err
    data = json.loads(target.read_text())
    assert data["format"] == "tui-quantreport.report/1"
    assert data["calibration"]["batches"] == 3
    assert f"wrote json report to {target}" in err


def test_tolerance_option_changes_the_verdict(capsys):
    low = json.loads(run(capsys, "report", TINY, "--format", "json", "--tolerance", "0")[1])
    high = json.loads(run(capsys, "report", TINY, "--format", "json", "--tolerance", "1")[1])
    module = low["detectors"]["dynamic_vs_static_detector"]["modules"]["3"]
    assert module["dynamic_recommended"] is False and module["tolerance"] == 0
    assert high["detectors"]["dynamic_vs_static_detector"]["modules"]["3"]["dynamic_recommended"] is True


def test_detectors_and_param_options(capsys):
    code, out, err = run(
        capsys,
        "report",
        TINY,
        "--format",
        "json",
        "--detectors",
        "outlier",
        "--param",
        "outlier.ratio_threshold=1000",
    )
    data = json.loads(out)
    assert list(data["detectors"]) == ["outlier_detector"]
    assert data["detectors"]["outlier_detector"]["params"]["ratio_threshold"] == 1000


def test_backend_option_reaches_the_per_channel_detector(capsys):
    data = json.loads(run(capsys, "report", TINY, "--format", "json", "--backend", "qnnpack")[1])
    per_channel = data["detectors"]["per_channel_detector"]
    assert per_channel["backend"] == "qnnpack"
    # qnnpack's default qconfig is per-tensor: every weighted module is flagged.
    assert all(m["status"] == "recommend" for m in per_channel["modules"].values())


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["report", "missing_model.py"], ["missing_model.py", "does not exist"]),
        (["report", "no_such_sample"], ["not a bundled sample"]),
        (["report", "no.such.module:build"], ["no module named 'no'"]),
        (["report", f"{BROKEN}:raises"], ["raises() raised RuntimeError: weights file missing"]),
        (["report", f"{BROKEN}:not_a_module"], ["returned dict, not a torch.nn.Module"]),
        (["report", f"{BROKEN}:nothing_here"], ["defines no nothing_here()"]),
        (["report", BROKEN, "--calibration", f"{BROKEN}:no_batches"], ["zero batches"]),
        (["report", BROKEN], ["batch 2 was rejected in module '0' (Linear)", "RuntimeError"]),
        (["report", TINY, "--detectors", "bogus"], ["unknown detector 'bogus'"]),
        (["report", TINY, "--tolerance", "1.5"], ["tolerance must be in [0, 1], not 1.5"]),
        (["report", TINY, "--tolerance", "abc"], ["tolerance must be a number", "'abc'"]),
        (["report", TINY, "--param", "outlier.reference_percentile=1"], ["reference_percentile must be in (0, 1)"]),
        (["report", TINY, "--param", "equalization.ratio_threshold=0"], ["ratio_threshold must be in (0, 1)"]),
        (["report", TINY, "--param", "outlier.nope=1"], ["has no parameter 'nope'"]),
        (["report", TINY, "--param", "oops"], ["DETECTOR.NAME=VALUE"]),
        (["report", TINY, "--output", "/no/such/dir/r.json"], ["directory /no/such/dir does not exist"]),
    ],
)
def test_bad_input_is_one_line_and_status_2(capsys, argv, fragments):
    code, out, err = run(capsys, *argv)
    assert_one_clear_line(code, err, *fragments)


def test_syntax_error_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("def build_model(:\n    pass\n")
    code, out, err = run(capsys, "report", str(bad))
    assert_one_clear_line(code, err, "syntax error", "bad.py line 1")


def test_model_file_without_calibration_data(tmp_path, capsys):
    f = tmp_path / "nocal.py"
    f.write_text("from torch import nn\ndef build_model():\n    return nn.Linear(2, 2)\n")
    code, out, err = run(capsys, "report", str(f))
    assert_one_clear_line(code, err, "no calibration data", "--calibration")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", TINY, "--backend", "tpu"], "argument --backend: invalid choice: 'tpu'"),
        (["report", TINY, "--batches", "0"], "argument --batches: must be at least 1, not 0"),
        (["report", TINY, "--format", "pdf"], "argument --format: invalid choice: 'pdf'"),
        ([TINY, "--min-gain", "-1"], "argument --min-gain: must be a finite number of dB, 0 or more, not -1"),
        (["report", TINY, "--min-gain", "inf"], "argument --min-gain: must be a finite number of dB"),
    ],
)
def test_bad_option_values_are_usage_errors(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert_one_clear_line(code, err, message, "--help")


def test_app_with_a_bad_model_exits_2_before_the_ui(capsys):
    code, out, err = run(capsys, "missing_model.py")
    assert_one_clear_line(code, err, "does not exist")


def test_samples_lists_the_default_first(capsys):
    code, out, err = run(capsys, "samples")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("showcase") and first.endswith("(default)")
    assert len(out.splitlines()) >= 7


def test_python_dash_m_is_the_same_program():
    done = subprocess.run(
        [sys.executable, "-m", "tui_quantreport", "report", "missing.py"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "tui-quantreport: error: missing.py: file missing.py does not exist"


def test_app_checks_the_factory_before_the_ui(tmp_path, capsys):
    f = tmp_path / "nofactory.py"
    f.write_text("import torch\nfrom torch import nn\n\ndef make():\n    return nn.Linear(2, 2)\n")
    code, out, err = run(capsys, str(f))
    assert_one_clear_line(code, err, "defines no build_model()")
    code, out, err = run(capsys, f"{f}:nope")
    assert_one_clear_line(code, err, "defines no nope()")
