"""An exported configuration file works on a colleague's machine: it does not depend on this
checkout's absolute path (a module is imported as installed first; a model file is found beside
the generated file when it is not at its recorded path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tui_quantreport.engine.core.recipes import import_model_code

MODEL = """
import torch


def build_model():
    return torch.nn.Sequential(torch.nn.Linear(4, 4))


def calibration_batches():
    return [torch.randn(2, 4) for _ in range(2)]
"""


def test_a_module_is_imported_as_installed_before_the_recorded_root(tmp_path: Path) -> None:
    before = list(sys.path)
    factory = import_model_code(
        "module", (str(tmp_path / "not-this-checkout"), "sample_models.showcase"), "build_model"
    )
    assert callable(factory)
    assert sys.path == before, "an importable module needs no path of this machine"


def test_a_model_file_moved_beside_the_config_is_found(tmp_path: Path) -> None:
    moved = tmp_path / "colleague"
    moved.mkdir()
    (moved / "my_model.py").write_text(MODEL, encoding="utf-8")
    factory = import_model_code("file", "/home/someone-else/checkout/my_model.py", "build_model", here=str(moved))
    assert isinstance(factory(), object)


def test_the_exported_file_runs_from_another_folder(tmp_path: Path) -> None:
    """Export a plan for a model file, move the model and the export to another folder, run it there."""
    here = tmp_path / "mine"
    here.mkdir()
    (here / "my_model.py").write_text(MODEL, encoding="utf-8")
    out = here / "quantize_it.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    made = subprocess.run(
        [sys.executable, "-m", "tui_quantreport", "config", str(here / "my_model.py"), "--target", "torchao-cpu",
         "--output", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    colleague = tmp_path / "colleague"
    here.rename(colleague)
    ran = subprocess.run(
        [sys.executable, str(colleague / "quantize_it.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "modules quantized by torchao" in ran.stdout
