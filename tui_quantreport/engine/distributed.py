"""Distributed calibration on ``torch.distributed`` (``torchrun``).

Under ``torchrun --nproc-per-node N -m tui_quantreport calibrate MODEL ...``
every rank builds the model, calibrates its share of the batches, and the
per-rank statistics are combined once, at the end: there is no communication
per batch.

- **Sharding**: batch ``i`` runs on rank ``i % world_size``
  (:func:`shard_batches`), unless the model file's ``calibration_batches``
  has parameters named ``rank`` and ``world_size``: then it is called with those and each rank
  runs everything it yields.
- **Reduction** (:func:`combine`): each rank's statistics are encoded as
  flat tensors plus JSON (the stats file's layout, never pickle), gathered on
  every rank with ``all_gather``, and merged in rank order with
  :meth:`Stats.merge`. Minima and maxima and counts are therefore exact, sums
  are added in rank order, and the result is the same as merging the ranks'
  own stats files: a distributed run equals ``merge`` of its parts. Gathering
  rather than ``all_reduce`` keeps what a sum cannot combine (the shapes seen,
  whether the channel count and axis agreed) and costs one O(channels)
  message per rank.
- **Failure** (:func:`settle`): every rank reports success or its error in
  one collective before anything is combined; if any rank failed, every rank
  raises :class:`RankFailed` naming the first failing rank and its cause, so
  no rank writes a file.

``gloo`` is used on CPU and ``nccl`` when CUDA is available (each rank on
``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import Any

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.modules import first_difference
from tui_quantreport.engine.spec import open_batches
from tui_quantreport.engine.stats.packing import stats_from_state, stats_state

#: How long a rank waits for the others at a collective before giving up.
DEFAULT_TIMEOUT = timedelta(minutes=30)


class RankFailed(UserError):
    """Some rank of a distributed calibration failed; every rank raises this, naming it."""


@dataclass(frozen=True)
class World:
    """This process's place in a distributed run."""

    rank: int
    size: int
    local_rank: int = 0
    backend: str = "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment(environ: Any = None) -> World | None:
    """The world ``torchrun`` describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; None outside it."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise UserError(
            f"RANK={env.get('RANK')!r} and WORLD_SIZE={env.get('WORLD_SIZE')!r} must be whole numbers "
            "(they are set by torchrun)"
        ) from None
    if size < 1 or not 0 <= rank < size:
        raise UserError(f"RANK={rank} is not within WORLD_SIZE={size}")
    return World(rank, size, local_rank)


def start(world: World, backend: str | None = None, timeout: timedelta = DEFAULT_TIMEOUT) -> World:
    """Join the process group (``env://``, as torchrun sets it up); returns the world with its backend."""
    import torch
    import torch.distributed as dist

    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)  # so a model file's "cuda" means this rank's GPU
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to join is reported, in one line
            raise RankFailed(
                f"rank {world.rank}: could not join the process group ({backend}): {_one_line(exc)}"
            ) from None
    return replace(world, backend=backend)


def stop() -> None:
    """Leave the process group, if joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# Sharding ---------------------------------------------------------------------


class Shard:
    """This rank's batches: an iterator that knows its length when the source did."""

    def __init__(self, iterator: Iterator[Any], length: int | None):
        self._iterator = iterator
        self.length = length

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("the number of batches in this shard is unknown")
        return self.length


def takes_rank(factory: Any) -> bool:
    """True when ``factory`` has parameters named ``rank`` and ``world_size`` (it shards by itself)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return all(
        name in parameters
        and parameters[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        for name in ("rank", "world_size")
    )


def shard_batches(batches: Iterable[Any], rank: int, size: int, max_batches: int | None = None) -> Shard:
    """Batch ``i`` (of the first ``max_batches``) when ``i % size == rank``."""
    try:
        total: int | None = len(batches)  # type: ignore[arg-type]
    except TypeError:
        total = None
    if max_batches is not None:
        total = max_batches if total is None else min(total, max_batches)

    def mine() -> Iterator[Any]:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                return
            if i % size == rank:
                yield batch

    return Shard(mine(), None if total is None else len(range(rank, total, size)))


def open_shard(loaded: Any, world: World, max_batches: int | None = None) -> Shard:
    """This rank's calibration batches for ``loaded`` (an engine LoadedModel)."""
    factory = loaded.batches_factory
    if factory is not None and takes_rank(factory):
        own = open_batches(replace(loaded, batches_factory=partial(factory, rank=world.rank, world_size=world.size)))
        limit = None if max_batches is None else len(range(world.rank, max_batches, world.size))
        return shard_batches(own, 0, 1, limit)
    return shard_batches(open_batches(loaded), world.rank, world.size, max_batches)


# Collectives --------------------------------------------------------------------


def settle(world: World, error: str | None) -> None:
    """Every rank says whether it succeeded; if any failed, every rank raises :class:`RankFailed`.

    The message names the lowest failing rank and its cause (and how many others failed).
    """
    messages = _all_gather_bytes(world, (error or "").encode("utf-8"))
    failed = [(rank, m.decode("utf-8", "replace")) for rank, m in enumerate(messages) if m]
    if failed:
        rank, cause = failed[0]
        others = f" (and {len(failed) - 1} other rank{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
        raise RankFailed(f"rank {rank} of {world.size} failed{others}: {cause}")


def check_same_model(world: World, catalog: Any) -> None:
    """Every rank built the same model (fingerprint); else every rank raises :class:`RankFailed`
    naming the first rank that differs from rank 0 and its first difference (no file is written)."""
    payload = json.dumps({"fingerprint": catalog.fingerprint, "identity": catalog.identity}).encode("utf-8")
    parts = [json.loads(blob.decode("utf-8")) for blob in _all_gather_bytes(world, payload)]
    reference = parts[0]
    for rank, part in enumerate(parts[1:], start=1):
        if part["fingerprint"] != reference["fingerprint"]:
            theirs = tuple(tuple(r) for r in part["identity"])
            ours = tuple(tuple(r) for r in reference["identity"])
            why = first_difference(theirs, ours).replace("this model", "rank 0")
            raise RankFailed(
                f"rank {rank} of {world.size} built a different model than rank 0: "
                f"{why} (fingerprint {part['fingerprint']} vs {reference['fingerprint']})"
            )


def combine(world: World, stats: Any) -> Any:
    """Every rank's statistics merged in rank order (the same result on every rank)."""
    parts = _all_gather_bytes(world, encode_stats(stats))
    merged = None
    for blob in parts:
        part = decode_stats(blob)
        merged = part if merged is None else merged.merge(part)
    return merged


def encode_stats(stats: Any) -> bytes:
    """``stats`` as bytes for the wire: safetensors plus JSON (the stats file's layout; no pickle)."""
    from safetensors.torch import save

    tensors, meta = stats_state(stats)
    return save(tensors, metadata={"stats": json.dumps(meta, allow_nan=False)})


def decode_stats(blob: bytes) -> Any:
    from safetensors.torch import load

    size = int.from_bytes(blob[:8], "little")
    meta = json.loads(json.loads(blob[8 : 8 + size])["__metadata__"]["stats"])
    return stats_from_state(load(blob), meta)


def _all_gather_bytes(world: World, payload: bytes) -> list[bytes]:
    """Every rank's ``payload``, in rank order (two collectives: the lengths, then the padded bytes)."""
    import torch
    import torch.distributed as dist

    if world.size == 1 and not dist.is_initialized():
        return [payload]
    device = torch.device("cuda", torch.cuda.current_device()) if world.backend == "nccl" else torch.device("cpu")
    try:
        length = torch.tensor([len(payload)], dtype=torch.int64, device=device)
        lengths = [torch.zeros_like(length) for _ in range(world.size)]
        dist.all_gather(lengths, length)
        sizes = [int(n.item()) for n in lengths]
        longest = max(sizes)
        buffer = torch.zeros(longest, dtype=torch.uint8, device=device)
        if payload:
            buffer[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
        gathered = [torch.empty_like(buffer) for _ in range(world.size)]
        dist.all_gather(gathered, buffer)
    except Exception as exc:  # noqa: BLE001 - a peer that died surfaces as any backend error
        raise RankFailed(f"rank {world.rank}: lost contact with the other ranks: {_one_line(exc)}") from None
    return [bytes(t[:n].cpu().numpy().tobytes()) for t, n in zip(gathered, sizes)]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# Sensitivity split across ranks ---------------------------------------------------


def probe_digest(probes: Any) -> str:
    """A digest of the probe batches' structure and every tensor's dtype, shape and bytes."""
    import hashlib

    import torch

    digest = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            digest.update(b"D")
            for key, item in value.items():
                digest.update(repr(key).encode())
                walk(item)
        elif isinstance(value, (tuple, list)):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                walk(item)
        else:
            digest.update(repr(value).encode())

    walk(probes)
    return digest.hexdigest()


class SplitSensitivity:
    """One-at-a-time sensitivity (a module quantized alone with its plan scheme) split across ranks.

    Every rank measures on the same statistics (the merged ones) and the same probe batches, those a
    1-process run takes (each rank reads them itself; a digest proves they are equal, else rank 0
    measures that rank's share). ``sqnr`` builds an SQNR from ``(db, reason, infinite)`` (the
    engine's ``Sqnr``: this layer does not import the simulation).
    Two collectives, in this order on every rank, whatever happens (:meth:`close` completes them):
    rank 0 sends the plan's modules and its digest; then every rank sends its share's results.
    Item ``i`` (in plan order) is measured by rank ``i % world_size``; rank 0 assembles them in plan
    order and measures itself whatever a rank could not (``notes`` says which and why). A module's
    SQNR is the same function of the same values on every rank: the result equals a 1-process run's.
    """

    def __init__(self, world: World, sqnr: Any):
        self.world = world
        self.sqnr = sqnr
        #: :func:`probe_digest` of this rank's probe batches (set once read).
        self.digest = ""
        self.notes: list[str] = []
        #: How many modules each rank measured (rank 0's count includes any share it took over).
        self.measured_by: dict[int, int] = {}
        #: The ErrorAnalysis measured with (set once built; rank 0's before :meth:`__call__`).
        self.analysis: Any = None
        self._steps = 0

    def _step(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        self._steps += 1
        blobs = _all_gather_bytes(self.world, json.dumps(payload).encode("utf-8"))
        return [json.loads(blob.decode("utf-8")) if blob else {} for blob in blobs]

    def close(self, why: str = "rank 0 stopped before measuring sensitivity") -> None:
        """Complete the two collectives (a rank that failed or stopped early still takes part)."""
        while self._steps < 2:
            self._step({"error": why})

    def _mine(self, items: list[tuple[str, str]], rank: int) -> list[tuple[str, str]]:
        return [item for i, item in enumerate(items) if i % self.world.size == rank]

    def share(self, should_cancel: Any = None) -> None:
        """A rank other than 0: wait for the plan, measure this rank's share (with :attr:`analysis`), send it."""
        analysis = self.analysis
        first = self._step({"digest": self.digest})[0]
        if "plan" not in first:
            self.close()
            return
        if first.get("digest") != self.digest:
            self._step(
                {
                    "error": f"rank {self.world.rank} read other probe batches than rank 0 (the data differs when read again)"
                }
            )
            return
        try:
            results = {
                fqn: _sqnr_state(analysis._simulate({fqn: scheme}, should_cancel))
                for fqn, scheme in self._mine([tuple(i) for i in first["plan"]], self.world.rank)
            }
        except Exception as exc:  # noqa: BLE001 - any failure: rank 0 measures this share itself
            self._step({"error": f"rank {self.world.rank}: {_one_line(exc)}"})
            return
        self._step({"results": results})

    def __call__(self, plan: Any, progress: Any = None, should_cancel: Any = None) -> dict[str, Any]:
        """Rank 0 (``severity.measure``'s ``sensitivity_of``): {fqn: SQNR} for the plan's modules."""
        items = list(plan.quantized.items())
        self._step({"plan": [list(i) for i in items], "digest": self.digest})
        mine = self._mine(items, 0)
        total = len(items)
        results: dict[str, Any] = {}

        def measure(fqn: str, scheme: str) -> None:
            results[fqn] = analysis._simulate({fqn: scheme}, should_cancel)
            self.measured_by[0] = self.measured_by.get(0, 0) + 1
            if progress is not None:
                progress(len(results), total)

        analysis = self.analysis
        if analysis is None:
            raise RuntimeError("the split sensitivity has no analysis to measure with")
        try:
            for fqn, scheme in mine:
                measure(fqn, scheme)
        except BaseException:
            self.close("rank 0 failed while measuring its share")
            raise
        parts = self._step({})
        for rank, part in enumerate(parts[1:], start=1):
            theirs = self._mine(items, rank)
            got = part.get("results", {})
            if "error" in part or set(got) != {fqn for fqn, _ in theirs}:
                self.notes.append(f"rank {rank}'s share measured on rank 0: {part.get('error', 'results missing')}")
                for fqn, scheme in theirs:
                    measure(fqn, scheme)
                continue
            self.measured_by[rank] = len(theirs)
            for fqn, _ in theirs:
                results[fqn] = self.sqnr(got[fqn][0], got[fqn][1], bool(got[fqn][2]))
                if progress is not None:
                    progress(len(results), total)
        return {fqn: results[fqn] for fqn, _ in items}


def _sqnr_state(sqnr: Any) -> list[Any]:
    return [sqnr.db, sqnr.reason, sqnr.infinite]
