"""Exporting a report: JSON for tools, Markdown for people, text for terminals.

The JSON follows ``tui-quantreport.report/1`` (see the README); non-finite
numbers are written as ``null``. :func:`write_atomic` writes to a temporary
file beside the target and renames it into place, so a failed export never
leaves a partial file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.report import Report, Status
from tui_quantreport.engine.severity import (
    finding_json,
    measured_json,
    measured_markdown,
    measured_text,
)

FORMAT_ID = "tui-quantreport.report/1"
FORMATS = ("json", "markdown", "text")


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
            }
    return points


def to_json(report: Report) -> str:
    return json.dumps(to_json_data(report), indent=2, allow_nan=False) + "\n"


def to_markdown(report: Report) -> str:
    """A human-readable report: a summary table, then each recommendation and its reason."""
    lines = [
        f"# Quantization report: {report.spec}",
        "",
        f"Model `{report.model_class}`, {report.user_module_count} modules, "
        f"calibrated on {report.batches} batches.",
        "",
        "| Detector | Recommended | Summary |",
        "| --- | ---: | --- |",
    ]
    for det in report.detectors.values():
        lines.append(f"| {det.title} | {len(det.recommended)} | {_cell(det.summary)} |")
    for det in report.detectors.values():
        lines += ["", f"## {det.title} (`{det.name}`)", ""]
        params = ", ".join(f"{k} = {v}" for k, v in det.params.items())
        lines += [f"Parameters: {params}.", ""]
        flagged = [f for f in det.findings.values() if f.recommended]
        if not flagged:
            lines.append("No changes recommended.")
        for finding in flagged:
            sev = report.severity(det.name, finding.module)
            measured = f" *{sev.level.value}*: {sev.note}" if sev is not None else ""
            lines += [f"- **`{finding.module or '(model)'}`**: {finding.headline}. {finding.reason}{measured}"]
        informed = [f for f in det.findings.values() if f.status is Status.INFO]
        if informed:
            lines += ["", "Information (no change applies to these modules):", ""]
            lines += [f"- `{f.module or '(model)'}`: {f.headline}. {f.reason}" for f in informed]
        skipped = [f for f in det.findings.values() if f.status in (Status.NOT_OBSERVED, Status.NOT_APPLICABLE)]
        if skipped:
            lines += ["", "Not judged:", ""]
            lines += [f"- `{f.module or '(model)'}`: {f.reason}" for f in skipped]
    lines += measured_markdown(report)
    return "\n".join(lines) + "\n"


def to_text(report: Report) -> str:
    """A compact plain-text report for terminals and logs."""
    lines = [
        f"{report.spec}: {report.model_class}, {report.user_module_count} modules, {report.batches} batches",
    ]
    for det in report.detectors.values():
        lines += ["", f"{det.title} [{det.glyph}]: {det.summary}"]
        for finding in det.findings.values():
            if finding.recommended:
                sev = report.severity(det.name, finding.module)
                level = f" [{sev.level.value}{'' if sev.gain_db is None else f', {sev.gain_db:+.1f} dB'}]" if sev else ""
                lines.append(f"  {finding.module or '(model)'}: {finding.headline}{level}")
    lines += measured_text(report)
    return "\n".join(lines) + "\n"


RENDERERS = {"json": to_json, "markdown": to_markdown, "text": to_text}


def render(report: Report, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](report)


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Raises :class:`UserError` naming the path and the cause; on failure no
    partial file is left behind and an existing file keeps its old content.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise UserError(f"cannot write report to {target}: it is a directory")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UserError(f"cannot write report to {target}: directory {directory} does not exist")
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp_name, _existing_mode(target) or 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        raise UserError(f"cannot write report to {target}: {exc.strerror or exc}") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _existing_mode(target: Path) -> int | None:
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        return None


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
