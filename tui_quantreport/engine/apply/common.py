"""What every export target shares: the result type, the header comment block,
the code that rebuilds the user's model, the atomic multi-file write, and a library's
run with its noise swallowed and its failure in one line (:func:`quietly`)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import io
import json
import os
import stat
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_quantreport import __version__
from tui_quantreport.engine.core.recipes import import_model_code, source
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.escape import printable
from tui_quantreport.engine.export import write_files
from tui_quantreport.engine.plan import Plan
from tui_quantreport.engine.spec import BATCHES_FACTORY, MODEL_FACTORY, locate


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
    exported_plan: Plan | None = None  # the plan as the target applies it
    notes: list[str] = field(default_factory=list)
    #: The keyword arguments of the target's function in ``engine/core/recipes.py`` that applies the export
    #: (the same data the file holds as literals): verify applies it through the library API.
    recipe: dict[str, Any] = field(default_factory=dict)

    def paths(self, output: str | os.PathLike) -> list[Path]:
        main = Path(output).expanduser()
        return [main] + [sidecar_path(main, suffix) for suffix in self.sidecars]

    def write(self, output: str | os.PathLike, *, force: bool = False, inputs: Sequence[str] = ()) -> list[Path]:
        """Write the main file and its side-cars, all or nothing (the one writer's rules). An existing
        side-car the user did not name is refused, naming it, unless ``force``."""
        main = Path(output).expanduser()
        sidecars = [(sidecar_path(main, suffix), data) for suffix, data in self.sidecars.items()]
        contents: list[tuple[str | os.PathLike, str | bytes]] = [(main, self.text), *sidecars]
        return write_files(
            contents,
            what=f"the {self.target} configuration",
            inputs=inputs,
            protect=() if force else [path for path, _ in sidecars if not is_own_sidecar(path)],
        )


#: The format ids an export's side-cars carry (torchao's .json and the .safetensors metadata).
SIDECAR_FORMATS = ("tui-quantreport.torchao-config/",)


def is_own_sidecar(path: str | os.PathLike) -> bool:
    """Whether an existing file is a side-car this tool wrote (a previous export's .json or
    .safetensors, by its format id): replacing it with the new export's is what the user asked.
    Reads at most 16 MiB; anything else (another tool's file, the user's weights) is not ours."""
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return False
            head = handle.read(16 * 1024 * 1024 + 8)
    except OSError:
        return False
    try:
        if str(path).endswith(".safetensors"):
            size = int.from_bytes(head[:8], "little")
            fmt = json.loads(head[8 : 8 + size]).get("__metadata__", {}).get("format", "")
        else:
            fmt = json.loads(head).get("format", "")
    except (ValueError, AttributeError, RecursionError):
        return False
    return isinstance(fmt, str) and fmt.startswith(SIDECAR_FORMATS)


def sidecar_path(main: Path, suffix: str) -> Path:
    return main.with_name(main.stem + suffix)


def header(title: str, spec: str, plan: Plan, changes: list[Change], extra: Sequence[str] = ()) -> str:
    """The comment block every exported file starts with. Every line is made printable (a name
    with a newline or an escape sequence cannot end the comment or move a terminal)."""
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
    return "".join(comment(line) for line in lines)


def comment(text: str) -> str:
    """``text`` as one Python comment line: escaped (``escape.printable``, then every non-ASCII
    character as a Python escape), so no line break, nothing a terminal or an editor acts on."""
    escaped = printable(text).encode("ascii", "backslashreplace").decode("ascii")
    return ("# " + escaped).rstrip() + "\n"


def calibrated_main_code(spec: str, calibration: str | None, quantize_call: str, report: str) -> str:
    """The loader (see :func:`model_loader_code`) and a ``__main__`` block that runs
    ``quantize_call`` (source of an expression over ``model`` and ``batches``) on the calibration
    batches, one batch through the result (``converted``), then ``report`` (source lines, indented
    for the block). Every argument but ``spec``/``calibration`` is the exporter's own fixed code."""
    return (
        model_loader_code(spec, calibration) + "\n\n"
        'if __name__ == "__main__":\n'
        "    batches = list(calibration_batches())\n"
        f"    model = build_model()\n"
        f"    converted = {quantize_call}\n"
        "    with torch.no_grad():\n"
        "        call(converted, batches[0])\n" + report
    )


def model_loader_code(spec: str, calibration: str | None = None) -> str:
    """Source of ``build_model()`` and ``calibration_batches()`` rebuilding what a spec names,
    without tui-quantreport (the model file, sample or module is imported as is). The spec's
    parts reach the file only as ``repr()`` literals (``MODEL_SOURCE``, ``BATCHES_SOURCE``)."""
    model_source = _module_code(spec, MODEL_FACTORY)
    batches_source = _module_code(calibration, BATCHES_FACTORY) if calibration else (*model_source[:2], BATCHES_FACTORY)
    return (
        f"MODEL_SOURCE = {model_source!r}\n"
        f"BATCHES_SOURCE = {batches_source!r}\n\n\n" + source(import_model_code) + "\n\n"
        "def build_model():\n"
        '    """The float model, rebuilt as tui-quantreport loaded it (MODEL_SOURCE: where, and its factory)."""\n'
        "    return import_model_code(*MODEL_SOURCE, here=_here())()\n\n\n"
        "def calibration_batches():\n"
        '    """The calibration batches (BATCHES_SOURCE: where, and its factory)."""\n'
        "    return import_model_code(*BATCHES_SOURCE, here=_here())()\n\n\n"
        "def _here():\n"
        '    """The folder of this file (None when its text runs without one)."""\n'
        "    import os\n\n"
        "    return os.path.dirname(os.path.abspath(__file__)) if '__file__' in globals() else None\n"
    )


def _module_code(spec: str, default_name: str) -> tuple[str, object, str]:
    """(kind, target, factory name) as :func:`recipes.import_model_code` takes them (plain strings)."""
    kind, target, name = locate(spec, default_name)
    if kind == "file":
        return ("file", str(target), str(name))
    return ("module", (_import_root(target), str(target)), str(name))


def _import_root(module_name: str) -> str | None:
    try:
        found = importlib.util.find_spec(module_name.partition(".")[0])
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin:
        return None
    origin = Path(found.origin)
    top = origin.parent.parent if origin.name == "__init__.py" else origin.parent
    return str(top.resolve())


def float_count(plan: Plan) -> int:
    return len(plan.kept_float)


def quietly(failure: str, run: Any) -> Any:
    """``run()`` with its prints and warnings swallowed (they are the library's, not ours); a failure
    is one line: ``failure`` (what failed, e.g. "the pt2e export failed to apply"), the cause."""
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            return run()
    except Exception as exc:  # noqa: BLE001 - export/trace/convert failures are reported in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"{failure}: {type(exc).__name__}: {printable(first)}{_hint(exc)}") from None


def _hint(exc: BaseException) -> str:
    """What the user can do about a known failure, read from the exception chain ("" when unknown)."""
    chain: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    text = " ".join(chain)
    if "references nonexistent attribute submod" in text:
        return (
            " (the exported graph holds nested submodules, which torch.export makes of torch.autocast or "
            "set_grad_enabled regions such as transformers' rotary embedding; pt2e's passes do not handle "
            "them: use the torchao target for this model)"
        )
    if "DynamicCache" in text:
        return " (the model returns a DynamicCache: build it with use_cache=False)"
    return ""
