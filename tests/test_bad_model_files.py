"""Model files that misbehave are bad input, one line each: ``SystemExit`` anywhere, models the
hooks cannot observe, and what Python accepts that we must too (prints kept off the report's
stream, sibling imports, coding lines, a BOM, a colon in a file name) (docs/bad-input.md)."""

from __future__ import annotations

import json
import textwrap

import pytest
from cli_helpers import model_file, one_line, run, subprocess_cli

from tui_quantreport.engine.errors import UserError

# SystemExit from a model file is bad input --------------------------------------------------


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
def test_system_exit_in_a_model_file_is_one_line_exit_2(tmp_path, capsys, where, body):
    path = model_file(tmp_path, "import sys\nimport torch\nfrom torch import nn\n\n" + body)
    code, out, err = run(capsys, "report", path)
    line = one_line(code, err, "exit")
    assert where.split()[0] in line
    assert out == ""


def test_system_exit_in_build_model_is_an_error_in_the_app(tmp_path):
    from tui_quantreport.tui.model_session import ModelSession

    path = model_file(tmp_path, "import sys\n\ndef build_model():\n    sys.exit(0)\n")
    with pytest.raises(UserError, match=r"build_model\(\) called sys.exit\(0\)"):
        ModelSession.load(str(path), None)


# The model's prints stay off the report's stream -----------------------------------------


def test_model_prints_go_to_stderr_and_json_stays_valid(tmp_path):
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


def test_in_process_prints_go_to_stderr(tmp_path, capsys):
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


# Model files Python runs, we load -----------------------------------------------------------


def test_importing_a_sibling_inside_build_model(tmp_path, capsys):
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


def test_latin_1_coding_line(tmp_path, capsys):
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


def test_utf8_bom(tmp_path, capsys):
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


def test_an_existing_file_whose_name_has_a_colon_is_a_file(tmp_path, capsys, monkeypatch):
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


# Models the hooks cannot observe: one line each, before anything expensive runs -----------

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
def test_unobservable_models_are_one_line(tmp_path, capsys, case, fmt):
    body, fragments = UNOBSERVABLE[case]
    path = model_file(tmp_path, HEADER + body)
    code, out, err = run(capsys, "report", path, "--format", fmt)
    one_line(code, err, *fragments)
    assert out == ""


def test_a_submodule_made_in_forward_that_fails_is_named(tmp_path, capsys):
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


def test_odd_module_names_export_in_every_format(tmp_path, capsys):
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
