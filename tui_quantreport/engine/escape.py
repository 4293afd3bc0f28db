"""Showing names from the model or the user literally in exports.

Module names, paths and messages come from the user's model: in text and
Markdown they must not move the terminal (escape sequences, newlines), and in
Markdown they must not become code, tables or HTML.
"""

from __future__ import annotations

import re


def printable(text: str) -> str:
    """``text`` on one line with nothing a terminal acts on: newlines, escape sequences and other
    non-printable characters are written as Python escapes (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


#: Characters Markdown would act on in running text: emphasis, code, tables, raw HTML, escapes.
_MD_SPECIAL = {ch: "\\" + ch for ch in "\\`*|"}
_MD_SPECIAL.update({"<": "&lt;", ">": "&gt;", "&": "&amp;"})


def markdown_text(text: str) -> str:
    """Running text (a reason, a summary, a path) shown literally in Markdown, also inside a table cell."""
    return "".join(_MD_SPECIAL.get(ch, ch) for ch in printable(text))


def markdown_code(text: str, in_table: bool = False) -> str:
    """``text`` as a Markdown code span, whatever backticks it holds (CommonMark: a longer fence).
    Raw HTML is not interpreted inside a code span; ``in_table`` escapes pipes for a table cell."""
    text = printable(text)
    if in_table:
        text = text.replace("|", "\\|")  # GFM: a pipe ends a table cell, even inside a code span
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"
