"""One writer for every file the tool writes: all or nothing, side-cars checked before anything
is written, never over an input of the same command, special files and long names handled."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from cli_helpers import one_line, run

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.export import write_atomic, write_files

TINY = Path(__file__).parent / "models" / "tiny.py"


def _tiny_plan(directory: Path) -> Path:
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.spec import load_model

    catalog = ModelCatalog.build(load_model(str(TINY)).model)
    plan = Plan({"3": "dynamic", "5": "weight_only"}, catalog.class_name, catalog.fingerprint, "x86", probe_batches=1)
    path = directory / "plan.json"
    path.write_text(json.dumps(plan.to_json_data()), encoding="utf-8")
    return path


def test_existing_sidecars_are_refused_before_anything_is_written(tmp_path):
    main, side = tmp_path / "cfg.py", tmp_path / "cfg.json"
    write_files([(main, "main"), (side, "new")], protect=[side])  # a side-car that is not there yet
    assert side.read_text() == "new"
    side.unlink()
    main.unlink()
    side.write_text("precious")
    with pytest.raises(UserError, match=r"cfg\.json exists and would be replaced.*--force"):
        write_files([(main, "main"), (side, "new")], protect=[side])
    assert side.read_text() == "precious" and not main.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.json"]
    write_files([(main, "main"), (side, "new")])  # --force: the caller protects nothing
    assert side.read_text() == "new" and main.read_text() == "main"


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="the torchao export needs torchao")
def test_config_does_not_replace_a_model_json_beside_its_output(tmp_path, capsys):
    plan = _tiny_plan(tmp_path)
    (tmp_path / "model.json").write_text("my data")
    (tmp_path / "model.safetensors").write_bytes(b"my weights")
    output = tmp_path / "model.py"
    argv = ["config", TINY, "--plan", plan, "--target", "torchao", "--output", output]
    code, _, err = run(capsys, *argv)
    one_line(code, err, "model.json", "--force")
    assert (tmp_path / "model.json").read_text() == "my data"
    assert (tmp_path / "model.safetensors").read_bytes() == b"my weights"
    assert not output.exists()
    code, _, err = run(capsys, *argv, "--force")
    assert code == 0, err
    assert json.loads((tmp_path / "model.json").read_text())["format"] == "tui-quantreport.torchao-config/1"
    (tmp_path / "model.py").unlink()
    code, _, err = run(capsys, *argv)  # the side-cars are now a previous export's: replaced without --force
    assert code == 0, err
    assert output.exists()


@pytest.mark.parametrize("command", ["report", "calibrate", "config"])
def test_an_output_naming_the_models_own_source_is_refused(command, tmp_path, capsys):
    model = tmp_path / "tiny.py"
    shutil.copy(TINY, model)
    before = model.read_bytes()
    link = tmp_path / "link.py"
    link.symlink_to(model)
    for output in (model, link):
        if command == "config":
            argv = ["config", model, "--plan", _tiny_plan(tmp_path), "--target", "pt2e", "--output", output]
        elif command == "calibrate":
            argv = ["calibrate", model, "--output", output, "--batches", "1"]
        else:
            argv = ["report", model, "--output", output, "--batches", "1", "--probe-batches", "0"]
        code, _, err = run(capsys, *argv)
        one_line(code, err, "input of this command")
        assert model.read_bytes() == before


def test_report_plan_out_never_replaces_the_model(tmp_path, capsys):
    pytest.importorskip("tui_quantreport.engine.quantsim")
    model = tmp_path / "tiny.py"
    shutil.copy(TINY, model)
    before = model.read_bytes()
    code, _, err = run(capsys, "report", model, "--batches", "2", "--probe-batches", "1", "--plan-out", model)
    one_line(code, err, "input of this command")
    assert model.read_bytes() == before


def test_merge_never_writes_over_one_of_its_inputs(tmp_path, capsys):
    a, b = tmp_path / "a.qstats", tmp_path / "b.qstats"
    for path in (a, b):
        code, _, err = run(capsys, "calibrate", TINY, "--output", path, "--batches", "1")
        assert code == 0, err
    before = a.read_bytes()
    code, _, err = run(capsys, "merge", a, b, "--output", a)
    one_line(code, err, "input of this command")
    assert a.read_bytes() == before
    code, _, err = run(capsys, "merge", a, b, "--output", tmp_path / "c.qstats")
    assert code == 0, err


def test_every_special_file_rule_holds_for_a_multi_file_write(tmp_path):
    fifo_dir = tmp_path / "d"
    fifo_dir.mkdir()
    with pytest.raises(UserError, match="directory"):
        write_files([(tmp_path / "x.py", "a"), (fifo_dir, "b")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "x.json"
    link.symlink_to(real)
    write_files([(tmp_path / "x.py", "a"), (link, "new")])
    assert link.is_symlink() and real.read_text() == "new"
    dangling = tmp_path / "y.json"
    dangling.symlink_to(tmp_path / "nowhere" / "z.json")
    with pytest.raises(UserError, match="symlink to a missing file"):
        write_files([(tmp_path / "y.py", "a"), (dangling, "b")])
    assert not (tmp_path / "y.py").exists()


def test_a_failure_on_the_last_file_leaves_nothing_behind(tmp_path, monkeypatch):
    """A full disk while writing the second file: no temporary file stays, nothing is replaced."""
    (tmp_path / "a.py").write_text("old a")
    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(UserError, match="No space left"):
        write_files([(tmp_path / "a.py", "new a"), (tmp_path / "a.json", "new json")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py"]
    assert (tmp_path / "a.py").read_text() == "old a"


def test_long_names_are_written_or_refused_cleanly(tmp_path):
    name = "n" * 247 + ".py"  # 250 characters
    write_files([(tmp_path / name, "x")])
    assert (tmp_path / name).read_text() == "x"
    sidecar = tmp_path / ("n" * 247 + ".safetensors")  # 259 > NAME_MAX: refused in one line
    with pytest.raises(UserError, match="cannot write"):
        write_files([(tmp_path / ("m" * 247 + ".py"), "x"), (sidecar, "y")])
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_fifo_sidecar_is_written_into_not_replaced(tmp_path):
    import threading

    fifo = tmp_path / "cfg.json"
    os.mkfifo(fifo)
    got = []
    thread = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    thread.start()
    write_files([(tmp_path / "cfg.py", "main"), (fifo, "data")])
    thread.join(10)
    assert got == ["data"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_the_same_file_twice_is_refused(tmp_path):
    with pytest.raises(UserError, match="twice"):
        write_files([(tmp_path / "a", "1"), (tmp_path / "." / "a", "2")])
    assert list(tmp_path.iterdir()) == []


def test_hostile_output_paths_are_shown_printable(tmp_path):
    bad = tmp_path / "no\x1b]0;pwned\x07dir" / "out.json"
    with pytest.raises(UserError) as info:
        write_atomic(bad, "x")
    assert "\x1b" not in str(info.value) and "\\x1b" in str(info.value)
