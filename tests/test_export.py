"""Exporters: the documented JSON shape, Markdown for people, atomic writes."""

import json
import math
import os
from pathlib import Path

import pytest

from tui_quantreport.engine import Session, Settings, UserError, evaluate, export, load_model, open_batches
from tui_quantreport.engine.detectors import DETECTORS
from tui_quantreport.engine.export import render, to_json_data, write_atomic

TINY = str(Path(__file__).parent / "models" / "tiny.py")


@pytest.fixture(scope="module")
def report():
    loaded = load_model(TINY)
    session = Session(loaded.model, label=loaded.spec)
    settings = Settings.build()
    stats = session.calibrate(open_batches(loaded), settings)
    return evaluate(session.catalog, stats, settings, spec=loaded.spec)


def test_json_has_the_documented_top_level_shape(report):
    data = json.loads(render(report, "json"))
    assert data["format"] == "tui-quantreport.report/1"
    assert data["model"] == {"spec": TINY, "class": "Sequential", "modules": 7}
    assert data["calibration"] == {"batches": 6}
    assert list(data["detectors"]) == list(DETECTORS)
    for det in data["detectors"].values():
        assert set(det) >= {"params", "summary", "modules"}
    assert data["detectors"]["per_channel_detector"]["backend"] == "x86"


def test_non_finite_numbers_are_written_as_null(report):
    data = to_json_data(report)
    # A channel whose input range is 0 has s_c = inf.
    assert export._finite({"a": [math.inf, -math.inf, math.nan, 1.5]}) == {"a": [None, None, None, 1.5]}
    text = json.dumps(data, allow_nan=False)  # raises if anything non-finite slipped through
    assert "NaN" not in text and "Infinity" not in text


def test_markdown_names_each_recommendation_and_its_reason(report):
    text = render(report, "markdown")
    assert text.startswith(f"# Quantization report: {TINY}")
    assert "| Detector | Modules flagged | Parameters | Summary |" in text
    eq = report.detectors["input_weight_equalization_detector"]
    for fqn in eq.recommended:  # grouped by module: a heading per module, then each detector's advice
        section = text.split(f"### `{fqn}`", 1)[1].split("###", 1)[0]
        assert "- **Input-weight equalization**: Apply input-weight equalization." in section


def test_the_written_time_is_now_or_source_date_epoch(report, monkeypatch):
    from datetime import datetime, timezone

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1795000000")
    assert to_json_data(report)["generated"]["time"] == "2026-11-18T11:06:40+00:00"
    assert render(report, "markdown") == render(report, "markdown")
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    written = datetime.fromisoformat(to_json_data(report)["generated"]["time"])
    assert abs((written - datetime.now(timezone.utc)).total_seconds()) < 120


def test_unknown_format_is_a_user_error(report):
    with pytest.raises(UserError, match="unknown format 'pdf'"):
        render(report, "pdf")


def test_write_atomic_replaces_the_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["report.json"]


def test_failed_write_leaves_old_content_and_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.os, "replace", broken_replace)
    with pytest.raises(UserError, match="cannot write report to .*No space left on device"):
        write_atomic(target, "new content")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]


def test_write_into_a_directory_or_missing_directory_fails_clearly(tmp_path):
    with pytest.raises(UserError, match="it is a directory"):
        write_atomic(tmp_path, "x")
    with pytest.raises(UserError, match="does not exist"):
        write_atomic(tmp_path / "nope" / "r.json", "x")
    assert os.listdir(tmp_path) == []


def test_exported_file_gets_the_usual_permissions(tmp_path):
    fresh = write_atomic(tmp_path / "new.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~mask
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    kept.chmod(0o640)
    write_atomic(kept, "new")
    assert kept.stat().st_mode & 0o777 == 0o640
