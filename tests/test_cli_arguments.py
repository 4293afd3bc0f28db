"""Command-line arguments: every argument error is one line with a hint to ``--help``, and
``--batches N`` pulls exactly N batches from the source (docs/bad-input.md)."""

from __future__ import annotations

import json

import pytest
from cli_helpers import TINY, model_file, one_line, run

from tui_quantreport.cli import main

# Argument errors ---------------------------------------------------------------------------


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
def test_argument_errors_are_one_line_with_a_hint(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    one_line(code, err, fragment, "--help")
    assert "usage:" not in err


def test_a_5000_digit_batches_gets_a_true_message(capsys):
    code, out, err = run(capsys, "report", TINY, "--batches", "9" * 5000)
    line = one_line(code, err, "--batches", "5000-digit")
    assert "whole number" not in line and len(line) < 300


@pytest.mark.parametrize("command", ["report", "calibrate", "merge", "config", "verify"])
def test_help_still_works(capsys, command):
    with pytest.raises(SystemExit) as raised:
        main([command, "--help"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tui-quantreport {command}")


# --batches N pulls exactly N batches -------------------------------------------------------


def test_batches_n_never_pulls_batch_n_plus_1(tmp_path, capsys):
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


def test_session_pulls_exactly_max_batches():
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
