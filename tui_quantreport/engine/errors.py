"""The errors a user can cause, each carrying one clear sentence.

Everything the user can get wrong (a model spec, a parameter value, a batch the
model rejects) raises a subclass of :class:`UserError`. The command line prints
``str(error)`` and exits with status 2; the app shows the same sentence.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, described in one sentence."""


class SpecError(UserError):
    """A model or calibration spec that cannot be loaded."""


class ParamError(UserError):
    """A detector parameter, backend or detector name that is not valid."""


class CalibrationError(UserError):
    """A calibration batch that the model rejected.

    ``batch`` is the 1-based index of the failing batch and ``module`` the fully
    qualified name of the innermost module that raised ("" for the root), when
    it is known.
    """

    def __init__(self, message: str, *, batch: int | None = None, module: str | None = None):
        super().__init__(message)
        self.batch = batch
        self.module = module


class CalibrationCancelled(Exception):
    """Calibration was cancelled between batches; earlier results stay as they were."""


def exit_call(exc: SystemExit) -> str:
    """``called sys.exit(0)``: a model file's SystemExit is a bad input like any other error."""
    code = "" if exc.code is None else repr(exc.code)
    return f"called sys.exit({code})"
