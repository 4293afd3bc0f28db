"""The module tree kept between runs (engine ``launch_tree``; issue 10, launch to a populated
tree): read back before torch is imported, matched to the model file it came from, shown while
the model loads and replaced by the real catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path

from app_helpers import make_app, settle

from tui_quantreport.engine import launch_tree
from tui_quantreport.tui.model_session import ModelSession
from tui_quantreport.tui.panes.module_tree import ModuleTree

ROOT = Path(__file__).resolve().parents[1]
MODEL = "from torch import nn\ndef build_model():\n    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, {out}))\n"
CAL = "\ndef calibration_batches():\n    import torch\n    return [torch.randn(2, 4)]\n"


def loaded_report(spec: str):
    from tui_quantreport.cli import app_options

    return ModelSession.load(spec, app_options(spec)).report


def test_a_kept_tree_reads_back_the_same_modules_and_follows_the_file(tmp_path) -> None:
    model = tmp_path / "m.py"
    model.write_text(MODEL.format(out=3) + CAL)
    report = loaded_report(str(model))
    assert launch_tree.read(str(model)) is None  # nothing kept yet
    assert launch_tree.write(str(model), report) is not None
    kept = launch_tree.read(str(model))
    assert kept is not None and kept.batches == 0 and kept.detectors == {}
    assert kept.model_class == report.model_class
    assert [asdict(m) for m in kept.modules.values()] == [asdict(m) | {"points": ()} for m in report.modules.values()]

    model.write_text(MODEL.format(out=5) + CAL + "\n# edited\n")  # another size: another model
    assert launch_tree.read(str(model)) is None


def test_a_damaged_or_foreign_copy_is_no_copy(tmp_path) -> None:
    model = tmp_path / "m.py"
    model.write_text(MODEL.format(out=3) + CAL)
    path = launch_tree.write(str(model), loaded_report(str(model)))
    path.write_text("{not json")
    assert launch_tree.read(str(model)) is None
    path.write_text('{"format": "something else"}')
    assert launch_tree.read(str(model)) is None
    assert launch_tree.key_of("no_such_sample_or_file") is None
    assert launch_tree.key_of("package.module:factory") is None  # importable modules are not kept


def test_reading_a_kept_tree_does_not_import_torch(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    write = "from tui_quantreport.engine import launch_tree as t; from test_launch_tree import loaded_report as r; t.write('showcase', r('showcase'))"
    subprocess.run([sys.executable, "-c", write], check=True, env=dict(env, PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}"))
    check = (
        "import sys; from tui_quantreport.engine import launch_tree as t; k = t.read('showcase'); "
        "print(len(k.modules), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", check], check=True, env=env, capture_output=True, text=True).stdout
    assert out.split() == ["32", "False"]  # every module (observers included), no torch


async def test_the_app_shows_the_kept_tree_while_the_model_loads(monkeypatch) -> None:
    launch_tree.write("showcase", loaded_report("showcase"))
    held: Future = Future()
    real = ModelSession.load_in_background
    monkeypatch.setattr(ModelSession, "load_in_background", classmethod(lambda cls, spec, options: held))
    app = make_app(batches=8)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.query_one(ModuleTree)
        for _ in range(200):
            await pilot.pause(0.01)
            if len(tree.nodes) > 1:
                break
        previewed = len(tree.nodes)
        assert not app.main.loaded and previewed > 1  # the tree, before the model has loaded
        await pilot.press("j", "j")
        assert tree.current_fqn == "rgb_stem"
        real(app.spec, app.options).add_done_callback(
            lambda f: held.set_exception(f.exception()) if f.exception() else held.set_result(f.result())
        )
        await settle(app, pilot)
        assert app.main.loaded and app.report is not None and app.report.detectors
        assert len(tree.nodes) == previewed
        assert tree.current_fqn == "rgb_stem"  # the cursor stayed where the user put it
