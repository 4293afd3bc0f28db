"""Reading the files a user hands the tool (plans, settings, a stats file's JSON) within bounds:
the size is checked before the file is read, the nesting depth before the JSON is parsed, and
numbers must be finite. Every failure is a :class:`~.errors.UserError` subclass the caller
chooses: one sentence, never a traceback or unbounded memory. Torch-free.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.escape import printable

#: A plan or a settings file larger than this is not one (a plan for 100k modules is ~15 MB).
MAX_JSON_BYTES = 64 * 1024 * 1024
#: Deeper nesting than any file the tool writes (plans: 4, stats headers: about 8).
MAX_DEPTH = 64


def read_text(
    path: str | os.PathLike, what: str, error: type[UserError] = UserError, limit: int = MAX_JSON_BYTES
) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes (checked before reading)."""
    target = Path(path).expanduser()
    shown = printable(os.fspath(path))
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not _regular(st.st_mode):
                raise error(f"{what} {shown} is not a regular file")
            if st.st_size > limit:
                raise error(f"{what} {shown} is {st.st_size:,} bytes, more than the {limit:,} a {what} can be")
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{what} {shown} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {shown} is a directory") from None
    except OSError as exc:
        raise error(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{what} {shown} is more than the {limit:,} bytes a {what} can be")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {shown} is not UTF-8 text (byte {exc.start})") from None


def _regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def loads(text: str, what: str, error: type[UserError] = UserError, max_depth: int = MAX_DEPTH) -> Any:
    """JSON ``text`` parsed after its nesting depth is checked; NaN, Infinity and numbers that
    overflow a float (``1e400``) are refused, so every number read is finite."""
    depth = json_depth(text)
    if depth > max_depth:
        raise error(f"{what}: JSON nested {depth} deep, more than the {max_depth} it can be")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise error(f"{what}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{what}: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"the number {name} is not allowed (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range (numbers must be finite)")
    return value


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """The deepest nesting of objects and arrays in JSON ``text`` (strings skipped)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(1 if ch in "[{" else -1 for ch in brackets), default=0)
