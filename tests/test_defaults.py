"""Each shared default is defined once, in ``engine/defaults.py``, and read where it is used."""

from __future__ import annotations

import dataclasses

from tui_quantreport.engine import defaults


def test_backends_are_the_one_list():
    from tui_quantreport.engine.detectors.per_channel import PerChannelDetector
    from tui_quantreport.engine.modules import ALL_BACKENDS

    backend = next(p for p in PerChannelDetector.params if p.name == "backend")
    assert tuple(backend.choices) == defaults.BACKENDS
    assert backend.default == defaults.DEFAULT_BACKEND in defaults.BACKENDS
    assert ALL_BACKENDS == frozenset(defaults.BACKENDS)


def test_minimum_gain_is_the_one_default():
    from tui_quantreport.engine.report import Report
    from tui_quantreport.engine.severity import DEFAULT_MIN_GAIN_DB
    from tui_quantreport.tui.detector_sidebar import MIN_GAIN

    assert DEFAULT_MIN_GAIN_DB == MIN_GAIN.default == defaults.MIN_GAIN_DB
    field = next(f for f in dataclasses.fields(Report) if f.name == "min_gain_db")
    assert field.default == defaults.MIN_GAIN_DB


def test_probe_batches_are_the_one_default():
    from tui_quantreport.tui.main_screen import PROBE_BATCHES

    assert PROBE_BATCHES == defaults.PROBE_BATCHES


def test_defaults_are_torch_free():
    import subprocess
    import sys

    code = "import sys, tui_quantreport.engine.defaults; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
