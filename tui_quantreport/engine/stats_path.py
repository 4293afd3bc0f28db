"""What names a stats file, and the error it raises: torch-free, for the command line's checks
before the app starts (:mod:`~tui_quantreport.engine.statsfile` reads and writes the files)."""

from __future__ import annotations

import os

from tui_quantreport.engine.errors import UserError

#: The suffix that marks a stats file on the command line.
SUFFIX = ".qstats"


class StatsFileError(UserError):
    """A stats file that cannot be read, or does not belong with the model or the other files."""


def is_stats_path(text: str | os.PathLike | None) -> bool:
    """True for a path ending in ``.qstats`` (torch-free, reads nothing)."""
    return text is not None and str(text).lower().endswith(SUFFIX)
