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

The statistics are encoded by :func:`stats_state` and decoded by
:func:`stats_from_state`, the one seam that knows the layout of
:class:`~.stats.Stats`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from tui_quantreport.engine.errors import UserError

#: The format identifier written into every file; a file with another version is refused.
FORMAT = "tui-quantreport.stats/1"
FORMAT_PREFIX = "tui-quantreport.stats/"
#: The suffix that marks a stats file on the command line.
SUFFIX = ".qstats"


class StatsFileError(UserError):
    """A stats file that cannot be read, or does not belong with the model or the other files."""


def is_stats_path(text: str | os.PathLike | None) -> bool:
    """True for a path ending in ``.qstats`` (torch-free, reads nothing)."""
    return text is not None and str(text).lower().endswith(SUFFIX)


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

    @property
    def fingerprint(self) -> str:
        return self.catalog.fingerprint

    def check_model(self, catalog: Any, source: str = "the stats file") -> None:
        """Refuse a model whose fingerprint differs from the one these statistics were taken on."""
        if catalog.fingerprint != self.catalog.fingerprint:
            raise StatsFileError(
                f"{source} was calibrated on a different model ({self.catalog.class_name}, fingerprint "
                f"{self.catalog.fingerprint}) than {catalog.class_name} (fingerprint {catalog.fingerprint})"
            )


def make(spec: str, catalog: Any, stats: Any, settings: Any, **provenance: Any) -> StatsFile:
    """A stats file for ``stats`` taken on ``catalog``'s model with ``settings``."""
    import torch

    from tui_quantreport import __version__

    info = {
        "tool": f"tui-quantreport {__version__}",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    info.update(provenance)
    return StatsFile(spec, catalog, stats, settings, info)


# Writing ---------------------------------------------------------------------


def encode(sf: StatsFile) -> bytes:
    """The file's bytes: safetensors, with the JSON header and its checksum in the metadata."""
    from safetensors.torch import save

    tensors, stats_meta = stats_state(sf.stats)
    header = {
        "format": FORMAT,
        "spec": sf.spec,
        "model": {"class": sf.catalog.class_name, "fingerprint": sf.catalog.fingerprint},
        "batches": sf.stats.batches,
        "provenance": dict(sf.provenance),
        "settings": settings_state(sf.settings),
        "observed": dict(sf.stats.observed) if sf.stats.observed is not None else None,
        "catalog": catalog_state(sf.catalog),
        "stats": stats_meta,
    }
    text = json.dumps(header, separators=(",", ":"), allow_nan=False)
    metadata = {"format": FORMAT, "header": text, "sha256": _digest(text, tensors)}
    return save(tensors, metadata=metadata)


def save(path: str | os.PathLike, sf: StatsFile) -> Path:
    """Write ``sf`` to ``path`` atomically (a temporary file and a rename; no partial file)."""
    from tui_quantreport.engine.export import write_atomic

    return write_atomic(path, encode(sf), what="stats file")


# Reading ---------------------------------------------------------------------


def load(path: str | os.PathLike) -> StatsFile:
    """Read and check a stats file; :class:`StatsFileError` (one sentence) on any problem."""
    target = Path(path).expanduser()
    if not target.exists():
        raise StatsFileError(f"{path}: no such file")
    if not target.is_file():
        raise StatsFileError(f"{path}: not a file")
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise StatsFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return decode(data, str(path))


def decode(data: bytes, source: str = "stats file") -> StatsFile:
    """Parse and check a stats file's bytes (JSON and raw numbers only; nothing is unpickled)."""
    header_text, digest = _read_metadata(data, source)
    try:
        from safetensors.torch import load as load_tensors

        tensors = load_tensors(data)
    except Exception as exc:  # the safetensors parser's own checks: offsets, sizes, dtypes
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StatsFileError(f"{source}: truncated or corrupt stats file ({detail})") from None
    if _digest(header_text, tensors) != digest:
        raise StatsFileError(
            f"{source}: its contents do not match its checksum: the file was changed or damaged after it was written"
        )
    try:
        header = json.loads(header_text)
        return _build(header, tensors, source)
    except StatsFileError:
        raise
    except UserError as exc:  # settings the current detectors refuse
        raise StatsFileError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise StatsFileError(f"{source}: malformed stats file ({type(exc).__name__}: {exc})") from None


def _read_metadata(data: bytes, source: str) -> tuple[str, str]:
    """The JSON header and checksum from the safetensors metadata, with a clear error for anything else."""
    if data[:2] == b"PK" or data[:1] == b"\x80":
        raise StatsFileError(
            f"{source}: this is a pickle or torch.save file, not a tui-quantreport stats file "
            "(stats files are never unpickled)"
        )
    if len(data) < 8:
        raise StatsFileError(f"{source}: truncated: {len(data)} bytes, too short for a stats file")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        if data[8:9] != b"{" and data[:1] != b"{":
            raise StatsFileError(f"{source}: not a tui-quantreport stats file (no safetensors header)")
        raise StatsFileError(
            f"{source}: truncated: the header needs {size:,} bytes, only {len(data) - 8:,} follow"
        )
    try:
        index = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StatsFileError(f"{source}: not a tui-quantreport stats file, or corrupt (its header is not JSON)") from None
    meta = index.get("__metadata__") if isinstance(index, dict) else None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(FORMAT_PREFIX):
        raise StatsFileError(f"{source}: a safetensors file, but not a tui-quantreport stats file")
    if fmt != FORMAT:
        raise StatsFileError(
            f"{source}: stats file format {fmt.removeprefix(FORMAT_PREFIX)!r} is not readable by this version "
            f"(it reads {FORMAT.removeprefix(FORMAT_PREFIX)!r}); recalibrate or use the matching tui-quantreport"
        )
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
    observed = header["observed"]
    stats = stats_from_state(tensors, header["stats"], header["batches"], observed)
    unknown = {fqn for fqn, _ in stats.points} | set(stats.weights)
    unknown -= set(catalog.modules)
    if unknown:
        raise StatsFileError(f"{source}: malformed stats file (statistics for unknown module {sorted(unknown)[0]!r})")
    settings = settings_from_state(header["settings"])
    return StatsFile(str(header["spec"]), catalog, stats, settings, dict(header.get("provenance") or {}))


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
            raise StatsFileError(
                f"cannot merge {name} into {names[0]}: different models "
                f"({sf.catalog.class_name} {sf.fingerprint} vs {first.catalog.class_name} {first.fingerprint})"
            )
        if sf.stats.observed != first.stats.observed:
            changed = _differences(first.stats.observed, sf.stats.observed)
            raise StatsFileError(
                f"cannot merge {name} into {names[0]}: calibrated with a different plan ({changed})"
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


def catalog_state(catalog: Any) -> dict[str, Any]:
    """The catalog as plain JSON data: one row of :class:`ModuleInfo` fields per module, in tree order."""
    from tui_quantreport.engine.report import ModuleInfo

    names = [f.name for f in fields(ModuleInfo)]
    return {
        "class_name": catalog.class_name,
        "fingerprint": catalog.fingerprint,
        "has_qconfig": catalog.has_qconfig,
        "module_fields": names,
        "modules": [[getattr(info, n) for n in names] for info in catalog.modules.values()],
        "weight_schemes": {
            fqn: [s.source, s.per_channel, s.description] for fqn, s in catalog.weight_schemes.items()
        },
    }


def catalog_from_state(state: Mapping[str, Any]) -> Any:
    """Rebuild the :class:`~.modules.ModelCatalog` without the model."""
    from tui_quantreport.engine.modules import ModelCatalog, WeightScheme
    from tui_quantreport.engine.report import ModuleInfo

    known = {f.name for f in fields(ModuleInfo)}
    names = list(state["module_fields"])
    missing = [f.name for f in fields(ModuleInfo) if f.name not in names and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"module field {missing[0]!r} missing")
    modules = {}
    for row in state["modules"]:
        if len(row) != len(names):
            raise ValueError("a module row has the wrong length")
        values = {n: tuple(v) if isinstance(v, list) else v for n, v in zip(names, row) if n in known}
        info = ModuleInfo(**values)
        modules[info.fqn] = info
    schemes = {
        fqn: WeightScheme(str(source), per_channel if per_channel is None else bool(per_channel), str(text))
        for fqn, (source, per_channel, text) in state["weight_schemes"].items()
    }
    return ModelCatalog(
        class_name=str(state["class_name"]),
        modules=modules,
        weight_schemes=schemes,
        has_qconfig=bool(state["has_qconfig"]),
        fingerprint=str(state["fingerprint"]),
    )


def settings_state(settings: Any) -> dict[str, Any]:
    return {
        "enabled": list(settings.enabled),
        "params": {name: dict(values) for name, values in settings.params.items()},
        "ch_axis": settings.ch_axis,
    }


def settings_from_state(state: Mapping[str, Any]) -> Any:
    """The recorded settings, validated by today's detectors (a detector unknown here is dropped)."""
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.detectors import DETECTORS

    enabled = [name for name in state["enabled"] if name in DETECTORS]
    params = {name: values for name, values in state["params"].items() if name in DETECTORS}
    if not enabled:
        enabled = list(DETECTORS)
    return Settings.build(enabled, params, state["ch_axis"])


def settings_over(base: Any, detectors: str | None = None, params: Iterable[str] = (), tolerance: Any = None,
                  backend: Any = None, ch_axis: Any = None) -> Any:
    """``base`` settings with what the command line set explicitly laid over them."""
    from dataclasses import replace

    from tui_quantreport.engine.settings import Settings

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
    from tui_quantreport.engine.settings import stale_params

    settings = settings_over(sf.settings, **options)
    stale = stale_params(sf.stats, settings)
    if stale:
        raise StatsFileError(
            f"{source} was calibrated without what these settings need ({', '.join(stale)}); "
            "calibrate again with the model"
        )
    return settings


# The statistics as tensors --------------------------------------------------------
#
# Flat tensors, one per kind of number, so that a model of thousands of modules is a
# handful of safetensors entries (fast to write, read and check):
#   point.scalars    float64 (P, 3): global_min, global_max, range_sum (inf and NaN kept)
#   point.calls      int64   (P,)
#   point.channel_min / point.channel_max   float32, the per-channel points concatenated
#   point.ratio_sum  float32, point.used / point.constant int64: per (point, percentile)
#   weight.min / weight.max   float32, the weighted modules concatenated
# and, in JSON, per point [fqn, role, axis, shapes, channels, percentiles] and per
# weight [fqn, channels], which say how to cut the flat tensors back up.


def stats_state(stats: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``stats`` as flat CPU tensors and the JSON that lays them out."""
    import torch

    points_meta = []
    scalars, calls = [], []
    mins, maxs, ratio, used, constant = [], [], [], [], []
    for (fqn, role), p in stats.points.items():
        channels = None if p.channel_min is None else int(p.channel_min.numel())
        percentiles = list(p.percentiles)
        points_meta.append([fqn, role, p.axis, [list(s) for s in p.shapes], channels, percentiles])
        scalars.append((p.global_min, p.global_max, p.range_sum))
        calls.append(p.calls)
        if channels is not None:
            mins.append(p.channel_min.reshape(-1))
            maxs.append(p.channel_max.reshape(-1))
            for q in percentiles:
                s = p.percentiles[q]
                ratio.append(s.ratio_sum.reshape(-1))
                used.append(s.used.reshape(-1))
                constant.append(s.constant.reshape(-1))
    weights_meta = []
    wmins, wmaxs = [], []
    for fqn, w in stats.weights.items():
        weights_meta.append([fqn, int(w.channel_min.numel())])
        wmins.append(w.channel_min.reshape(-1))
        wmaxs.append(w.channel_max.reshape(-1))

    def flat(parts: list, dtype: Any) -> Any:
        return torch.cat([t.to(dtype) for t in parts]) if parts else torch.zeros(0, dtype=dtype)

    tensors = {
        "point.scalars": torch.tensor(scalars, dtype=torch.float64).reshape(-1, 3),
        "point.calls": torch.tensor(calls, dtype=torch.int64),
        "point.channel_min": flat(mins, torch.float32),
        "point.channel_max": flat(maxs, torch.float32),
        "point.ratio_sum": flat(ratio, torch.float32),
        "point.used": flat(used, torch.int64),
        "point.constant": flat(constant, torch.int64),
        "weight.min": flat(wmins, torch.float32),
        "weight.max": flat(wmaxs, torch.float32),
    }
    return tensors, {"points": points_meta, "weights": weights_meta}


def stats_from_state(tensors: Mapping[str, Any], meta: Mapping[str, Any], batches: int,
                     observed: Mapping[str, Any] | None) -> Any:
    """Rebuild :class:`~.stats.Stats` from :func:`stats_state`'s output (checking every length)."""
    from tui_quantreport.engine.stats import PercentileStats, PointStats, Stats, WeightRange

    if not isinstance(batches, int) or batches < 0:
        raise ValueError(f"batch count {batches!r}")
    points_meta, weights_meta = meta["points"], meta["weights"]
    scalars, calls = tensors["point.scalars"], tensors["point.calls"]
    if tuple(scalars.shape) != (len(points_meta), 3) or tuple(calls.shape) != (len(points_meta),):
        raise ValueError("the point tables and the point list disagree in length")
    cut = {name: _Cutter(tensors[name], name) for name in (
        "point.channel_min", "point.channel_max", "point.ratio_sum", "point.used", "point.constant",
        "weight.min", "weight.max",
    )}
    rows = scalars.tolist()
    counts = calls.tolist()
    points = {}
    for i, (fqn, role, axis, shapes, channels, percentiles) in enumerate(points_meta):
        if role not in ("pre", "post") or (axis is not None and not isinstance(axis, int)):
            raise ValueError(f"point {fqn!r} {role!r}")
        channel_min = channel_max = None
        kept = {}
        if channels is not None:
            channel_min = cut["point.channel_min"].take(channels)
            channel_max = cut["point.channel_max"].take(channels)
            for q in percentiles:
                kept[float(q)] = PercentileStats(
                    cut["point.ratio_sum"].take(channels),
                    cut["point.used"].take(channels),
                    cut["point.constant"].take(channels),
                )
        global_min, global_max, range_sum = rows[i]
        points[(str(fqn), role)] = PointStats(
            calls=int(counts[i]),
            axis=axis,
            shapes=tuple(tuple(int(d) for d in s) for s in shapes),
            global_min=global_min,
            global_max=global_max,
            range_sum=range_sum,
            channel_min=channel_min,
            channel_max=channel_max,
            percentiles=kept,
        )
    weights = {
        str(fqn): WeightRange(cut["weight.min"].take(channels), cut["weight.max"].take(channels))
        for fqn, channels in weights_meta
    }
    for c in cut.values():
        c.finish()
    return Stats(batches, points, weights, dict(observed) if observed is not None else None)


class _Cutter:
    """Consecutive slices of one flat tensor; every element must be used exactly once."""

    def __init__(self, tensor: Any, name: str):
        if tensor.dim() != 1:
            raise ValueError(f"{name} is not flat")
        self.tensor, self.name, self.at = tensor, name, 0

    def take(self, n: Any) -> Any:
        if not isinstance(n, int) or n < 0 or self.at + n > self.tensor.numel():
            raise ValueError(f"{self.name} is shorter than its layout says")
        part = self.tensor[self.at : self.at + n]
        self.at += n
        return part

    def finish(self) -> None:
        if self.at != self.tensor.numel():
            raise ValueError(f"{self.name} is longer than its layout says")


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
