"""Loading a model and its calibration data from a spec, with one clear error.

A spec is one of:

- a bundled sample's name (``showcase``, see ``tui-quantreport samples``);
- ``path/to/file.py``: the file's ``build_model`` (and ``calibration_batches``);
- ``path/to/file.py:factory``: that function of the file;
- ``package.module:factory``: that function of an importable module;
- ``path/to/program.pt2``: a saved ``torch.export`` program (``torch.export.save``),
  calibrated on ``--calibration`` or on the example inputs saved with it.

A factory may return an ``nn.Module`` (eager, ``torch.ao``-prepared, or the
GraphModule of ``torch.export(...).module()`` / ``prepare_pt2e`` / ``convert_pt2e``)
or an ``ExportedProgram`` (its ``.module()`` is used).

Every failure (missing file, syntax error, missing name, factory raising,
wrong return type, no batches) raises :class:`SpecError` with one sentence that
names the spec and the cause.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import itertools
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tui_quantreport.engine.errors import SpecError, exit_call
from tui_quantreport.engine.graph_file import check_archive, example_batches, is_exported_file, load_exported

MODEL_FACTORY = "build_model"
BATCHES_FACTORY = "calibration_batches"
SAMPLES_PACKAGE = "sample_models"


@dataclass(frozen=True)
class Sample:
    name: str
    description: str


def list_samples() -> list[Sample]:
    """The bundled samples, default first."""
    package = importlib.import_module(SAMPLES_PACKAGE)
    result = []
    for name in package.SAMPLES:
        module = importlib.import_module(f"{SAMPLES_PACKAGE}.{name}")
        result.append(Sample(name, getattr(module, "DESCRIPTION", "").strip()))
    return result


def default_sample() -> str:
    return importlib.import_module(SAMPLES_PACKAGE).DEFAULT_SAMPLE


@dataclass(frozen=True)
class LoadedModel:
    """A model built from a spec, and where its calibration batches come from."""

    spec: str
    model: Any  # torch.nn.Module
    batches_factory: Callable[[], Iterable[Any]] | None
    batches_spec: str


def load_model(spec: str, calibration: str | None = None) -> LoadedModel:
    """Build the model named by ``spec``; find its calibration data."""
    import torch
    from torch import nn

    parsed = _parse(spec)
    if parsed.kind == "file" and is_exported_file(parsed.target):
        return _load_exported_file(spec, Path(parsed.target).expanduser(), calibration)
    with quiet_library_logs():
        module, factory_name = _resolve(spec, MODEL_FACTORY)
        factory = _get_callable(module, factory_name, spec)
        model = _call(factory, spec, factory_name)
    if isinstance(model, torch.export.ExportedProgram):
        model = _call(model.module, spec, f"{factory_name}().module")
    if not isinstance(model, nn.Module):
        raise SpecError(f"{spec}: {factory_name}() returned {type(model).__name__}, not a torch.nn.Module")
    batches_factory: Callable[..., Any] | None
    check_model(model, f"{spec}: {factory_name}() returned")
    if calibration:
        cal_module, cal_name = _resolve(calibration, BATCHES_FACTORY)
        batches_factory = _get_callable(cal_module, cal_name, calibration)
        batches_spec = calibration
    else:
        batches_factory = getattr(module, BATCHES_FACTORY, None)
        batches_spec = f"{spec} ({BATCHES_FACTORY})"
        if batches_factory is not None and not callable(batches_factory):
            raise SpecError(f"{spec}: {BATCHES_FACTORY} is not a function")
    return LoadedModel(spec, model, batches_factory, batches_spec)


def check_model(model: Any, said: str = "the model is") -> None:
    """Refuse, in one sentence and before anything runs, a model forward hooks cannot observe.

    Walks the module tree without ``named_modules()`` (which itself fails on a
    module whose ``__init__`` skipped ``super().__init__()``): TorchScript
    (scripted or traced) and ``torch.compile``d modules, modules that were never
    initialised, names ``add_module`` would refuse, and parameters or buffers on
    the ``meta`` device (no values to read). ``said`` begins the message
    (``"m.py: build_model() returned"``).
    """
    import torch

    stack: list[tuple[str, Any]] = [("", model)]
    while stack:
        fqn, module = stack.pop()
        where = f"a model whose submodule '{fqn}' is" if fqn else "a model that is"
        kind = _unobservable_kind(module)
        if kind is not None:
            raise SpecError(f"{said} {where} {kind}")
        state = vars(module)
        if "_modules" not in state or "_parameters" not in state:
            cls = type(module).__name__
            raise SpecError(f"{said} {where} not initialised: {cls}.__init__() does not call super().__init__() first")
        for name, tensor in itertools.chain(state["_parameters"].items(), state.get("_buffers", {}).items()):
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                full = f"{fqn}.{name}" if fqn else name
                raise SpecError(
                    f"{said} a model whose tensor '{full}' is on the meta device (a shape without values): "
                    "materialize it (to_empty(), then load the weights) before returning the model"
                )
        children = []
        for name, child in state["_modules"].items():
            if not isinstance(name, str) or not name or "." in name:
                under = f"under '{fqn}'" if fqn else "at the top"
                raise SpecError(
                    f"{said} a model with module name {name!r} {under}: a module name must be a non-empty "
                    "string without '.' (as add_module requires)"
                )
            if child is not None:
                children.append((f"{fqn}.{name}" if fqn else name, child))
        stack.extend(reversed(children))


def _unobservable_kind(module: Any) -> str | None:
    """Why forward hooks cannot observe ``module`` itself, or None when they can."""
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        if any(cls.__name__ == "TracedModule" for cls in type(module).__mro__):
            return (
                "traced TorchScript (torch.jit.trace): it cannot be observed, because its forward replays the "
                "recorded graph and never calls its submodules, so their forward hooks never run; "
                "return the eager nn.Module"
            )
        return (
            "TorchScript (torch.jit.script): forward hooks are not supported on compiled TorchScript, "
            "so it cannot be observed; return the eager nn.Module"
        )
    # torch._dynamo's OptimizedModule, recognised without importing torch._dynamo (slow to import).
    if type(module).__name__ == "OptimizedModule" and "_orig_mod" in getattr(module, "_modules", {}):
        return (
            "compiled with torch.compile: observing it would recompile for every hook; "
            "return the model before torch.compile (its ._orig_mod)"
        )
    return None


def _load_exported_file(spec: str, path: Path, calibration: str | None) -> LoadedModel:
    """A saved ``torch.export`` program; calibrated on ``--calibration`` or on its saved example inputs."""
    model, example_inputs = load_exported(path, spec)
    if calibration:
        cal_module, cal_name = _resolve(calibration, BATCHES_FACTORY)
        return LoadedModel(spec, model, _get_callable(cal_module, cal_name, calibration), calibration)
    batches = example_batches(example_inputs)
    if batches is None:
        return LoadedModel(spec, model, None, spec)
    return LoadedModel(spec, model, lambda: list(batches), f"{spec} (the example inputs saved with it)")


class Batches:
    """The calibration batches: an iterator that knows its length when the source did."""

    def __init__(self, iterator: Iterator[Any], length: int | None):
        self._iterator = iterator
        self.length = length

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __next__(self) -> Any:
        return next(self._iterator)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("these calibration batches come from a generator of unknown length")
        return self.length


def open_batches(loaded: LoadedModel) -> Batches:
    """The calibration batches (sized when the source is); a clear error when there are none."""
    if loaded.batches_factory is None:
        raise SpecError(
            f"{loaded.spec}: no calibration data: define {BATCHES_FACTORY}() in the model file "
            "or pass --calibration SPEC"
        )
    batches = _call(loaded.batches_factory, loaded.batches_spec, getattr(loaded.batches_factory, "__name__", "factory"))
    try:
        iterator = iter(batches)
    except TypeError:
        raise SpecError(
            f"{loaded.batches_spec}: returned {type(batches).__name__}, which is not an iterable of batches"
        ) from None
    try:
        length = len(batches)
    except TypeError:
        length = None
    try:
        first = next(iterator)
    except StopIteration:
        raise SpecError(f"{loaded.batches_spec}: yielded zero batches; calibration needs at least one") from None
    except SystemExit as exc:
        raise SpecError(f"{loaded.batches_spec}: {exit_call(exc)} while producing batch 1") from None
    except Exception as exc:
        raise SpecError(f"{loaded.batches_spec}: failed while producing the first batch: {_describe(exc)}") from None
    return Batches(itertools.chain([first], _guarded(iterator, loaded.batches_spec)), length)


def _guarded(iterator: Iterator[Any], spec: str) -> Iterator[Any]:
    index = 1
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except SystemExit as exc:
            raise SpecError(f"{spec}: {exit_call(exc)} while producing batch {index + 1}") from None
        except Exception as exc:
            raise SpecError(f"{spec}: failed while producing batch {index + 1}: {_describe(exc)}") from None
        index += 1
        yield batch


def check_spec(spec: str, default_name: str = MODEL_FACTORY) -> None:
    """A quick check of a spec that imports nothing heavy (no torch, no user code).

    Catches what can be known without running the user's code: an unknown
    sample, a missing file, a syntax error, a factory the file does not define,
    a module that cannot be found. Raises :class:`SpecError` like
    :func:`load_model`; the full load may still fail later, with the same kind
    of message.
    """
    parsed = _parse(spec)
    if parsed.kind == "file" and is_exported_file(parsed.target):
        check_archive(Path(parsed.target).expanduser(), spec)
    elif parsed.kind == "file":
        path = Path(parsed.target).expanduser()
        if not path.is_file():
            raise SpecError(
                f"{spec}: file {path} does not exist" if not path.exists() else f"{spec}: {path} is not a file"
            )
        try:
            tree = ast.parse(path.read_bytes(), str(path))  # bytes: Python's own coding rules (BOM, coding line)
        except SyntaxError as exc:
            raise SpecError(f"{spec}: syntax error in {path} line {exc.lineno}: {exc.msg}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SpecError(f"{spec}: cannot read {path}: {exc}") from None
        wanted = parsed.name or default_name
        names = _top_level_names(tree)
        if names is not None and wanted not in names:
            raise SpecError(f"{spec}: {path} defines no {wanted}()")
    elif parsed.kind == "module":
        try:
            found = importlib.util.find_spec(parsed.target)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise SpecError(f"{spec}: no module named {parsed.target!r}")


def _top_level_names(tree: ast.Module) -> set[str] | None:
    """Names a module defines or imports at top level; None when a star import hides them."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.partition(".")[0])
        elif not isinstance(node, (ast.Expr, ast.Pass)):
            return None  # if/try blocks may define it: leave it to the real import
    return names


def _is_path(target: str) -> bool:
    return target.endswith(".py") or is_exported_file(target) or "/" in target or "\\" in target


@dataclass(frozen=True)
class _ParsedSpec:
    kind: str  # "file", "sample" or "module"
    target: str  # the path, the sample's name, or the dotted module name
    name: str | None  # the factory named after ":", if any


def _parse(spec: str) -> _ParsedSpec:
    """Tell the four spec forms apart (no import, no file read)."""
    text = spec.strip()
    if not text:
        raise SpecError("empty model spec; give a sample name, a .py file, or package.module:factory")
    if ":" in text and Path(text).expanduser().is_file():
        return _ParsedSpec("file", text, None)  # a file whose name has a colon, not file:factory
    target, _, name = text.rpartition(":") if _has_factory(text) else (text, "", "")
    target = target or text
    if _is_path(target):
        return _ParsedSpec("file", target, name or None)
    if ":" not in text and "." not in target:
        samples = importlib.import_module(SAMPLES_PACKAGE).SAMPLES
        if target in samples:
            return _ParsedSpec("sample", target, None)
        if Path(target).exists():
            return _ParsedSpec("file", target, None)
        raise SpecError(f"{spec}: not a bundled sample ({', '.join(samples)}), a .py file, or package.module:factory")
    return _ParsedSpec("module", target, name or None)


def locate(spec: str, default_name: str = MODEL_FACTORY) -> tuple[str, str, str]:
    """Where a spec's code lives, without importing it: ``("file", absolute path, factory)`` or
    ``("module", dotted name, factory)`` (a bundled sample is the module ``sample_models.NAME``)."""
    parsed = _parse(spec)
    name = parsed.name or default_name
    if parsed.kind == "file":
        return "file", str(Path(parsed.target).expanduser().resolve()), name
    return "module", f"{SAMPLES_PACKAGE}.{parsed.target}" if parsed.kind == "sample" else parsed.target, name


def source_path(spec: str | None) -> str | None:
    """The file a spec's code (or a ``.pt2``) is read from, without importing anything: a file spec's
    path, or an already imported module's file; None when unknown. A command never writes over it
    (the writer's ``inputs``)."""
    if not spec:
        return None
    try:
        kind, target, _ = locate(spec)
    except Exception:  # noqa: BLE001 - a bad spec: loading it says why, not this
        return None
    if kind == "file":
        return target
    module = sys.modules.get(target)
    origin = getattr(module, "__file__", None)
    return origin if isinstance(origin, str) else None


def _resolve(spec: str, default_name: str) -> tuple[ModuleType, str]:
    """The module a spec points at, and the function name to take from it."""
    parsed = _parse(spec)
    name = parsed.name or default_name
    if parsed.kind == "file":
        return _load_file(Path(parsed.target).expanduser(), spec), name
    if parsed.kind == "sample":
        return _import(f"{SAMPLES_PACKAGE}.{parsed.target}", spec), name
    return _import(parsed.target, spec), name


def _has_factory(text: str) -> bool:
    # "C:\\x.py" style drive letters are not factories; "file.py:make" and "pkg.mod:make" are.
    head, sep, tail = text.rpartition(":")
    return bool(sep) and bool(tail) and "/" not in tail and "\\" not in tail and len(head) > 1


def _load_file(path: Path, spec: str) -> ModuleType:
    if not path.exists():
        raise SpecError(f"{spec}: file {path} does not exist")
    if not path.is_file():
        raise SpecError(f"{spec}: {path} is not a file")
    module_name = f"_tui_quantreport_user_{abs(hash(str(path.resolve())))}"
    try:
        # Bytes, so Python's own rules pick the encoding: a UTF-8 BOM, a "coding:" line.
        code = compile(path.read_bytes(), str(path), "exec")
    except SyntaxError as exc:
        raise SpecError(f"{spec}: syntax error in {path} line {exc.lineno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError(f"{spec}: cannot read {path}: {exc}") from None
    module = ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    # The file's folder stays on sys.path, as when Python runs the file: its siblings can be
    # imported at the top, inside build_model() and while the batches are produced.
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(code, module.__dict__)
    except SystemExit as exc:
        sys.modules.pop(module_name, None)
        raise SpecError(f"{spec}: importing {path} {exit_call(exc)}") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise SpecError(f"{spec}: importing {path} failed: {_describe(exc)}") from None
    return module


#: Loggers whose import-time chatter a model file's imports trigger and our user cannot act on:
#: torchao's "Failed to load .../_C_mxfp8...so" for its CUDA kernels on a CPU build, torch's
#: pytree deprecation notes. Errors still show.
QUIET_LOGGERS = ("torchao", "torch.utils._pytree")


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """While a model file is imported and built: the QUIET_LOGGERS show errors only, unless the
    user configured their level themselves."""
    import logging

    changed = []
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.ERROR)
            changed.append(logger)
    try:
        yield
    finally:
        for logger in changed:
            logger.setLevel(logging.NOTSET)


def _import(name: str, spec: str) -> ModuleType:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except SystemExit as exc:
        raise SpecError(f"{spec}: importing {name} {exit_call(exc)}") from None
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise SpecError(f"{spec}: no module named {exc.name!r}") from None
        raise SpecError(f"{spec}: importing {name} failed: {_describe(exc)}") from None
    except SyntaxError as exc:
        raise SpecError(f"{spec}: syntax error in {exc.filename} line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        raise SpecError(f"{spec}: importing {name} failed: {_describe(exc)}") from None


def _get_callable(module: ModuleType, name: str, spec: str) -> Callable:
    value = getattr(module, name, None)
    if value is None:
        raise SpecError(f"{spec}: {getattr(module, '__file__', module.__name__)} defines no {name}()")
    if not callable(value):
        raise SpecError(f"{spec}: {name} is a {type(value).__name__}, not a function")
    return value


def _call(factory: Callable, spec: str, name: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return factory()
    except SystemExit as exc:
        raise SpecError(f"{spec}: {name}() {exit_call(exc)}") from None
    except Exception as exc:
        raise SpecError(f"{spec}: {name}() raised {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    text = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return text + where
