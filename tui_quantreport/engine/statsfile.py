"""Stats files (``.qstats``): calibrate where the data is, inspect anywhere.

A stats file holds everything a report needs except the model: the module
catalog (tree, classes, which modules are helpers, weight schemes), the
statistics of one calibration, the settings it was run with, and where it came
from (tool and torch versions, batch count, the model's class and
:attr:`~.modules.ModelCatalog.fingerprint`).

It is a `safetensors <https://github.com/huggingface/safetensors>`_ file: the
statistics are a few flat tensors, and the rest is one JSON document in the
safetensors metadata, with a SHA-256 over that document and every tensor.
Opening one parses JSON and raw little-endian numbers only: nothing is
unpickled, so a stats file cannot run code. Every problem with a file
(truncated, corrupt, a different format version, changed after it was
written, another model) raises :class:`StatsFileError`: one sentence, and
nothing is changed.

The statistics are encoded by :func:`~.stats.packing.stats_state` and decoded by
:func:`~.stats.packing.stats_from_state`, the one seam that knows the layout of
:class:`~.stats.Stats` (distributed calibration sends the same layout between ranks).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from tui_quantreport import __version__
from tui_quantreport.engine.detectors import DETECTORS  # importing the detectors registers the reducers
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.escape import printable
from tui_quantreport.engine.export import write_atomic
from tui_quantreport.engine.module_info import ModuleInfo
from tui_quantreport.engine.modules import (
    ModelCatalog,
    WeightScheme,
    first_difference,
    identity_fingerprint,
    is_versioned,
    kind_named,
)
from tui_quantreport.engine.report import Measured, ModuleError
from tui_quantreport.engine.settings import Settings, stale_params
from tui_quantreport.engine.stats.packing import stats_from_state as stats_from_state
from tui_quantreport.engine.stats.packing import stats_state as stats_state
from tui_quantreport.engine.stats_path import SUFFIX as SUFFIX  # the names callers import from here
from tui_quantreport.engine.stats_path import StatsFileError as StatsFileError
from tui_quantreport.engine.stats_path import is_stats_path as is_stats_path

#: The format identifier written into every file; a file with another version is refused.
FORMAT = "tui-quantreport.stats/1"
FORMAT_PREFIX = "tui-quantreport.stats/"


@dataclass(frozen=True)
class StatsFile:
    """One calibration, ready to report on without the model.

    ``spec`` is the model spec the calibration ran on (reports name it);
    ``settings`` the detectors and parameters in force when it was saved;
    ``provenance`` what wrote it (versions, time, world size) — informative only.
    """

    spec: str
    catalog: Any  # ModelCatalog
    stats: Any  # Stats
    settings: Any  # Settings
    provenance: Mapping[str, Any] = field(default_factory=dict)
    #: The measured error (a report.Measured) of these statistics when it was taken before saving:
    #: reopened without the model, the findings keep their measured severity. None when not measured.
    measured: Any = None

    @property
    def fingerprint(self) -> str:
        return self.catalog.fingerprint

    def check_model(self, catalog: Any, source: str = "the stats file") -> None:
        """Refuse a model other than the one these statistics were taken on, in one line naming the
        first difference (a file with a version 1 fingerprint is checked the old way)."""
        try:
            catalog.check_same_model(self.catalog, printable(str(source)), f"this {printable(catalog.class_name)}")
        except UserError as exc:
            raise StatsFileError(str(exc)) from None


def make(spec: str, catalog: Any, stats: Any, settings: Any, measured: Any = None, **provenance: Any) -> StatsFile:
    """A stats file for ``stats`` taken on ``catalog``'s model with ``settings`` (and the measured
    error of those statistics, a report.Measured, when there is one)."""
    info = {
        "tool": f"tui-quantreport {__version__}",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    info.update(provenance)
    return StatsFile(spec, catalog, stats, settings, info, measured)


# Writing ---------------------------------------------------------------------


def encode(sf: StatsFile) -> bytes:
    """The file's bytes: safetensors, with the JSON header and its checksum in the metadata."""
    with _gc_paused():
        return _encode(sf)


def _encode(sf: StatsFile) -> bytes:
    from safetensors.torch import save

    tensors, stats_meta = stats_state(sf.stats)
    header = {
        "format": FORMAT,
        "spec": sf.spec,
        "model": {"class": sf.catalog.class_name, "fingerprint": sf.catalog.fingerprint},
        "batches": sf.stats.batches,
        "provenance": dict(sf.provenance),
        "settings": settings_state(sf.settings),
        "catalog": catalog_state(sf.catalog),
        "stats": stats_meta,
    }
    if sf.measured is not None:
        header["measured"] = measured_state(sf.measured)
    text = json.dumps(header, separators=(",", ":"), allow_nan=False)
    metadata = {"format": FORMAT, "header": text, "sha256": _digest(text, tensors)}
    return save(tensors, metadata=metadata)


def save(path: str | os.PathLike, sf: StatsFile, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Write ``sf`` to ``path`` atomically (a temporary file and a rename; no partial file), never
    over one of ``inputs`` (the files the command read: a merge's inputs, the model's source)."""
    return write_atomic(path, encode(sf), what="stats file", inputs=inputs)


# Reading ---------------------------------------------------------------------


#: The most a stats file's JSON header may take (a 100k-module model's is ~60 MB).
MAX_HEADER_BYTES = 512 * 1024 * 1024


def load(path: str | os.PathLike) -> StatsFile:
    """Read and check a stats file; :class:`StatsFileError` (one sentence) on any problem.

    Bounded: the 8-byte header length is checked against the file's size and
    :data:`MAX_HEADER_BYTES`, and the header against the format, before the body is read."""
    shown = printable(os.fspath(path))
    target = Path(path).expanduser()
    if not target.exists():
        raise StatsFileError(f"{shown}: no such file")
    if not target.is_file():
        raise StatsFileError(f"{shown}: not a file")
    try:
        with open(target, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            handle.seek(8 if len(head) == 8 else 0)
            if len(head) == 8 and (handle.read(1) == b"{" or (head[:1] != b"\x80" and head[:4] != b"PK\x03\x04")):
                handle.seek(8)
                length = int.from_bytes(head, "little")
                if length > size - 8:
                    if handle.read(1) != b"{":
                        raise StatsFileError(f"{shown}: not a tui-quantreport stats file (no safetensors header)")
                    raise StatsFileError(
                        f"{shown}: truncated: the header needs {length:,} bytes, only {size - 8:,} follow"
                    )
                if length > MAX_HEADER_BYTES:
                    raise StatsFileError(
                        f"{shown}: not a tui-quantreport stats file (a header of {length:,} bytes, more than "
                        f"the {MAX_HEADER_BYTES:,} one can be)"
                    )
                header = handle.read(length)
                _read_metadata(head + header, shown)  # the format, before the body is read
                data = head + header + handle.read()
            else:
                data = head + handle.read(1)
    except OSError as exc:
        raise StatsFileError(f"{shown}: cannot read it: {exc.strerror or exc}") from None
    return decode(data, shown)


def decode(data: bytes, source: str = "stats file") -> StatsFile:
    """Parse and check a stats file's bytes (JSON and raw numbers only; nothing is unpickled)."""
    with _gc_paused():
        return _decode(data, source)


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while building thousands of small objects that it
    would otherwise scan again and again (a full collection in a process holding torch costs
    more than the whole decode); they hold no cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _decode(data: bytes, source: str) -> StatsFile:
    header_text, digest = _read_metadata(data, source)
    try:
        from safetensors.torch import load as load_tensors

        tensors = load_tensors(data)
    except Exception as exc:  # noqa: BLE001 - the safetensors parser's own checks: offsets, sizes, dtypes
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StatsFileError(f"{source}: truncated or corrupt stats file ({detail})") from None
    if _digest(header_text, tensors) != digest:
        raise StatsFileError(
            f"{source}: its contents do not match its checksum: the file was changed or damaged after it was written"
        )
    try:
        header = json.loads(header_text, parse_constant=_not_finite)
        return _build(header, tensors, source)
    except StatsFileError:
        raise
    except UserError as exc:  # settings the current detectors refuse
        raise StatsFileError(f"{source}: {exc}") from None
    except RecursionError:
        raise StatsFileError(f"{source}: malformed stats file (its JSON is nested too deep)") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, RuntimeError) as exc:
        detail = printable(f"{type(exc).__name__}: {exc}")[:200]
        raise StatsFileError(f"{source}: malformed stats file ({detail})") from None


def _not_finite(name: str) -> Any:
    raise ValueError(f"the number {name} is not finite")


def _read_metadata(data: bytes, source: str) -> tuple[str, str]:
    """The JSON header and checksum from the safetensors metadata, with a clear error for anything else."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if data[8:9] != b"{" and (data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"):
        raise StatsFileError(
            f"{source}: this is a pickle or torch.save file, not a tui-quantreport stats file "
            "(stats files are never unpickled)"
        )
    if len(data) < 8:
        raise StatsFileError(f"{source}: truncated: {len(data)} bytes, too short for a stats file")
    if size > len(data) - 8:
        if data[8:9] != b"{":
            raise StatsFileError(f"{source}: not a tui-quantreport stats file (no safetensors header)")
        raise StatsFileError(f"{source}: truncated: the header needs {size:,} bytes, only {len(data) - 8:,} follow")
    try:
        index = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise StatsFileError(
            f"{source}: not a tui-quantreport stats file, or corrupt (its header is not JSON)"
        ) from None
    meta = index.get("__metadata__") if isinstance(index, dict) else None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(FORMAT_PREFIX):
        raise StatsFileError(f"{source}: a safetensors file, but not a tui-quantreport stats file")
    if fmt != FORMAT:
        raise StatsFileError(
            f"{source}: stats file format {fmt.removeprefix(FORMAT_PREFIX)!r} is not readable by this version "
            f"(it reads {FORMAT.removeprefix(FORMAT_PREFIX)!r}); recalibrate or use the matching tui-quantreport"
        )
    assert isinstance(meta, dict)  # fmt was read from it
    header, digest = meta.get("header"), meta.get("sha256")
    if not isinstance(header, str) or not isinstance(digest, str):
        raise StatsFileError(f"{source}: malformed stats file (no header or checksum)")
    return header, digest


def _build(header: dict[str, Any], tensors: Mapping[str, Any], source: str) -> StatsFile:
    if header.get("format") != FORMAT:
        raise StatsFileError(f"{source}: malformed stats file (its header names format {header.get('format')!r})")
    catalog = catalog_from_state(header["catalog"])
    if catalog.fingerprint != header["model"]["fingerprint"] or catalog.class_name != header["model"]["class"]:
        raise StatsFileError(f"{source}: malformed stats file (its catalog and model fields disagree)")
    if is_versioned(catalog.fingerprint) and identity_fingerprint(catalog.identity) != catalog.fingerprint:
        raise StatsFileError(f"{source}: malformed stats file (its model identity does not match its fingerprint)")
    stats = stats_from_state(tensors, header["stats"], header["batches"])
    unknown = {fqn for fqn, _ in stats.points} | set(stats.weights)
    unknown -= set(catalog.modules)
    if unknown:
        raise StatsFileError(f"{source}: malformed stats file (statistics for unknown module {min(unknown)!r})")
    settings = settings_from_state(header["settings"])
    measured = measured_from_state(header["measured"], source) if header.get("measured") is not None else None
    if measured is not None and set(measured.modules) - set(catalog.modules):
        raise StatsFileError(
            f"{source}: malformed stats file (a measurement of unknown module "
            f"{min(set(measured.modules) - set(catalog.modules))!r})"
        )
    return StatsFile(str(header["spec"]), catalog, stats, settings, dict(header.get("provenance") or {}), measured)


def _digest(header_text: str, tensors: Mapping[str, Any]) -> str:
    """SHA-256 of the header and every tensor's name, dtype, shape and bytes (in name order)."""
    digest = hashlib.sha256(header_text.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        if tensor.numel():
            digest.update(tensor.numpy())
    return digest.hexdigest()


# Merging ---------------------------------------------------------------------


def merge(files: Sequence[StatsFile], sources: Sequence[str] | None = None) -> StatsFile:
    """One file with the statistics of all ``files``' batches, as if calibrated together.

    The files must come from the same model (fingerprint) and the same observation
    plan (the recorded settings that decide what is observed); the first file's
    settings and spec are kept.
    """
    if not files:
        raise StatsFileError("nothing to merge")
    names = list(sources or [f"file {i + 1}" for i in range(len(files))])
    first = files[0]
    stats = first.stats
    for sf, name in zip(files[1:], names[1:]):
        if sf.fingerprint != first.fingerprint:
            if sf.catalog.identity and first.catalog.identity:
                why = first_difference(sf.catalog.identity, first.catalog.identity).replace("this model", "the other")
            elif is_versioned(sf.fingerprint) != is_versioned(first.fingerprint):
                why = "one file has an older (version 1) fingerprint; calibrate it again"
            else:
                why = f"{printable(sf.catalog.class_name)} vs {printable(first.catalog.class_name)}"
            raise StatsFileError(
                f"cannot merge {printable(name)} into {printable(names[0])}: different models: {why} "
                f"(fingerprint {sf.fingerprint} vs {first.fingerprint})"
            )
        if sf.stats.observed != first.stats.observed:
            changed = _differences(first.stats.observed, sf.stats.observed)
            raise StatsFileError(
                f"cannot merge {printable(name)} into {printable(names[0])}: calibrated with a different plan "
                f"({printable(changed)})"
            )
        stats = stats.merge(sf.stats)
    provenance = dict(first.provenance)
    provenance["merged_from"] = len(files)
    return StatsFile(first.spec, first.catalog, stats, first.settings, provenance)


def _differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> str:
    if a is None or b is None:
        return "one file's settings are unknown"
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys[:3])


# The catalog and the settings as JSON ---------------------------------------------


_ERROR_FIELDS = ("clipped_db", "equalized_db", "sensitivity_db", "recommended_scheme", "range_source")


def measured_state(measured: Any) -> dict[str, Any]:
    """A report.Measured as JSON data (every value finite or null: undefined SQNRs are None)."""
    return {
        "probe_batches": measured.probe_batches,
        "modules": {
            fqn: {
                "sqnr_db": dict(e.sqnr_db),
                "reasons": dict(e.reasons),
                **{k: getattr(e, k) for k in _ERROR_FIELDS},
                "bits_per_weight": dict(e.bits_per_weight),
            }
            for fqn, e in measured.modules.items()
        },
        "quantizer_of": dict(measured.quantizer_of),
        "plan": dict(measured.plan),
        "plan_sqnr_db": measured.plan_sqnr_db,
        "plan_reason": measured.plan_reason,
        "plan_data": dict(measured.plan_data),
        "sensitivity_measured": measured.sensitivity_measured,
        # Later additions (absent from older files: read back with their defaults).
        "plan_output_sqnr_db": dict(measured.plan_output_sqnr_db),
        "output_key": measured.output_key,
        "reference": measured.reference,
        "module_extras": {
            fqn: {"scheme_reason": e.scheme_reason, "rows": e.rows, "dynamic_kernel": e.dynamic_kernel}
            for fqn, e in measured.modules.items()
        },
        # The deployment target and what it does not run (absent in files written before targets).
        "target": measured.target,
        "refused": {fqn: dict(r) for fqn, r in measured.refused.items()},
        "plan_size_mb": measured.plan_size_mb,
        "float_size_mb": measured.float_size_mb,
        "plan_bits_per_weight": measured.plan_bits_per_weight,
        "schemes": {name: dict(facts) for name, facts in measured.schemes.items()},
    }


def measured_from_state(state: Mapping[str, Any], source: str) -> Any:
    """The report.Measured that :func:`measured_state` wrote."""
    try:
        extras = state.get("module_extras") or {}
        modules = {
            str(fqn): ModuleError(
                str(fqn),
                {str(k): _db(v) for k, v in e["sqnr_db"].items()},
                {str(k): str(v) for k, v in e["reasons"].items()},
                _db(e["clipped_db"]),
                _db(e["equalized_db"]),
                _db(e["sensitivity_db"]),
                str(e["recommended_scheme"]),
                str(e["range_source"]),
                str(extras.get(fqn, {}).get("scheme_reason", "")),
                _count(extras.get(fqn, {}).get("rows")),
                bool(extras.get(fqn, {}).get("dynamic_kernel", True)),
                {str(k): _db(v) for k, v in e.get("bits_per_weight", {}).items()},  # absent before formats
            )
            for fqn, e in state["modules"].items()
        }
        return Measured(
            int(state["probe_batches"]),
            modules,
            {str(k): (None if v is None else str(v)) for k, v in state["quantizer_of"].items()},
            {str(k): str(v) for k, v in state["plan"].items()},
            _db(state["plan_sqnr_db"]),
            str(state["plan_reason"]),
            dict(state["plan_data"]),
            bool(state["sensitivity_measured"]),
            {str(k): _db(v) for k, v in (state.get("plan_output_sqnr_db") or {}).items()},
            None if state.get("output_key") is None else str(state["output_key"]),
            str(state.get("reference") or "the float model"),
            target=str(state.get("target") or ""),
            plan_size_mb=_db(state.get("plan_size_mb")),
            float_size_mb=_db(state.get("float_size_mb")),
            plan_bits_per_weight=_db(state.get("plan_bits_per_weight")),
            schemes={str(k): dict(v) for k, v in state.get("schemes", {}).items()},
            refused={str(f): {str(k): str(v) for k, v in r.items()} for f, r in (state.get("refused") or {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StatsFileError(
            f"{source}: malformed stats file (its measured error: {type(exc).__name__}: {exc})"
        ) from None


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def _db(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"not a number of dB: {value!r}")
    return float(value)


def catalog_state(catalog: Any) -> dict[str, Any]:
    """The catalog as plain JSON data.

    Modules are rows of :class:`ModuleInfo` fields, in tree order; weight schemes are
    their three fields; weighted-layer kinds are their registered names (rebuilt from
    the registry when read); every other field is written as its plain value (sets
    sorted), so a field added to the catalog needs no change here.
    """
    names = [f.name for f in fields(ModuleInfo)]
    state: dict[str, Any] = {}
    for f in fields(catalog):
        value = getattr(catalog, f.name)
        if f.name == "modules":
            state["module_fields"] = names
            state["modules"] = [[getattr(info, n) for n in names] for info in value.values()]
        elif f.name == "weight_schemes":
            state[f.name] = {fqn: [w.source, w.per_channel, w.description] for fqn, w in value.items()}
        elif f.name == "kinds":
            state[f.name] = {fqn: kind.name for fqn, kind in value.items()}
        elif isinstance(value, (set, frozenset)):
            state[f.name] = sorted(value)
        else:
            state[f.name] = value
    return state


def catalog_from_state(state: Mapping[str, Any]) -> Any:
    """Rebuild the :class:`~.modules.ModelCatalog` without the model."""

    known = {f.name for f in fields(ModuleInfo)}
    names = list(state["module_fields"])
    missing = [
        f.name
        for f in fields(ModuleInfo)
        if f.name not in names and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise ValueError(f"module field {missing[0]!r} missing")
    values: dict[str, Any] = {}
    for f in fields(ModelCatalog):
        if f.name not in state and f.name != "modules":
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"catalog field {f.name!r} missing")
            continue
        if f.name == "modules":
            modules = {}
            for row in state["modules"]:
                if len(row) != len(names):
                    raise ValueError("a module row has the wrong length")
                info = ModuleInfo(**{n: _tuples(v) for n, v in zip(names, row) if n in known})
                modules[info.fqn] = info
            values[f.name] = modules
        elif f.name == "weight_schemes":
            values[f.name] = {
                fqn: WeightScheme(str(source), per_channel if per_channel is None else bool(per_channel), str(text))
                for fqn, (source, per_channel, text) in state[f.name].items()
            }
        elif f.name == "kinds":
            kinds = {}
            for fqn, name in state[f.name].items():
                kind = kind_named(name)
                if kind is None:
                    raise StatsFileError(
                        f"its module {fqn!r} is a weighted layer of kind {name!r}, which this installation "
                        "does not register (register_weighted_kind) "
                    )
                kinds[fqn] = kind
            values[f.name] = kinds
        elif isinstance(f.default, (set, frozenset)):
            values[f.name] = frozenset(state[f.name])
        else:
            values[f.name] = _tuples(state[f.name])
    return ModelCatalog(**values)


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the catalog holds (also inside dict values)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def settings_state(settings: Any) -> dict[str, Any]:
    return {
        "enabled": list(settings.enabled),
        "params": {name: dict(values) for name, values in settings.params.items()},
        # --ch-axis rules as the text they were given in (AxisOverrides.parse reads it back).
        "ch_axis": None if settings.ch_axis is None else str(settings.ch_axis),
    }


def settings_from_state(state: Mapping[str, Any]) -> Any:
    """The recorded settings, validated by today's detectors (a detector unknown here is dropped)."""

    enabled = [name for name in state["enabled"] if name in DETECTORS]
    params = {name: values for name, values in state["params"].items() if name in DETECTORS}
    if not enabled:
        enabled = list(DETECTORS)
    return Settings.build(enabled, params, state["ch_axis"])


def settings_over(
    base: Any,
    detectors: str | None = None,
    params: Iterable[str] = (),
    tolerance: Any = None,
    backend: Any = None,
    ch_axis: Any = None,
) -> Any:
    """``base`` settings with what the command line set explicitly laid over them."""
    given = Settings.from_options(detectors, params, tolerance, backend, ch_axis)  # validates everything given
    settings = base
    if detectors is not None:
        settings = replace(settings, enabled=given.enabled)
    for item in params:
        key, _, value = item.partition("=")
        detector, _, name = key.strip().rpartition(".")
        settings = settings.with_param(detector, name.strip(), value.strip())
    if tolerance is not None:
        settings = settings.with_param("dynamic_vs_static_detector", "tolerance", tolerance)
    if backend is not None:
        settings = settings.with_param("per_channel_detector", "backend", backend)
    if ch_axis is not None:
        settings = replace(settings, ch_axis=given.ch_axis)
    return settings


def settings_for(sf: StatsFile, source: str, **options: Any) -> Any:
    """``sf``'s settings with the given command-line options over them.

    Raises :class:`StatsFileError` when they need statistics the file does not hold
    (another percentile, channel axis, or a detector that was off): that takes a new
    calibration, with the model.
    """
    settings = settings_over(sf.settings, **options)
    stale = stale_params(sf.stats, settings)
    if stale:
        raise StatsFileError(
            f"{source} was calibrated without what these settings need ({', '.join(stale)}); "
            "calibrate again with the model"
        )
    return settings


def describe(sf: StatsFile) -> str:
    """One line about a stats file: model, batches, points, where it came from."""
    modules = sum(1 for m in sf.catalog.modules.values() if not m.is_quant_helper)
    origin = sf.provenance.get("tool", "?")
    world = sf.provenance.get("world_size")
    ranks = f" on {world} ranks" if isinstance(world, int) and world > 1 else ""
    return (
        f"{sf.spec}: {sf.catalog.class_name}, {modules:,} modules, {sf.stats.batches:,} batches{ranks} "
        f"(fingerprint {sf.fingerprint}, {origin}, torch {sf.provenance.get('torch', '?')})"
    )
