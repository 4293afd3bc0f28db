"""benchmarks/results.md: one section per device, merged, never clobbering the others.

Sections are delimited by HTML comments (``<!-- section: KEY -->`` ...
``<!-- end section: KEY -->``) with KEY ``cpu`` or ``cuda: <card name>``; a run
replaces only its own device's section.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

TITLE = "# tui-quantreport performance benchmark"
INTRO = (
    "Produced by `python -m benchmarks.run` (see `benchmarks/README.md`). One section per device; "
    "each run replaces only its own device's section. Medians of the repetitions after a warm-up; "
    "numbers are measurements, not pass/fail tests."
)
_SECTION = re.compile(r"<!-- section: (?P<key>.+?) -->\n(?P<body>.*?)<!-- end section: (?P=key) -->\n?", re.S)


def read_sections(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    return {m.group("key"): m.group("body") for m in _SECTION.finditer(text)}


def read_header(path: Path) -> str | None:
    """The machine/date block between the intro and the first section, if any."""
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    start = text.find(INTRO)
    end = text.find("<!-- section: ")
    if start < 0 or end < 0:
        return None
    header = text[start + len(INTRO) : end].strip()
    return header or None


def write_results(path: Path, key: str, body: str, header: str) -> None:
    """Merge ``body`` as section ``key``; ``header`` (machine, date) goes under the title.

    The header describes the CPU run's machine: a CUDA run (often on another
    machine) keeps the existing header and carries its own machine lines.
    """
    sections = read_sections(path)
    if key != "cpu":
        header = read_header(path) or header
    sections[key] = body if body.endswith("\n") else body + "\n"
    order = sorted(sections, key=lambda k: (k != "cpu", k))
    parts = [TITLE, "", INTRO, "", header.rstrip(), ""]
    for name in order:
        parts.append(f"<!-- section: {name} -->")
        parts.append(sections[name].rstrip("\n"))
        parts.append(f"<!-- end section: {name} -->")
        parts.append("")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)


def replace_section(path: Path, section: str, text: str) -> None:
    """Put ``text`` (a whole ``<!-- section: SECTION -->`` ... block) in ``path``: in place of the
    section of that name, or appended when it is not there yet."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    start, end = f"<!-- section: {section} -->", f"<!-- end section: {section} -->"
    if start in current and end in current:
        head, _, rest = current.partition(start)
        _, _, tail = rest.partition(end)
        current = head + text.rstrip("\n") + tail
    else:
        current = current.rstrip("\n") + "\n\n" + text
    path.write_text(current, encoding="utf-8")


def each_model(spec: str, run: Callable[[str], Any]) -> list[Any]:
    """``run(name)`` for each name of a comma-separated ``--models`` value, saying which on stderr."""
    results = []
    for name in [m.strip() for m in spec.split(",") if m.strip()]:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results.append(run(name))
    return results


def command_of(prog: str, argv: list[str] | None) -> str:
    """The command line that reproduces a run: ``python -m PROG`` and the arguments it was given."""
    shown = argv if argv is not None else sys.argv[1:]
    return f"python -m {prog}" + (f" {' '.join(shown)}" if shown else "")


def section_end(section: str, command: str, seconds: float, note: str = "") -> list[str]:
    """A benchmark section's last lines: the command that reproduces it, the run's total seconds (and
    ``note``, inside the parentheses), the section's end marker."""
    return [f"Command: `{command}` (total {seconds:.0f} s{note})", f"<!-- end section: {section} -->"]


def emit(path: Path, section: str, text: str, write: bool) -> None:
    """Print a benchmark's section and, unless ``--no-write``, put it in ``path`` in place of its last run."""
    print(text)
    if write:
        replace_section(path, section, text)
