"""The one way a thread worker of the app ends: a result, a cancellation or a failure, each a message.

Every ``@work(thread=True)`` job of the main screen runs its body through :func:`run_in_thread`:
the body returns the message that carries its result (or None when it has nothing to say), a
cancellation (:class:`CalibrationCancelled`, raised between batches) becomes the message the
caller gives for it, and any other exception becomes a one-line message; the user's model and data
can raise anything, and the app says it rather than dying with a traceback.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.message import Message
from textual.message_pump import MessagePump

from tui_quantreport.engine.errors import CalibrationCancelled, UserError


def said(exc: BaseException) -> str:
    """``exc`` in one line: a :class:`UserError`'s own words, anything else with its type's name."""
    return str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"


def _nothing() -> None:
    return None


def run_in_thread(
    pump: MessagePump,
    job: Callable[[], Message | None],
    failed: Callable[[BaseException], Message | None],
    cancelled: Callable[[], Message | None] = _nothing,
) -> None:
    """Run ``job`` (in the calling worker thread) and post to ``pump`` the message it returns,
    ``cancelled()`` when it was cancelled, or ``failed(exc)`` when it raised (None: nothing posted)."""
    try:
        message = job()
    except CalibrationCancelled:
        message = cancelled()
    except Exception as exc:  # noqa: BLE001 - the user's model can raise anything: said, never a traceback
        message = failed(exc)
    if message is not None:
        pump.post_message(message)
