"""One escaping function (escape.printable) for every string from a model or a file that reaches a
terminal: CLI error lines, merge, config, verify (the app: test_security_app)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import one_line, run

from tui_quantreport.engine.escape import printable

TINY = Path(__file__).parent / "models" / "tiny.py"
ESC = "\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07"


def _no_controls(text: str) -> bool:
    return "\x1b" not in text and "\x07" not in text and "\r" not in text


@pytest.mark.parametrize(
    "text",
    ["a\nb", "a\rb", ESC, "nul\x00", "sur\ud800", "bidi\u202e", "ls\u2028", "del\x7f", "c1\x9b31m"],
)
def test_printable_leaves_nothing_a_terminal_acts_on(text):
    shown = printable(text)
    assert shown.isprintable() and shown.encode("utf-8")
    assert printable("plain é 中") == "plain é 中"


def test_cli_error_lines_are_printable(tmp_path, capsys):
    code, _, err = run(capsys, "report", tmp_path / f"missing{ESC}.py")
    line = one_line(code, err)
    assert _no_controls(line) and "\\x1b" in line


def test_merge_lines_are_printable(tmp_path, capsys):
    good = tmp_path / "a.qstats"
    assert run(capsys, "calibrate", TINY, "--output", good, "--batches", "1")[0] == 0
    code, _, err = run(capsys, "merge", good, tmp_path / f"b{ESC}.qstats", "--output", tmp_path / "c.qstats")
    assert _no_controls(one_line(code, err))
    out = tmp_path / f"c{ESC}.qstats"
    code, _, err = run(capsys, "merge", good, good, "--output", out)
    assert code == 0 and _no_controls(err) and "\\x1b" in err


def test_stats_mismatch_line_is_printable(tmp_path, capsys):
    stats = tmp_path / f"s{ESC}.qstats"
    assert run(capsys, "calibrate", TINY, "--output", stats, "--batches", "1")[0] == 0
    other = tmp_path / "other.py"
    other.write_text(TINY.read_text().replace("nn.Linear(16, 4)", "nn.Linear(16, 5)"))
    code, _, err = run(capsys, "report", other, "--stats", stats, "--probe-batches", "0")
    assert _no_controls(one_line(code, err, "different model"))


def test_config_lines_are_printable(tmp_path, capsys):
    pytest.importorskip("torchao")
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.spec import load_model

    model = tmp_path / "hostile.py"
    model.write_text(
        "import torch\nfrom torch import nn\n"
        f"def build_model():\n    m = nn.Sequential()\n    m.add_module({('c' + ESC)!r}, nn.Conv2d(3, 3, 1))\n    return m\n"
        "def calibration_batches():\n    return [torch.randn(1, 3, 4, 4)]\n"
    )
    catalog = ModelCatalog.build(load_model(str(model)).model)
    plan = tmp_path / "plan.json"
    entry = {"c" + ESC: "dynamic"}
    plan.write_text(json.dumps(Plan(entry, catalog.class_name, catalog.fingerprint).to_json_data()))
    out = tmp_path / f"out{ESC}.py"
    code, _, err = run(capsys, "config", model, "--plan", plan, "--target", "torchao", "--output", out)
    assert code == 0, err
    assert "changed:" in err and _no_controls(err) and "\\x1b" in err


def test_verify_text_is_printable():
    from tui_quantreport.engine.apply.common import Change
    from tui_quantreport.engine.apply.verify import VerifyFinding, VerifyResult

    result = VerifyResult(
        "torchao",
        "torchao",
        1,
        1.0,
        None,
        "",
        2.0,
        "",
        {},
        [],
        [],
        [Change("m" + ESC, "dynamic", "float", "why\n" + ESC)],
        [VerifyFinding("gap", "m" + ESC, "finding " + ESC)],
    )
    assert _no_controls(result.to_text())
