"""Every bundled sample calibrates headless and produces the documented JSON."""

import json

import pytest
from report_shape import validate_report

from sample_models import DEFAULT_SAMPLE, SAMPLES
from tui_quantreport.cli import main


@pytest.mark.parametrize("sample", SAMPLES)
def test_each_sample_reports_valid_json(sample, capsys):
    assert main(["report", sample, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_report(data)
    assert data["model"]["spec"] == sample


def test_the_default_sample_has_something_for_every_detector(capsys):
    assert main(["report", DEFAULT_SAMPLE, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for name, det in data["detectors"].items():
        if name == "under_calibrated_detector":
            # About the calibration data, not the model: the default sample is calibrated on enough
            # rows everywhere (tests/test_correct_architectures.py has a model that is not).
            assert not [fqn for fqn, m in det["modules"].items() if m["status"] == "recommend"]
            continue
        flagged = [fqn for fqn, m in det["modules"].items() if m["status"] == "recommend"]
        assert flagged, f"{name} recommends nothing on {DEFAULT_SAMPLE}"
