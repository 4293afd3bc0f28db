"""What the command-line tests share: run ``main`` and check the one-clear-line promise."""

from tui_quantreport.cli import main


def run(capsys, *argv):
    """``main(argv)`` (every argument as a string): (exit status, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err, *fragments):
    """The promise for bad input: exit 2, one line starting with the program's name and naming
    every fragment, no traceback. Returns the line."""
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tui-quantreport: error: "), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
