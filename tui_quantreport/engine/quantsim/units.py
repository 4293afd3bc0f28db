"""Decision units: a module, or modules that must share one format (one decision of the planner).

Modules reading the same input tensor (q/k/v, gate/up: one quantized input), the experts of one MoE
layer, modules holding the same weight Parameter (tied weights). A unit's candidates are every
registered scheme that applies to all of its modules (and the deployment target runs there), plus float.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis
from tui_quantreport.engine.quantsim.schemes import FLOAT, SCHEMES

_EXPERTS = re.compile(r"^(?P<layer>.*\bexperts?)\.\d+(?P<rest>\..*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Unit:
    """Modules that take one decision: their candidates and each candidate's deployed bits."""

    members: tuple[str, ...]
    #: Why the members are one unit ("" for a single module).
    why: str
    candidates: tuple[str, ...]
    bits: Mapping[str, float]
    #: Weight elements (a tied weight counted once).
    weights: int

    @property
    def name(self) -> str:
        return self.members[0] if len(self.members) == 1 else f"{self.members[0]} (+{len(self.members) - 1})"


def decision_units(
    analysis: ErrorAnalysis,
    shared_inputs: Iterable[Sequence[str]] = (),
    *,
    fuse: bool = True,
    schemes: Iterable[str] | None = None,
    called: Iterable[str] | None = None,
) -> list[Unit]:
    """The model's decision units (tree order). ``fuse=False`` keeps only tied weights together
    (one tensor cannot hold two formats); ``schemes`` limits the candidates (default: all registered).
    ``called`` names the modules called on the probes: a unit with a module never called stays
    float (quantizing it would measure as free, since the probes never run it)."""
    seen_called = set(called) if called is not None else None
    allowed = [s for s in (SCHEMES if schemes is None else schemes) if s in SCHEMES]
    units = []
    for members, why in _groups(analysis, shared_inputs, fuse):
        targets = [analysis.targets[m] for m in members]
        unique = list({id(t.module.weight): t for t in targets}.values())
        weights = sum(t.module.weight.numel() for t in unique)
        never = seen_called is not None and any(m not in seen_called for m in members)
        bits = {} if never else _candidate_bits(analysis, members, allowed)
        bits[FLOAT] = float(sum(t.module.weight.numel() * t.module.weight.element_size() * 8 for t in unique))
        units.append(Unit(tuple(members), why, tuple(bits), bits, weights))
    return units


def _groups(analysis: ErrorAnalysis, shared_inputs: Iterable[Sequence[str]], fuse: bool) -> list[tuple[list[str], str]]:
    """(members in tree order, why they are one unit) for every unit (a union-find over the targets)."""
    order = list(analysis.targets)
    parent = {fqn: fqn for fqn in order}
    why: dict[str, set[str]] = {fqn: set() for fqn in order}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(members: Sequence[str], reason: str) -> None:
        members = [m for m in members if m in parent]
        for m in members[1:]:
            a, b = find(members[0]), find(m)
            if a != b:
                parent[b] = a
        if len(members) > 1:
            why[find(members[0])].add(reason)

    if fuse:
        for group in shared_inputs:
            union(list(group), "read the same input")
        experts: dict[tuple[str, str], list[str]] = {}
        for fqn in order:
            match = _EXPERTS.match(fqn)
            if match:
                experts.setdefault((match["layer"], match["rest"] or ""), []).append(fqn)
        for group in experts.values():
            union(group, "experts of one MoE layer")
    by_weight: dict[int, list[str]] = {}
    for fqn, target in analysis.targets.items():
        by_weight.setdefault(id(target.module.weight), []).append(fqn)
    for group in by_weight.values():
        union(group, "share one weight (tied)")
    groups: dict[str, list[str]] = {}
    reasons: dict[str, set[str]] = {}
    for fqn in order:
        groups.setdefault(find(fqn), []).append(fqn)
        reasons.setdefault(find(fqn), set()).update(why[fqn])
    return [(members, "; ".join(sorted(reasons.get(root, ())))) for root, members in groups.items()]


def _candidate_bits(analysis: ErrorAnalysis, members: Sequence[str], allowed: Sequence[str]) -> dict[str, float]:
    """{scheme: the unit's deployed bits} for every allowed scheme that takes all of its modules
    (eligible, run there by the deployment target, with a calibrated range where it needs one)."""
    targets = [analysis.targets[m] for m in members]
    unique = list({id(t.module.weight): t for t in targets}.values())
    bits: dict[str, float] = {}
    for name in allowed:
        scheme = SCHEMES[name]
        if any(analysis._ineligible(t, scheme) is not None for t in targets):
            continue
        if any(name in analysis.refusals().get(m, {}) for m in members):
            continue  # the deployment target does not run it here
        if scheme.needs_range and any(t.static is None for t in targets):
            continue
        bits[name] = sum(
            scheme.bits_per_weight(tuple(t.module.weight.shape), t.kind) * t.module.weight.numel() for t in unique
        )
    return bits
