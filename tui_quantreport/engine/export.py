"""Exporting a report: JSON for tools, Markdown for people, text for terminals.

The JSON follows ``tui-quantreport.report/1`` (see the README); non-finite
numbers are written as ``null``. :func:`write_atomic` writes to a temporary
file beside the target and renames it into place, so a failed export never
leaves a partial file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.escape import markdown_code, markdown_text, printable
from tui_quantreport.engine.measured_render import measured_markdown, measured_text
from tui_quantreport.engine.report import NOT_CALIBRATED, Finding, Report, Status, verdict_caveat
from tui_quantreport.engine.severity import (
    finding_json,
    measured_json,
    signed_db,
)

FORMAT_ID = "tui-quantreport.report/1"
FORMATS = ("json", "markdown", "text")


def provenance(report: Report) -> dict[str, Any]:
    """Who wrote the report, when, with which detectors: the tool and torch versions (read from the
    installed packages, without importing torch), the UTC time, and the enabled detectors."""
    return {
        "tool": "tui-quantreport",
        "version": _version("tui-quantreport"),
        "torch": _version("torch"),
        "time": _written_at().isoformat(timespec="seconds"),
        "enabled_detectors": list(report.detectors),
        "calibrated": report.batches > 0,
    }


def _written_at() -> datetime:
    """Now (UTC), or ``SOURCE_DATE_EPOCH`` when set (reproducible reports: the same run gives the same bytes)."""
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc)
    return datetime.now(timezone.utc)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def to_json_data(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data (non-finite floats become None)."""
    detectors = {}
    for name, det in report.detectors.items():
        modules = {}
        for fqn, finding in det.findings.items():
            entry = dict(finding.values)
            entry["status"] = finding.status.value
            entry["recommendation"] = finding.headline if finding.recommended else None
            entry["reason"] = finding.reason
            entry.update(finding_json(report, name, fqn))
            modules[fqn] = entry
        detectors[name] = {
            "params": dict(det.params),
            **det.extra,
            "summary": det.summary,
            "modules": modules,
        }
    data = {
        "format": FORMAT_ID,
        "model": {
            "spec": report.spec,
            "class": report.model_class,
            "modules": report.user_module_count,
        },
        "calibration": {"batches": report.batches},
        "generated": provenance(report),
        "detectors": detectors,
        "points": points_json(report),
    }
    measured = measured_json(report)
    if measured is not None:
        data["measured"] = measured
    return _finite(data)


def points_json(report: Report) -> dict[str, dict[str, Any]]:
    """Per observed module and side: the channel axis used and why, channels, dtype, calls."""
    points: dict[str, dict[str, Any]] = {}
    for fqn, module in report.modules.items():
        for point in module.points:
            points.setdefault(fqn, {})[point.role] = {
                "axis": point.axis,
                "axis_reason": point.axis_reason,
                "channels": point.channels,
                "dtype": point.dtype,
                "calls": point.calls,
                "empty_skipped": point.empty,
            }
    return points


def to_json(report: Report) -> str:
    return json.dumps(to_json_data(report), indent=2, allow_nan=False) + "\n"


def to_markdown(report: Report, disabled: Sequence[str] = ()) -> str:
    """A report a colleague reads: the detectors, then each flagged module (most flagged first, in
    the engine's order) with its advice, then what was not judged, grouped instead of repeated.

    ``disabled`` names the registry's detectors that were off (their titles), to say so.
    """
    lines = _markdown_head(report, disabled)
    lines += _markdown_modules(report)
    lines += _markdown_unjudged(report)
    lines += measured_markdown(report)
    return "\n".join(lines).rstrip("\n") + "\n"


def _markdown_head(report: Report, disabled: Sequence[str]) -> list[str]:
    """The title, the model and who wrote the report, and the detectors' table."""
    calibrated = report.batches > 0
    info = provenance(report)
    lines = [
        f"# Quantization report: {_md(report.spec)}",
        "",
        f"Model {_code(report.model_class)}, {report.user_module_count:,} modules, "
        + (
            f"calibrated on {report.batches:,} batches."
            if calibrated
            else "**not calibrated**: "
            "only what the model's structure and qconfigs show is judged; detectors that need "
            'activations say "not calibrated".'
        ),
        "",
        f"Written by tui-quantreport {info['version'] or '(unknown version)'} with torch "
        f"{info['torch'] or '(unknown)'} at {info['time']}.",
        "",
        *([_md(empty_note), ""] if (empty_note := _empty_note(report)) else []),
        *([f"> **{_md(warning[0].upper() + warning[1:])}**", ""] if (warning := _warning(report)) else []),
        "| Detector | Modules flagged | Parameters | Summary |",
        "| --- | ---: | --- | --- |",
    ]
    for det in report.detectors.values():
        params = ", ".join(f"{k} = {v}" for k, v in det.params.items())
        caveats = {verdict_caveat(report, f) for f in det.findings.values()} - {None}
        if caveats and not det.recommended:
            count, summary = "–", ", ".join(sorted(str(c) for c in caveats))
        else:
            count, summary = f"{len(det.recommended):,}", det.summary
        lines.append(f"| {_md(det.title)} | {count} | {_cell(params)} | {_cell(_md(summary))} |")
    for title in disabled:
        lines.append(f"| {title} | – | – | disabled |")
    return lines


def _markdown_modules(report: Report) -> list[str]:
    """Each module to change with its advice (general advice said once), then the information."""
    ranked = report.ranked_modules()
    said: set[str] = set()  # sentences already written: general advice is said once, not per module
    lines = ["", "## Modules to change", ""]
    if not ranked:
        lines.append(
            "No module has a recommendation." if report.batches > 0 else "Nothing recommended before calibration."
        )
    for fqn, names in ranked:
        module = report.modules.get(fqn)
        kind = f" ({module.class_name})" if module is not None else ""
        lines += [f"### {_code(fqn or '(model)')}{kind}", ""]
        for name in names:
            finding = report.detectors[name].findings[fqn]
            reason = _unseen_sentences(finding.reason, said)
            sev = report.severity(name, fqn)
            measured = f" *{sev.level.value}*: {_md(sev.note)}" if sev is not None else ""
            lines.append(
                f"- **{_md(report.detectors[name].title)}**: {_md(finding.headline)}."
                + (f" {_md(reason)}" if reason else "")
                + measured
            )
        lines.append("")

    informed = [(det, f) for det in report.detectors.values() for f in det.findings.values() if f.status is Status.INFO]
    if informed:
        lines += ["## Information", "", "Information (no change applies to these modules):", ""]
        lines += [
            f"- {_code(f.module or '(model)')}: {_md(f.headline)} ({_md(det.title)}). {_md(f.reason)}"
            for det, f in informed
        ]
        lines.append("")
    return lines


def _markdown_unjudged(report: Report) -> list[str]:
    """What was not judged, grouped by detector and state instead of repeated per module."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for det in report.detectors.values():
        for finding in det.findings.values():
            if finding.status in (Status.NOT_OBSERVED, Status.NOT_APPLICABLE):
                state = verdict_caveat(report, finding) or finding.status.value.replace("_", " ")
                groups.setdefault((det.title, state), []).append(finding)
    lines: list[str] = []
    if groups:
        lines += ["## Not judged", ""]
        for (title, state), findings in groups.items():
            listed = ", ".join(_code(f.module or "(model)") for f in findings)
            lines.append(f"- **{title}**, {state} ({len(findings):,} modules): {listed}.")
            if state != NOT_CALIBRATED:
                lines.append(f"  For example: {_md(findings[0].reason)}")
        lines.append("")
    return lines


def to_text(report: Report) -> str:
    """A compact plain-text report for terminals and logs."""
    lines = [
        (
            f"{_printable(report.spec)}: {_printable(report.model_class)}, {report.user_module_count:,} modules, "
            f"{report.batches:,} batches"
        ),
    ]
    if empty_note := _empty_note(report):
        lines.append(_printable(empty_note))
    if warning := _warning(report):
        lines.append(_printable(warning))
    for det in report.detectors.values():
        lines += ["", f"{det.title} [{det.glyph}]: {_printable(det.summary)}"]
        for finding in det.findings.values():
            if finding.recommended:
                sev = report.severity(det.name, finding.module)
                level = (
                    f" [{sev.level.value}{'' if sev.gain_db is None else f', {signed_db(sev.gain_db)} dB'}]"
                    if sev
                    else ""
                )
                lines.append(f"  {_printable(finding.module or '(model)')}: {_printable(finding.headline)}{level}")
    lines += measured_text(report)
    return "\n".join(lines) + "\n"


RENDERERS = {"json": to_json, "markdown": to_markdown, "text": to_text}


def render(report: Report, fmt: str, disabled: Sequence[str] = ()) -> str:
    """``report`` as ``fmt``; ``disabled`` (titles of detectors that were off) is named in Markdown."""
    if fmt not in RENDERERS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "markdown":
        return to_markdown(report, disabled)
    return RENDERERS[fmt](report)


#: Temporary names are ".<stem>.<random>.tmp": the stem is cut so the whole name fits NAME_MAX.
_TMP_STEM_BYTES = 200


def write_atomic(
    path: str | os.PathLike, text: str | bytes, *, what: str = "report", inputs: Sequence[str | os.PathLike] = ()
) -> Path:
    """Write ``text`` (or bytes) to ``path`` without replacing anything the user did not name.

    The one writer of every file the tool writes (see :func:`write_files`, which this calls):

    - a regular file (or a new one) is written through a temporary file beside it
      and a rename, so a failed export never leaves a partial file (a full disk included);
    - a symlink is followed, and its final target is replaced that way (the link stays);
    - a character device or a named pipe (``/dev/null``, ``/dev/stdout``, a FIFO) is
      opened and written plainly: it is never replaced;
    - anything else that is not a regular file (a directory, a socket, a block
      device) is refused, and so is a trailing slash (a folder) on a path that
      is not a folder;
    - ``inputs`` (the model's source file, a plan, a stats file the same command reads) are
      never written over, whatever path names them.

    ``-`` is not special here: the command line writes it to stdout itself.
    Raises :class:`UserError` naming the path and the cause. SIGTERM during the
    write removes the temporary file before the process ends.
    """
    return write_files([(path, text)], what=what, inputs=inputs)[0]


def write_files(
    contents: Sequence[tuple[str | os.PathLike, str | bytes]],
    *,
    what: str = "report",
    inputs: Sequence[str | os.PathLike] = (),
    protect: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """Write several files all or nothing, each by :func:`write_atomic`'s rules.

    Every path is checked before anything is written; ``protect`` names files that must not be
    replaced because the user did not name them (an export's side-cars: the caller decides, e.g.
    ``--force``): an existing one is refused, naming it. Then every regular file is written to a
    temporary file, devices and pipes are written, and only then are the temporary files renamed
    into place; on any failure every temporary file is removed and nothing is replaced.
    """
    resolved_inputs = [_identity(Path(os.fspath(p)).expanduser()) for p in inputs]
    protected = {os.path.abspath(Path(os.fspath(p)).expanduser()) for p in protect}
    plans: list[tuple[str, Path, Path, bytes]] = []
    for path, text in contents:
        mode, target, resolved = _check_target(path, what)
        ident = _identity(target)
        if ident is not None and ident in resolved_inputs:
            raise UserError(
                f"cannot write {what} to {_shown(target)}: it is an input of this command; choose another path"
            )
        if os.path.lexists(target) and os.path.abspath(target) in protected:
            raise UserError(
                f"cannot write {what}: {_shown(target)} exists and would be replaced; "
                "move it, choose another --output, or pass --force"
            )
        if any(resolved == other for _, _, other, _ in plans):
            raise UserError(f"cannot write {what} to {_shown(target)}: the same file twice")
        plans.append((mode, target, resolved, _encoded(text)))
    temps: list[tuple[str, Path, Path]] = []  # (temporary, resolved final, shown)
    with _cleanup_on_sigterm(lambda: [t for t, _, _ in temps]):
        try:
            for mode, target, resolved, data in plans:
                if mode == "replace":
                    _write_temporary(resolved, data, target, what, functools.partial(_record, temps, resolved, target))
            for mode, target, _, data in plans:
                if mode in ("plain", "append"):
                    _write_plainly(target, data, target, append=mode == "append", what=what)
            for tmp, resolved, shown in temps:
                try:
                    os.replace(tmp, resolved)
                except OSError as exc:
                    raise UserError(f"cannot write {what} to {_shown(shown)}: {exc.strerror or exc}") from None
            done, temps = temps, []
            for tmp, _, _ in done:
                settled_temp(tmp)
        finally:
            for tmp, _, _ in temps:
                _unlink_quietly(tmp)
                settled_temp(tmp)
    return [target for _, target, _, _ in plans]


def check_writable(path: str | os.PathLike, what: str = "report", inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse, before any slow work, a path the writer would refuse (one line); writes nothing."""
    _, target, _ = _check_target(path, what)
    ident = _identity(target)
    if ident is not None and ident in [_identity(Path(os.fspath(p)).expanduser()) for p in inputs]:
        raise UserError(f"cannot write {what} to {_shown(target)}: it is an input of this command; choose another path")
    directory = target.parent if str(target.parent) else Path(".")
    if not os.access(directory, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UserError(f"cannot write {what} to {_shown(target)}: permission denied")


def _record(temps: list[tuple[str, Path, Path]], resolved: Path, shown: Path, tmp: str) -> None:
    temps.append((tmp, resolved, shown))


def _shown(path: Path | str) -> str:
    return printable(os.fspath(path))


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing regular file (following symlinks), or None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _check_target(path: str | os.PathLike, what: str) -> tuple[str, Path, Path]:
    """How ``path`` is written: ("replace", path, the file to replace), or ("plain"/"append", ...)
    for a device, a pipe or an open descriptor; refuses anything else in one line."""
    raw = os.fspath(path)
    target = Path(raw).expanduser()
    if raw.endswith(("/", os.sep)) or (os.altsep and raw.endswith(os.altsep)):
        if target.is_dir():
            raise UserError(f"cannot write {what} to {_shown(raw)}: it is a directory")
        raise UserError(f"cannot write {what} to {_shown(raw)}: the trailing slash names a folder, and there is none")
    try:
        mode = os.stat(target).st_mode  # follows symlinks, /dev/stdout's /proc/self/fd/1 included
    except FileNotFoundError:
        mode = None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot write {what} to {_shown(target)}: {getattr(exc, 'strerror', None) or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UserError(f"cannot write {what} to {_shown(target)}: it is a directory")
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        return "plain", target, target
    if mode is not None and not stat.S_ISREG(mode):
        raise UserError(f"cannot write {what} to {_shown(target)}: it is {_kind(mode)}, not a regular file")
    if mode is None and os.path.islink(target):
        raise UserError(f"cannot write {what} to {_shown(target)}: it is a symlink to a missing file")
    resolved = Path(os.path.realpath(target))  # follows every symlink, also a chain of relative ones
    if mode is not None and _via_descriptor(target):
        # /dev/stdout (/proc/self/fd/1) redirected to a file: the shell's open file, written
        # through, appending as `>>` asked (`>` already emptied it), never renamed over.
        return "append", target, target
    directory = resolved.parent
    if not directory.is_dir():
        raise UserError(f"cannot write {what} to {_shown(target)}: directory {_shown(directory)} does not exist")
    return "replace", target, resolved


def _write_plainly(path: Path, text: str | bytes, shown: Path, append: bool = False, what: str = "report") -> None:
    """Write into a device, a pipe or an open file as it is: open, write, close (no temporary, no rename)."""
    try:
        with open(path, "ab" if append else "wb") as handle:
            handle.write(_encoded(text))
    except OSError as exc:
        raise UserError(f"cannot write {what} to {_shown(shown)}: {exc.strerror or exc}") from None


def _write_temporary(resolved: Path, data: bytes, shown: Path, what: str, made: Callable[[str], None]) -> str:
    """A temporary file beside ``resolved`` holding ``data`` (synced), with the mode a plain open()
    would give (or the replaced file's); ``made`` hears of it as soon as it exists (for the caller's
    cleanup, SIGTERM included); removed here on failure. Its name fits NAME_MAX however long the
    target's is."""
    stem = resolved.name.encode("utf-8", "surrogateescape")[:_TMP_STEM_BYTES].decode("utf-8", "ignore")
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=resolved.parent)
        made(tmp_name)
        pending_temp(tmp_name)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp_name, _existing_mode(resolved) or 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise UserError(f"cannot write {what} to {_shown(shown)}: {exc.strerror or exc}") from None
    return tmp_name


#: Temporary files being written right now, by any thread: a SIGTERM handler installed with
#: :func:`install_sigterm_cleanup` removes them (a worker thread cannot set a signal handler).
_PENDING_TEMPS: set[str] = set()
_PENDING_LOCK = threading.Lock()


def pending_temp(path: str) -> None:
    """Record a temporary file that a write is filling (removed on SIGTERM until settled)."""
    with _PENDING_LOCK:
        _PENDING_TEMPS.add(path)


def settled_temp(path: str) -> None:
    """The write of ``path`` is over (renamed into place or removed)."""
    with _PENDING_LOCK:
        _PENDING_TEMPS.discard(path)


def install_sigterm_cleanup() -> bool:
    """From the main thread, before writes start in other threads (the app's workers): on SIGTERM,
    remove every temporary file still being written, then end the process as SIGTERM would
    (the previous handler, or the default action). Returns whether it was installed (not where
    SIGTERM is ignored, or off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN or previous is None:
        return False

    def handler(signum, frame):
        with _PENDING_LOCK:
            leftovers = list(_PENDING_TEMPS)
            _PENDING_TEMPS.clear()
        for path in leftovers:
            _unlink_quietly(path)
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)
    return True


class _Terminated(BaseException):
    """SIGTERM arrived while a temporary file existed."""


@contextlib.contextmanager
def _cleanup_on_sigterm(pending: Callable[[], list[str]]) -> Iterator[None]:
    """While the block runs, SIGTERM removes the temporary file, then ends the process as SIGTERM would.

    Signal handlers can only be set from the main thread; elsewhere (the app's
    workers) the temporary file is only recorded, for the handler that
    :func:`install_sigterm_cleanup` set in the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        previous = signal.SIG_IGN
    if previous == signal.SIG_IGN or previous is None:  # ignored (or not set from Python): leave it so
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        for name in pending():
            _unlink_quietly(name)
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signal.SIGTERM, None)
        elif previous != signal.SIG_IGN:
            signal.raise_signal(signal.SIGTERM)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)


def _encoded(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


def _unlink_quietly(name: str | None) -> None:
    if name is not None:
        try:
            os.unlink(name)
        except OSError:
            pass


def _via_descriptor(path: Path) -> bool:
    """True when ``path`` is, or links to, an open file descriptor (/dev/stdout, /dev/fd/N, /proc/…/fd/N)."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on a symlink chain
        if current.startswith(("/proc/", "/dev/fd/")):
            return True
        try:
            link = os.readlink(current)
        except OSError:
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), link))
    return False


def _kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a special file"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _existing_mode(target: Path) -> int | None:
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        return None


def _warning(report: Report) -> str:
    """The measured plan's low-SQNR warning ("" when none): said at the top of the report."""
    return report.measured.warning if report.measured is not None else ""


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _unseen_sentences(text: str, said: set[str]) -> str:
    """The sentences of ``text`` not in ``said`` (which then holds them all)."""
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip())
    fresh = [s for s in sentences if s not in said]
    said.update(sentences)
    return " ".join(fresh)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _empty_note(report: Report, shown: int = 4) -> str:
    """One sentence naming where tensors with no elements were skipped, or ""."""
    found = [
        (fqn or "(model)", "input" if point.role == "pre" else "output", point.empty)
        for fqn, module in report.modules.items()
        for point in module.points
        if point.empty
    ]
    if not found:
        return ""
    total = sum(n for _, _, n in found)
    where = ", ".join(f"{fqn} {side} ({n})" for fqn, side, n in found[:shown])
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return f"Skipped {total} empty tensors (no elements; not counted as calls) at {len(found)} points: {where}{more}."


_printable, _md, _code = printable, markdown_text, markdown_code
