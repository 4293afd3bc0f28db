"""Saved ``torch.export`` programs (``.pt2`` files): load one, or say in one line why not.

``torch.export.save`` writes a zip archive: ``archive_version``, the program as
JSON (``models/*.json``, with its ``schema_version``), weights, and the example
inputs export ran on. A file that is not such an archive (corrupt, truncated), or
that a newer torch wrote (an archive or schema version this torch does not read),
raises :class:`SpecError` naming the file and the cause, before torch's own
loader logs a traceback.
"""

from __future__ import annotations

import json
import logging
import warnings
import zipfile
from pathlib import Path
from typing import Any

from tui_quantreport.engine.errors import SpecError
from tui_quantreport.engine.escape import printable

SUFFIX = ".pt2"

#: Whether the user said a .pt2 file may be unpickled (``--trust-pickle``): torch.export.load
#: unpickles weights, constants and example inputs, and a crafted file runs code when it does.
_TRUSTED = False


def trust_pickle(enabled: bool = True) -> None:
    """Allow (or forbid again) loading ``.pt2`` files, which torch unpickles (``--trust-pickle``)."""
    global _TRUSTED
    _TRUSTED = enabled


def pickle_trusted() -> bool:
    return _TRUSTED


UNTRUSTED = (
    "a .pt2 file is read by torch.export.load, which unpickles parts of it: a crafted file runs "
    "code when it is opened, and this torch has no weights-only loader for .pt2 files; if you "
    "trust this file (you exported it yourself), pass --trust-pickle"
)


def is_exported_file(target: str) -> bool:
    return target.lower().endswith(SUFFIX)


def check_archive(path: Path, spec: str) -> None:
    """Cheap checks, torch-free: the file is a zip archive in a format this torch reads."""
    if not path.exists():
        raise SpecError(f"{spec}: file {path} does not exist")
    if not path.is_file():
        raise SpecError(f"{spec}: {path} is not a file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            versions = [n for n in names if n.endswith("/archive_version") or n == "archive_version"]
            models = [n for n in names if "/models/" in n and n.endswith(".json")]
            if not versions or not models:
                raise SpecError(f"{spec}: {path} is a zip archive but not a torch.export program (.pt2)")
            archive_version = archive.read(versions[0]).decode(errors="replace").strip()
            schema = _schema_version(archive.read(models[0]))
    except SpecError:
        raise
    except (zipfile.BadZipFile, EOFError):
        raise SpecError(f"{spec}: {path} is not a readable .pt2 archive (corrupt or truncated)") from None
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise SpecError(f"{spec}: cannot read {path}: {type(exc).__name__}: {_first_line(exc)}") from None
    _check_versions(path, spec, archive_version, schema)


def _schema_version(data: bytes) -> tuple[int, int] | None:
    try:
        version = json.loads(data).get("schema_version") or {}
        return int(version["major"]), int(version.get("minor", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _check_versions(path: Path, spec: str, archive_version: str, schema: tuple[int, int] | None) -> None:
    try:
        from torch._export.serde.schema import SCHEMA_VERSION
        from torch.export.pt2_archive.constants import ARCHIVE_VERSION_VALUE
    except ImportError:  # a torch that moved these: leave the judgement to its loader
        return
    if archive_version != str(ARCHIVE_VERSION_VALUE):
        newer = archive_version.isdigit() and int(archive_version) > int(ARCHIVE_VERSION_VALUE)
        raise SpecError(
            f"{spec}: {path} has .pt2 archive version {archive_version}, this torch reads version "
            f"{ARCHIVE_VERSION_VALUE}" + ("; it was saved by a newer torch" if newer else "")
        )
    if schema is not None and schema[0] > SCHEMA_VERSION[0]:
        raise SpecError(
            f"{spec}: {path} was saved by a newer torch (export schema {schema[0]}.{schema[1]}; "
            f"this torch reads up to {SCHEMA_VERSION[0]}.{SCHEMA_VERSION[1]})"
        )


def load_exported(path: Path, spec: str) -> tuple[Any, Any]:
    """The program's module (a GraphModule) and its saved example inputs ((args, kwargs) or None).

    Refused unless :func:`trust_pickle` was called (``--trust-pickle``): torch.export.load in this
    torch unpickles without a weights-only mode (checked before anything in the file is unpickled)."""
    check_archive(path, spec)  # the zip directory and JSON only: nothing unpickled
    if not _TRUSTED:
        raise SpecError(f"{printable(spec)}: {UNTRUSTED}")
    import torch

    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # torch logs a traceback before raising: we say it in one line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
            module = program.module()
    except Exception as exc:
        raise SpecError(f"{spec}: cannot load {path}: {type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        logger.setLevel(level)
    return module, getattr(program, "example_inputs", None)


def example_batches(example_inputs: Any) -> list[Any] | None:
    """The saved example inputs as one calibration batch (a tuple of args or a dict of kwargs)."""
    if not example_inputs:
        return None
    args, kwargs = example_inputs
    if args and kwargs:
        return None
    return [dict(kwargs)] if kwargs else [tuple(args)]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
