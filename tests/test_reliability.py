"""Issue 14: what a hostile or careless user tried, one test (or more) per numbered item.

Each test names its item (``test_i04_…`` is item 4). Model files are written
into a temporary folder by the test that needs them, so each case reads whole.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from cli_helpers import one_line, run

from tui_quantreport.cli import main
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.export import write_atomic

ROOT = Path(__file__).resolve().parent.parent
TINY = str(Path(__file__).parent / "models" / "tiny.py")


def model_file(folder: Path, source: str, name: str = "model.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def subprocess_cli(*argv, cwd=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "tui_quantreport", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# 4. --output never replaces what the user did not name ---------------------------------------


def test_i04_output_dash_writes_to_stdout(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "report", TINY, "--format", "json", "--output", "-", "--batches", "2")
    assert code == 0, err
    assert json.loads(out)["calibration"]["batches"] == 2
    assert not (tmp_path / "-").exists()


def test_i04_a_fifo_is_written_plainly_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []

    def reader():
        with open(fifo) as handle:
            received.append(handle.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    write_atomic(fifo, "hello\n")
    thread.join(10)
    assert received == ["hello\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def _private_device(tmp_path, name: str, minor: int):
    """A character device node of the memory driver (1, minor) in tmp_path: 3 is null, 7 is full."""
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a character device here: {exc}")
    return path


def test_i04_a_character_device_is_written_plainly_not_replaced(tmp_path):
    null = _private_device(tmp_path, "null", 3)  # a private /dev/null
    write_atomic(null, "x" * 1000)
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_i04_a_full_character_device_reports_the_failure(tmp_path):
    full = _private_device(tmp_path, "full", 7)  # a private /dev/full
    with pytest.raises(UserError, match="cannot write report to .*full"):
        write_atomic(full, "x" * 100_000)
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_i04_a_symlink_is_followed_and_its_target_replaced(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_i04_a_chain_of_relative_symlinks_is_followed(tmp_path):
    (tmp_path / "d").mkdir()
    real = tmp_path / "d" / "real.json"
    real.write_text("old")
    (tmp_path / "a").symlink_to("d/real.json")
    (tmp_path / "b").symlink_to("a")
    write_atomic(tmp_path / "b", "new")
    assert real.read_text() == "new" and (tmp_path / "b").is_symlink() and (tmp_path / "a").is_symlink()


def test_i04_a_socket_is_refused_in_one_line(capsys):
    folder = tempfile.mkdtemp(prefix="tqr", dir="/tmp")  # AF_UNIX paths are short
    path = os.path.join(folder, "s")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(path)
        code, out, err = run(capsys, "report", TINY, "--output", path, "--batches", "1")
        one_line(code, err, "not a regular file")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        server.close()
        os.unlink(path)
        os.rmdir(folder)


def test_i04_cli_says_where_it_wrote_a_fifo(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    thread = threading.Thread(target=lambda: received.append(open(fifo).read()), daemon=True)
    thread.start()
    code, out, err = run(capsys, "report", TINY, "--format", "json", "--output", fifo, "--batches", "1")
    thread.join(10)
    assert code == 0, err
    assert json.loads(received[0])["calibration"]["batches"] == 1
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# 5. Export path edges -------------------------------------------------------------------------


def test_i05_trailing_slash_on_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match="folder"):
        write_atomic(str(tmp_path / "missing") + "/", "x")
    assert list(tmp_path.iterdir()) == []


def test_i05_trailing_slash_on_an_existing_file_is_refused(tmp_path):
    (tmp_path / "f.json").write_text("old")
    with pytest.raises(UserError):
        write_atomic(str(tmp_path / "f.json") + "/", "x")
    assert (tmp_path / "f.json").read_text() == "old"


def test_i05_a_250_character_name_can_be_written(tmp_path):
    name = "r" * 245 + ".json"
    write_atomic(tmp_path / name, "ok")
    assert (tmp_path / name).read_text() == "ok"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_i05_a_255_byte_multibyte_name_can_be_written(tmp_path):
    name = "é" * 125 + ".json"  # 250 + 5 bytes
    assert len(name.encode()) == 255
    write_atomic(tmp_path / name, "ok")
    assert (tmp_path / name).read_text() == "ok"


def _killed_by_sigterm_leaving_only_the_old_file(script: str, tmp_path, target) -> None:
    """Run ``script`` (it writes ``target`` and SIGTERMs itself mid-write): the process ends as
    SIGTERM ends it, and the folder holds the old file only (no temporary file)."""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stderr)
    assert "survived" not in proc.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert target.read_text() == "old"


def test_i05_sigterm_during_a_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from tui_quantreport.engine import export
        real_fsync = os.fsync
        def slow_fsync(fd):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            real_fsync(fd)
        export.os.fsync = slow_fsync
        export.write_atomic({str(target)!r}, "new" * 1_000_000)
        print("survived")
        """
    )
    _killed_by_sigterm_leaving_only_the_old_file(script, tmp_path, target)


def test_i05_sigterm_during_a_write_in_a_worker_thread_leaves_no_temp_file(tmp_path):
    """The app writes in worker threads, which cannot set signal handlers: the handler installed in
    the main thread (cli.run_app does it before the app starts) removes their temporary files."""
    target = tmp_path / "r.json"
    target.write_text("old")
    script = textwrap.dedent(
        f"""
        import os, signal, threading, time
        from tui_quantreport.engine import export
        assert export.install_sigterm_cleanup()
        real_fsync = os.fsync
        def slow_fsync(fd):
            assert [p for p in os.listdir({str(tmp_path)!r}) if p.endswith(".tmp")]
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            real_fsync(fd)
        export.os.fsync = slow_fsync
        worker = threading.Thread(target=export.write_atomic, args=({str(target)!r}, "new" * 1_000_000))
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
        print("survived")
        """
    )
    _killed_by_sigterm_leaving_only_the_old_file(script, tmp_path, target)


# 7. SystemExit from a model file is bad input --------------------------------------------------


@pytest.mark.parametrize(
    "where, body",
    [
        ("build_model", "def build_model():\n    sys.exit(0)\n"),
        ("build_model", "def build_model():\n    raise SystemExit('no GPU here')\n"),
        ("importing", "sys.exit(3)\n"),
        (
            "calibration_batches",
            "def build_model():\n    return nn.Linear(2, 2)\n\ndef calibration_batches():\n    sys.exit(0)\n",
        ),
        (
            "batch 2",
            "def build_model():\n    return nn.Linear(2, 2)\n\n"
            "def calibration_batches():\n    yield torch.ones(1, 2)\n    sys.exit(0)\n",
        ),
        (
            "forward",
            "class M(nn.Module):\n    def forward(self, x):\n        sys.exit(0)\n\n"
            "def build_model():\n    return M()\n\ndef calibration_batches():\n    return [torch.ones(1)]\n",
        ),
    ],
)
def test_i07_system_exit_in_a_model_file_is_one_line_exit_2(tmp_path, capsys, where, body):
    path = model_file(tmp_path, "import sys\nimport torch\nfrom torch import nn\n\n" + body)
    code, out, err = run(capsys, "report", path)
    line = one_line(code, err, "exit")
    assert where.split()[0] in line
    assert out == ""


def test_i07_system_exit_in_build_model_is_an_error_in_the_app(tmp_path):
    from tui_quantreport.tui.model_session import ModelSession

    path = model_file(tmp_path, "import sys\n\ndef build_model():\n    sys.exit(0)\n")
    with pytest.raises(UserError, match=r"build_model\(\) called sys.exit\(0\)"):
        ModelSession.load(str(path), None)


# 8. Argument errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["report"], "MODEL"),
        (["report", TINY, "--format", "yaml"], "--format"),
        (["report", TINY, "--bogus"], "--bogus"),
        (["--batches", "0"], "--batches"),
        (["samples", "extra"], "extra"),
        # every subcommand, not only report: calibrate, merge, config, verify
        (["calibrate"], "'tui-quantreport calibrate --help'"),
        (["calibrate", TINY, "--output", "x.qstats", "--batches", "x"], "--batches"),
        (["merge", "a.qstats"], "'tui-quantreport merge --help'"),
        (["config", TINY, "--target", "nope", "--output", "x.py"], "'tui-quantreport config --help'"),
        (["verify"], "'tui-quantreport verify --help'"),
    ],
)
def test_i08_argument_errors_are_one_line_with_a_hint(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    one_line(code, err, fragment, "--help")
    assert "usage:" not in err


def test_i08_a_5000_digit_batches_gets_a_true_message(capsys):
    code, out, err = run(capsys, "report", TINY, "--batches", "9" * 5000)
    line = one_line(code, err, "--batches", "5000-digit")
    assert "whole number" not in line and len(line) < 300


@pytest.mark.parametrize("command", ["report", "calibrate", "merge", "config", "verify"])
def test_i08_help_still_works(capsys, command):
    with pytest.raises(SystemExit) as raised:
        main([command, "--help"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tui-quantreport {command}")


# 9. --batches N pulls exactly N batches -------------------------------------------------------


def test_i09_batches_n_never_pulls_batch_n_plus_1(tmp_path, capsys):
    path = model_file(
        tmp_path,
        """
        import torch
        from torch import nn

        def build_model():
            return nn.Linear(2, 2)

        def calibration_batches():
            for i in range(10):
                if i == 4:
                    raise RuntimeError("batch 5 must not be read")
                yield torch.ones(1, 2) * i
    """,
    )
    code, out, err = run(capsys, "report", path, "--batches", "4", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["calibration"]["batches"] == 4


def test_i09_session_pulls_exactly_max_batches():
    import torch
    from torch import nn

    from tui_quantreport.engine import Session, Settings

    pulled = []

    def source():
        for i in range(10):
            pulled.append(i)
            yield torch.ones(1, 2)

    session = Session(nn.Linear(2, 2))
    stats = session.calibrate(source(), Settings.build(), max_batches=3)
    assert stats.batches == 3 and pulled == [0, 1, 2]


# 10. The model's prints stay off the report's stream -----------------------------------------


def test_i10_model_prints_go_to_stderr_and_json_stays_valid(tmp_path):
    path = model_file(
        tmp_path,
        """
        import os
        import torch
        from torch import nn

        print("building the model")

        class Chatty(nn.Linear):
            def forward(self, x):
                print("forward!")
                os.write(1, b"raw fd write\\n")
                return super().forward(x)

        def build_model():
            print("in build_model")
            return Chatty(2, 2)

        def calibration_batches():
            print("making batches")
            return [torch.ones(1, 2)] * 3
    """,
    )
    proc = subprocess_cli("report", path, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["calibration"]["batches"] == 3
    for said in ("building the model", "in build_model", "forward!", "raw fd write", "making batches"):
        assert said in proc.stderr


def test_i10_in_process_prints_go_to_stderr(tmp_path, capsys):
    path = model_file(
        tmp_path,
        """
        import torch
        from torch import nn

        def build_model():
            print("hello from build_model")
            return nn.Linear(2, 2)

        def calibration_batches():
            return [torch.ones(1, 2)]
    """,
    )
    code, out, err = run(capsys, "report", path, "--format", "json")
    assert code == 0, err
    json.loads(out)
    assert "hello from build_model" in err


# 11. Model files Python runs, we load -----------------------------------------------------------


def test_i11_importing_a_sibling_inside_build_model(tmp_path, capsys):
    (tmp_path / "sibling_layers_i11.py").write_text("from torch import nn\n\ndef make():\n    return nn.Linear(2, 2)\n")
    path = model_file(
        tmp_path,
        """
        import torch

        def build_model():
            import sibling_layers_i11
            return sibling_layers_i11.make()

        def calibration_batches():
            import sibling_layers_i11  # and while producing batches
            return [torch.ones(1, 2)]
    """,
    )
    code, out, err = run(capsys, "report", path)
    assert code == 0, err


def test_i11_latin_1_coding_line(tmp_path, capsys):
    path = tmp_path / "latin.py"
    source = (
        "# -*- coding: latin-1 -*-\nimport torch\nfrom torch import nn\n"
        "NAME = 'caf\xe9'\n\ndef build_model():\n    return nn.Linear(2, 2)\n\n"
        "def calibration_batches():\n    return [torch.ones(1, 2)]\n"
    )
    path.write_bytes(source.encode("latin-1"))
    code, out, err = run(capsys, "report", path)
    assert code == 0, err
    from tui_quantreport.engine.spec import check_spec

    check_spec(str(path))


def test_i11_utf8_bom(tmp_path, capsys):
    path = tmp_path / "bom.py"
    source = (
        "import torch\nfrom torch import nn\n\ndef build_model():\n    return nn.Linear(2, 2)\n\n"
        "def calibration_batches():\n    return [torch.ones(1, 2)]\n"
    )
    path.write_bytes(b"\xef\xbb\xbf" + source.encode())
    code, out, err = run(capsys, "report", path)
    assert code == 0, err
    from tui_quantreport.engine.spec import check_spec

    check_spec(str(path))


def test_i11_an_existing_file_whose_name_has_a_colon_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_file(
        tmp_path,
        """
        import torch
        from torch import nn

        def build_model():
            return nn.Linear(2, 2)

        def calibration_batches():
            return [torch.ones(1, 2)]
    """,
        name="model:v2",
    )
    code, out, err = run(capsys, "report", "model:v2")
    assert code == 0, err
    (tmp_path / "sub").mkdir()
    model_file(
        tmp_path / "sub",
        "import torch\nfrom torch import nn\n\ndef build_model():\n    return nn.Linear(2, 2)\n"
        "\ndef calibration_batches():\n    return [torch.ones(1, 2)]\n",
        name="m.py:make",
    )
    code, out, err = run(capsys, "report", "sub/m.py:make")
    assert code == 0, err
    from tui_quantreport.engine.spec import check_spec

    check_spec("model:v2")
    check_spec("sub/m.py:make")


# 6. Models the hooks cannot observe: one line each, before anything expensive runs -----------

HEADER = """
import torch
from torch import nn

def calibration_batches():
    return [torch.randn(2, 4) for _ in range(3)]

"""

UNOBSERVABLE = {
    "script": (
        "def build_model():\n    return torch.jit.script(nn.Sequential(nn.Linear(4, 3), nn.ReLU()))\n",
        ["torch.jit.script", "eager"],
    ),
    "trace": (
        "def build_model():\n"
        "    return torch.jit.trace(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.randn(2, 4))\n",
        ["torch.jit.trace", "cannot be observed", "hooks"],
    ),
    "compiled_eager": (
        "def build_model():\n    return torch.compile(nn.Sequential(nn.Linear(4, 3)), backend='eager')\n",
        ["torch.compile", "_orig_mod"],
    ),
    "compiled_inductor": (
        "def build_model():\n    return torch.compile(nn.Sequential(nn.Linear(4, 3)))\n",
        ["torch.compile", "_orig_mod"],
    ),
    "nested_script": (
        "def build_model():\n    return nn.Sequential(nn.Linear(4, 4), torch.jit.script(nn.Linear(4, 3)))\n",
        ["'1'", "torch.jit.script"],
    ),
    "meta": (
        "def build_model():\n    with torch.device('meta'):\n        return nn.Sequential(nn.Linear(4, 3))\n",
        ["meta device", "0.weight"],
    ),
    "no_super": (
        "class M(nn.Module):\n    def __init__(self):\n        self.scale = 2\n\n"
        "    def forward(self, x):\n        return x * self.scale\n\n"
        "def build_model():\n    return M()\n",
        ["M.__init__", "super().__init__()"],
    ),
    "child_no_super": (
        "class C(nn.Module):\n    def __init__(self):\n        pass\n\n"
        "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(4, 3)\n        self.c = C()\n\n"
        "def build_model():\n    return M()\n",
        ["C.__init__", "'c'", "super().__init__()"],
    ),
    "int_name": (
        "def build_model():\n    m = nn.Sequential()\n    m._modules[7] = nn.Linear(4, 3)\n    return m\n",
        ["module name 7"],
    ),
    "dotted_name": (
        "def build_model():\n    m = nn.Sequential(nn.Linear(4, 3))\n"
        "    m._modules['x.y'] = nn.Linear(3, 3)\n    return m\n",
        ["module name 'x.y'"],
    ),
}


@pytest.mark.parametrize("case", sorted(UNOBSERVABLE))
@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_i06_unobservable_models_are_one_line(tmp_path, capsys, case, fmt):
    body, fragments = UNOBSERVABLE[case]
    path = model_file(tmp_path, HEADER + body)
    code, out, err = run(capsys, "report", path, "--format", fmt)
    one_line(code, err, *fragments)
    assert out == ""


def test_i06_a_submodule_made_in_forward_that_fails_is_named(tmp_path, capsys):
    path = model_file(
        tmp_path,
        HEADER
        + textwrap.dedent("""
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 3)

            def forward(self, x):
                if not hasattr(self, "extra"):
                    self.extra = nn.Linear(5, 2)  # made on the first call, with the wrong width
                return self.extra(self.fc(x))

        def build_model():
            return M()
    """),
    )
    code, out, err = run(capsys, "report", path, "--format", "markdown")
    one_line(code, err, "batch 1", "'extra' (Linear)", "mat1 and mat2")


def test_i06_odd_module_names_export_in_every_format(tmp_path, capsys):
    path = model_file(
        tmp_path,
        HEADER
        + textwrap.dedent("""
        def build_model():
            m = nn.Sequential()
            m.add_module("a|b`c<b>x</b>\\n\\x1b[31mred", nn.Linear(4, 3))
            m.add_module("[bold red]boom[/]", nn.ReLU())
            return m
    """),
    )
    for fmt in ("markdown", "text", "json"):
        code, out, err = run(capsys, "report", path, "--format", fmt)
        assert code == 0, err
        if fmt == "json":
            assert "a|b`c<b>x</b>\n\x1b[31mred" in json.loads(out)["detectors"]["outlier_detector"]["modules"]
        else:
            assert "\x1b" not in out


# 12. Exporters escape names ----------------------------------------------------------------------


def test_i12_markdown_and_text_escape_names():
    from tui_quantreport.engine.export import _code, _md, _printable

    assert _printable("a\nb\x1b[31mc\rd") == "a\\nb\\x1b[31mc\\rd"
    assert "\n" not in _md("x\ny") and "\x1b" not in _md("\x1b[2J")
    assert _md("a|b") == "a\\|b"
    assert _md("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert _md("`x`") == "\\`x\\`"
    assert _code("plain") == "`plain`"
    assert _code("a`b") == "``a`b``"
    assert _code("`a``") == "``` `a`` ```"
    assert _code("<b>") == "`<b>`"


# 12. The app shows model and user strings literally ---------------------------------------------

MARKUP_MODEL = """
import torch
from torch import nn


class Failing(nn.Module):
    def forward(self, x):
        raise RuntimeError("bad [/] input [bold]x[/bold]")


def build_model():
    m = nn.Sequential()
    m.add_module("[bold red]boom[/]", nn.Linear(4, 4))
    m.add_module("[/link]", Failing() if FAIL else nn.ReLU())
    return m


def calibration_batches():
    return [torch.randn(2, 4) for _ in range(2)]
"""


def markup_app(tmp_path: Path, fail: bool):
    from tui_quantreport.cli import app_options
    from tui_quantreport.tui.app import QuantReportApp

    path = model_file(tmp_path, f"FAIL = {fail}\n" + MARKUP_MODEL, name="markup_model.py")
    return QuantReportApp(str(path), app_options(str(path)))


def toasts_text(app) -> list[str]:
    from textual.widgets._toast import Toast

    return [str(toast.render()) for toast in app.screen.query(Toast)]


async def test_i12_app_failing_module_named_like_markup(tmp_path):
    from tui_quantreport.tui.panes.module_tree import ModuleTree

    app = markup_app(tmp_path, fail=True)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        tree = app.query_one(ModuleTree)
        label = tree.nodes["[bold red]boom[/]"].label
        assert label.plain.startswith("[bold red]boom[/]") and label.spans[0].style != "bold red"
        app.main.go_to_module("[bold red]boom[/]")
        for _ in range(50):
            await pilot.pause(0.02)
        title = app.query_one("#detail-title").render()
        assert "[bold red]boom[/]" in str(title), str(title)
        await pilot.press("c")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = "\n".join(toasts_text(app))
        assert "'[/link]'" in shown and "bad [/] input [bold]x[/bold]" in shown, shown
        status = app.query_one("#calibration-status").render()
        assert "[/link]" in str(status)
    assert app.return_code in (None, 0)


async def test_i12_app_export_path_with_markup(tmp_path):
    app = markup_app(tmp_path, fail=False)
    (tmp_path / "x[").mkdir()
    target = str(tmp_path / "x[") + "/]y.json"
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        from textual.widgets import Input

        app.screen.query_one("#export-path", Input).value = target
        await pilot.press("enter")
        await pilot.pause()
        assert Path(target).exists()
        assert any(target in text for text in toasts_text(app)), toasts_text(app)
    assert app.return_code in (None, 0)


def test_i12_palette_shows_module_names_literally():
    from textual.fuzzy import Matcher

    from tui_quantreport.tui.commands import highlight

    shown = highlight(Matcher("boom"), "Go to [bold red]boom[/]")
    assert shown.plain == "Go to [bold red]boom[/]"
    shown = highlight(Matcher("x"), "Go to [/link]")
    assert shown.plain == "Go to [/link]"


# 1. Tensors with no elements are skipped, counted and reported, never calls --------------------

EMPTY_MODEL = """
import torch
from torch import nn

def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

def calibration_batches():
    gen = torch.Generator().manual_seed(1)
    real = [torch.randn(16, 4, generator=gen) * (1 + i) for i in range(REAL)]
    return real + [torch.randn(0, 4)] * EMPTY
"""


def report_json(capsys, tmp_path, real, empty, name):
    path = model_file(tmp_path, f"REAL, EMPTY = {real}, {empty}\n" + EMPTY_MODEL, name=name)
    code, out, err = run(capsys, "report", path, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_i01_empty_batches_change_nothing_but_are_reported(tmp_path, capsys):
    real = report_json(capsys, tmp_path, 2, 0, "real.py")
    mixed = report_json(capsys, tmp_path, 2, 2, "mixed.py")
    dyn, dyn_real = (d["detectors"]["dynamic_vs_static_detector"]["modules"] for d in (mixed, real))
    for fqn in ("0", "2"):
        for key in ("pre_observer_comp_stat", "post_observer_comp_stat", "dynamic_recommended"):
            assert dyn[fqn][key] == dyn_real[fqn][key], (fqn, key)
    out_mixed = mixed["detectors"]["outlier_detector"]["modules"]["0"]
    out_real = real["detectors"]["outlier_detector"]["modules"]["0"]
    assert out_mixed["sufficient_batches"] == out_real["sufficient_batches"]
    assert out_mixed["percentile_ratio"] == out_real["percentile_ratio"]
    assert mixed["points"]["0"]["pre"]["calls"] == 2
    assert mixed["points"]["0"]["pre"]["empty_skipped"] == 2
    assert real["points"]["0"]["pre"]["empty_skipped"] == 0


def test_i01_all_empty_batches_say_so(tmp_path, capsys):
    data = report_json(capsys, tmp_path, 0, 3, "all_empty.py")
    for det in ("dynamic_vs_static_detector", "outlier_detector", "input_weight_equalization_detector"):
        entry = data["detectors"][det]["modules"]["0"]
        assert entry["status"] == "not_observed", (det, entry)
        assert "empty" in entry["reason"], (det, entry["reason"])
        assert "NaN" not in entry["reason"] and "number of channels" not in entry["reason"]
    path = tmp_path / "all_empty.py"
    code, out, err = run(capsys, "report", path, "--format", "text")
    assert "empty" in out


def test_i01_accumulator_skips_empty_tensors():
    import torch

    from tui_quantreport.engine import Session, Settings

    session = Session(torch.nn.Sequential(torch.nn.Linear(4, 2)))
    batches = [torch.randn(3, 4), torch.randn(0, 4), torch.randn(3, 4) * 2]
    stats = session.calibrate(batches, Settings.build())
    point = stats.point("0", "pre")
    assert point.calls == 2 and point.empty == 1
    alone = session.calibrate([batches[0], batches[2]], Settings.build()).point("0", "pre")
    assert point.comparison_stat == alone.comparison_stat
    merged = stats.merge(stats).point("0", "pre")
    assert merged.calls == 4 and merged.empty == 2


# 2. --ch-axis out of range: per point, never clamped -------------------------------------------


@pytest.mark.parametrize("axis", ["99", "-5"])
def test_i02_out_of_range_channel_axis_is_never_clamped(capsys, axis):
    code, out, err = run(capsys, "report", TINY, "--format", "json", f"--ch-axis={axis}")
    assert code == 0, err
    data = json.loads(out)
    outliers = data["detectors"]["outlier_detector"]["modules"]
    assert not any(entry["status"] == "recommend" for entry in outliers.values())
    for fqn in ("0", "3"):  # a 4-D and a 2-D input: out of range for both
        assert outliers[fqn]["status"] == "not_applicable"
        assert "out of range" in outliers[fqn]["reason"]
        assert data["points"][fqn]["pre"]["axis"] is None
        assert "out of range" in data["points"][fqn]["pre"]["axis_reason"]


def test_i02_an_axis_in_range_is_recorded_per_point(capsys):
    code, out, err = run(capsys, "report", TINY, "--format", "json", "--ch-axis=1")
    assert code == 0, err
    points = json.loads(out)["points"]
    assert points["0"]["pre"]["axis"] == 1 and points["3"]["pre"]["axis"] == 1


# 3. Very large values: no overflow into inf or NaN ---------------------------------------------

LARGE_MODEL = """
import torch
from torch import nn

DTYPE = getattr(torch, DTYPE_NAME)

def build_model():
    fc = nn.Linear(1, 1).to(DTYPE)
    with torch.no_grad():
        fc.weight.fill_(1.0)
        fc.bias.zero_()
    return nn.Sequential(fc)

def calibration_batches():
    return [torch.tensor([[-SCALE], [SCALE]], dtype=DTYPE) for _ in range(4)]
"""


@pytest.mark.parametrize("dtype, scale", [("float32", 3e38), ("float64", 1e300)])
def test_i03_huge_finite_values_give_finite_statistics(tmp_path, capsys, dtype, scale):
    path = model_file(tmp_path, f"DTYPE_NAME, SCALE = {dtype!r}, {scale!r}\n" + LARGE_MODEL)
    # The calibration statistics; the measured-SQNR section (--probe-batches) simulates int8 with
    # float32 scales, where a range of 6e38 cannot be represented: not part of this check.
    code, out, err = run(capsys, "report", path, "--format", "json", "--probe-batches", "0")
    assert code == 0, err
    assert "overflow" not in err.lower()
    entry = json.loads(out)["detectors"]["dynamic_vs_static_detector"]["modules"]["0"]
    assert entry["pre_observer_comp_stat"] == pytest.approx(1.0)
    assert entry["post_observer_comp_stat"] == pytest.approx(1.0)
    assert entry["post_observer_data_dist"] == "stationary"
    assert "NaN" not in entry["reason"] and "infinite" not in entry["reason"]
    code, text, err = run(capsys, "report", path, "--format", "text", "--probe-batches", "0")
    assert "inf" not in text.replace("info", "") and "nan" not in text.lower()


def test_i03_comparison_stat_is_never_inf_or_nan():
    from tui_quantreport.engine.stats import PointStats

    point = PointStats(
        calls=2,
        axis=1,
        shapes=((1,),),
        global_min=-1e308,
        global_max=1e308,
        range_sum=math.inf,
        channel_min=None,
        channel_max=None,
    )
    assert point.comparison_stat is None


# 13. Observer buffers restored in place; the re-run is said and can be skipped -----------------


def test_i13_observer_buffers_keep_identity_and_values():
    import torch
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

    from tui_quantreport.engine import Session, Settings

    class Observed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.obs = MinMaxObserver()
            self.pc = PerChannelMinMaxObserver(ch_axis=1)

        def forward(self, x):
            return self.pc(self.obs(self.fc(x)))

    model = Observed()
    model(torch.ones(2, 4))  # the observers have values before calibration
    held = {name: buf for name, buf in model.named_buffers()}
    before = {name: buf.clone() for name, buf in held.items()}
    Session(model).calibrate([torch.randn(2, 4) * 100 for _ in range(3)], Settings.build())
    for name, buf in model.named_buffers():
        assert buf is held[name], name
        assert torch.equal(buf, before[name]), name


def test_i13_fresh_per_channel_observer_restored_to_its_empty_buffers():
    import torch
    from torch.ao.quantization import PerChannelMinMaxObserver

    from tui_quantreport.engine import Session, Settings

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), PerChannelMinMaxObserver(ch_axis=1))
    held = {name: buf for name, buf in model.named_buffers()}
    before = {name: buf.clone() for name, buf in held.items()}
    Session(model).calibrate([torch.randn(2, 4) for _ in range(2)], Settings.build())
    for name, buf in model.named_buffers():
        assert buf is held[name] and buf.shape == before[name].shape and torch.equal(buf, before[name]), name


RERUN_MODEL = """
import torch
from torch import nn

CALLS = []

class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        CALLS.append(x.shape)
        return self.fc(x)

def build_model():
    return Counting()

def calibration_batches():
    return [torch.randn(2, 4), torch.randn(2, 5)]
"""


def test_i13_the_rerun_is_said_and_can_be_skipped(tmp_path, capsys):
    path = model_file(tmp_path, RERUN_MODEL, name="rerun_model_i13.py")
    code, out, err = run(capsys, "report", path)
    one_line(code, err, "batch 2 was rejected in module 'fc' (Linear)", "ran batch 2 again")
    code, out, err = run(capsys, "report", path, "--no-rerun")
    line = one_line(code, err, "batch 2 was rejected", "--no-rerun")
    assert "module 'fc'" not in line


def test_i13_session_without_rerun_runs_the_failing_batch_once():
    import torch

    from tui_quantreport.engine import CalibrationError, Session, Settings

    calls = []
    model = torch.nn.Linear(4, 3)
    model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape))
    session = Session(model)
    with pytest.raises(CalibrationError, match="not run again"):
        session.calibrate([torch.randn(2, 4), torch.randn(2, 5)], Settings.build(), rerun_failures=False)
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(CalibrationError, match="ran batch 2 again"):
        session.calibrate([torch.randn(2, 4), torch.randn(2, 5)], Settings.build())
    assert len(calls) == 3


def test_i04_dev_stdout_into_a_pipe_prints_the_report():
    proc = subprocess_cli("report", TINY, "--format", "json", "--probe-batches", "0", "--output", "/dev/stdout")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["format"] == "tui-quantreport.report/1"


def test_i04_dev_stdout_redirected_to_a_file_writes_through_it(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("kept\n")
    inode = os.stat(target).st_ino
    with open(target, "a") as handle:  # the shell's `>> out.txt`
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tui_quantreport",
                "report",
                TINY,
                "--probe-batches",
                "0",
                "--output",
                "/dev/stdout",
            ],
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert proc.returncode == 0, proc.stderr
    text = target.read_text()
    assert text.startswith("kept\n") and "Sequential, 7 modules" in text
    assert os.stat(target).st_ino == inode  # the same file, not one renamed over it
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
