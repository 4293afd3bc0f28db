"""What the command-line tests share: run ``main`` (in process or as a subprocess), write a model
file, and check the one-clear-line promise."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tui_quantreport.cli import main

ROOT = Path(__file__).resolve().parent.parent
#: A small model file (a Sequential of 7 modules with its calibration batches).
TINY = str(Path(__file__).parent / "models" / "tiny.py")


def model_file(folder: Path, source: str, name: str = "model.py") -> Path:
    """Write ``source`` (dedented) as a model file in ``folder``."""
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def subprocess_cli(*argv, cwd=None, timeout=120):
    """``python -m tui_quantreport ARGV`` in a fresh process (this checkout's package)."""
    return subprocess.run(
        [sys.executable, "-m", "tui_quantreport", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


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
