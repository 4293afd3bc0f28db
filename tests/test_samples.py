"""Every bundled sample calibrates headless and produces the documented JSON."""

import json

import pytest

from sample_models import DEFAULT_SAMPLE, SAMPLES
from tui_quantreport.cli import main
from tui_quantreport.engine.detectors import DETECTORS

#: Every detector's per-module keys, as each detector class declares them.
DETECTOR_KEYS = {name: set(cls.report_keys) for name, cls in DETECTORS.items()}
STATUSES = {"recommend", "ok", "not_observed", "not_applicable", "info"}


def validate_report(data: dict) -> None:
    """Check a report against the shape documented in the README."""
    assert data["format"] == "tui-quantreport.report/1"
    assert isinstance(data["model"]["spec"], str) and isinstance(data["model"]["class"], str)
    assert isinstance(data["model"]["modules"], int) and data["model"]["modules"] > 0
    assert isinstance(data["calibration"]["batches"], int) and data["calibration"]["batches"] > 0
    assert set(data["detectors"]) == set(DETECTOR_KEYS)
    for name, det in data["detectors"].items():
        assert isinstance(det["params"], dict) and isinstance(det["summary"], str)
        for fqn, entry in det["modules"].items():
            assert isinstance(fqn, str)
            assert DETECTOR_KEYS[name] <= set(entry), (name, fqn, DETECTOR_KEYS[name] - set(entry))
            assert entry["status"] in STATUSES
            assert (entry["recommendation"] is not None) == (entry["status"] == "recommend")
            for key in entry:
                value = entry[key]
                if isinstance(value, list):
                    assert all(v is None or isinstance(v, (bool, int, float)) for v in value)


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
