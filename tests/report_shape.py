"""The report JSON's documented shape (README), checked by every test that reads a report."""

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
