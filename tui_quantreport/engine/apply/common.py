"""What every export target shares: the result type, the header comment block,
the code that rebuilds the user's model, and the atomic multi-file write."""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tui_quantreport.engine.apply.plan import FLOAT, PlanFile
from tui_quantreport.engine.errors import UserError


@dataclass(frozen=True)
class Change:
    """A module the target could not apply as planned."""

    fqn: str
    planned: str
    exported: str  # a scheme, or "float"
    reason: str

    def line(self) -> str:
        return f"{self.fqn}: {self.planned} -> {self.exported} ({self.reason})"


@dataclass
class Export:
    """One target's files (main text first, then side-cars by suffix) and what it changed."""

    target: str
    text: str
    sidecars: dict[str, bytes] = field(default_factory=dict)  # suffix (".json") -> content
    changes: list[Change] = field(default_factory=list)
    exported_plan: PlanFile | None = None  # the plan as the target applies it
    notes: list[str] = field(default_factory=list)

    def paths(self, output: str | os.PathLike) -> list[Path]:
        main = Path(output).expanduser()
        return [main] + [sidecar_path(main, suffix) for suffix in self.sidecars]

    def write(self, output: str | os.PathLike) -> list[Path]:
        main = Path(output).expanduser()
        contents = [(main, self.text.encode("utf-8"))] + [
            (sidecar_path(main, suffix), data) for suffix, data in self.sidecars.items()
        ]
        return write_files_atomic(contents)


def sidecar_path(main: Path, suffix: str) -> Path:
    return main.with_name(main.stem + suffix)


def write_files_atomic(contents: list[tuple[Path, bytes]]) -> list[Path]:
    """Write every file through a temporary file; rename all only when all were written.

    On any failure nothing new is left behind (existing files keep their content).
    """
    from tui_quantreport.engine.export import pending_temp, settled_temp

    temps: list[tuple[str, Path]] = []
    made: list[str] = []  # every temporary file, for the SIGTERM cleanup's record
    try:
        for target, data in contents:
            if target.is_dir():
                raise UserError(f"cannot write {target}: it is a directory")
            directory = target.parent if str(target.parent) else Path(".")
            if not directory.is_dir():
                raise UserError(f"cannot write {target}: directory {directory} does not exist")
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
            temps.append((tmp, target))
            made.append(tmp)
            pending_temp(tmp)
            os.chmod(tmp, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, target in temps:
            os.replace(tmp, target)
        temps = []
    except OSError as exc:
        target = temps[-1][1] if temps else contents[0][0]
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        for tmp in made:
            settled_temp(tmp)
    return [target for target, _ in contents]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def header(title: str, spec: str, plan: PlanFile, changes: list[Change], extra: Sequence[str] = ()) -> str:
    """The comment block every exported file starts with."""
    from tui_quantreport import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    predicted = f"{plan.predicted_sqnr_db:.2f} dB" if plan.predicted_sqnr_db is not None else "not recorded in the plan"
    probes = f" on {plan.probe_batches} probe batches" if plan.probe_batches else ""
    counts = Counter(plan.quantized.values())
    schemes = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    lines = [
        f"{title}",
        f"Written by tui-quantreport {__version__} on {now}.",
        f"Model: {spec} ({plan.model_class}, fingerprint {plan.fingerprint})",
        f"Plan: {plan.source or '(recommended)'}; predicted end-to-end SQNR {predicted}{probes}",
        f"Planned: {len(plan.quantized)} quantized ({schemes or 'none'}), {len(plan.kept_float)} kept float.",
    ]
    if changes:
        lines.append(f"Changed for this target ({len(changes)}):")
        lines += [f"  {c.line()}" for c in changes]
    lines += list(extra)
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def calibrated_main_code(spec: str, calibration: str | None, report: str) -> str:
    """The loader (see :func:`model_loader_code`) and a ``__main__`` block that runs
    ``quantize(build_model(), batches)`` on the calibration batches, one batch through the result,
    then ``report`` (source lines, indented for the block) about ``converted``."""
    return (
        model_loader_code(spec, calibration) + "\n\n"
        'if __name__ == "__main__":\n'
        "    batches = list(calibration_batches())\n"
        "    converted = quantize(build_model(), batches)\n"
        "    with torch.no_grad():\n"
        "        _call(converted, batches[0])\n" + report
    )


def model_loader_code(spec: str, calibration: str | None = None) -> str:
    """Source of ``build_model()`` and ``calibration_batches()`` rebuilding what a spec names,
    without tui-quantreport (the model file, sample or module is imported as is)."""
    from tui_quantreport.engine.spec import BATCHES_FACTORY, MODEL_FACTORY

    model_module, model_name = _module_code(spec, MODEL_FACTORY)
    code = (
        "def _import(kind, target):\n"
        "    import importlib\n    import importlib.util\n    import os\n    import sys\n\n"
        "    if kind == 'file':\n"
        "        sys.path.insert(0, os.path.dirname(target))\n"
        "        spec = importlib.util.spec_from_file_location('_model_source_' + str(abs(hash(target))), target)\n"
        "        module = importlib.util.module_from_spec(spec)\n"
        "        spec.loader.exec_module(module)\n"
        "        return module\n"
        "    root, name = target\n"
        "    if root and root not in sys.path:\n"
        "        sys.path.insert(0, root)\n"
        "    return importlib.import_module(name)\n\n\n"
        "def build_model():\n"
        f'    """The float model, rebuilt as tui-quantreport loaded it (spec {spec!r})."""\n'
        f"    return _import(*{model_module!r}).{model_name}()\n\n\n"
    )
    cal_module, cal_name = (
        _module_code(calibration, BATCHES_FACTORY) if calibration else (model_module, BATCHES_FACTORY)
    )
    code += (
        "def calibration_batches():\n"
        f'    """The calibration batches (spec {calibration or spec!r})."""\n'
        f"    return _import(*{cal_module!r}).{cal_name}()\n"
    )
    return code


def _module_code(spec: str, default_name: str) -> tuple[tuple, str]:
    from tui_quantreport.engine.spec import locate

    kind, target, name = locate(spec, default_name)
    if kind == "file":
        return ("file", target), name
    return ("module", (_import_root(target), target)), name


def call_code() -> str:
    """Source of ``_call(model, batch)``: a tensor as is, a tuple spread, a dict as keywords."""
    return (
        "def _call(model, batch):\n"
        "    if isinstance(batch, dict):\n"
        "        return model(**batch)\n"
        "    if isinstance(batch, (tuple, list)):\n"
        "        return model(*batch)\n"
        "    return model(batch)\n"
    )


def _import_root(module_name: str) -> str | None:
    import importlib.util

    try:
        found = importlib.util.find_spec(module_name.partition(".")[0])
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin:
        return None
    origin = Path(found.origin)
    top = origin.parent.parent if origin.name == "__init__.py" else origin.parent
    return str(top.resolve())


def float_count(plan: PlanFile) -> int:
    return sum(1 for e in plan.modules.values() if e.scheme == FLOAT)
