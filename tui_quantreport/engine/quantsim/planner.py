"""A plan under a budget: mixed precision chosen from end-to-end sensitivity.

The user gives a budget: average bits per weight (``bpw``), the model's size in
MB (``mb``, 10^6 bytes: quantized weights at their deployed bits, every other
parameter at its own dtype) or a minimum end-to-end SQNR (``sqnr``, dB).

1. **Decision units** (:func:`decision_units`): a module, or a group of modules
   that must share one format: those reading the same input tensor (q/k/v,
   gate/up: one quantized input), the experts of one MoE layer, modules holding
   the same weight Parameter (tied weights). A unit's candidates are every
   registered scheme that applies to all of its modules, plus float.
2. **Sensitivity** (:mod:`.sensitivity`): the end-to-end SQNR ``S`` with only that
   unit quantized, per candidate, and the output error of that pass (an
   :class:`~.sensitivity.ErrorSketch` vector ``e``, ``||e||^2 = 10^(-S/10)``).
   The additive estimate of a plan's noise is ``sum over units of 10^(-S/10)``:
   it assumes the units' output errors are uncorrelated. The **prediction** a
   plan shows is ``||sum of e||^2`` (the errors superposed: the first-order error
   of the plan, cross terms between units included), or the additive estimate
   where a unit's error was not kept (see :meth:`Planner.predict`).
3. **The multiple-choice knapsack**, solved by a Lagrangian bisection on the
   additive noise (separable by unit): each unit independently minimizes
   ``noise + lambda * bits``; ``lambda`` is bisected so the plan fits the
   budget, and what is left of the budget is then spent greedily (best noise
   saved per bit).
4. **Simulation** of the chosen plan end to end (:meth:`ErrorAnalysis.plan_sqnr`):
   the additive prediction is never trusted alone. When the simulation falls
   short of the prediction (or of the SQNR asked for), the plan is refined
   greedily: the single-unit scheme changes the prediction ranks best are
   simulated and the one with the best measured gain per bit within the budget
   is kept, for a few rounds.
5. **The frontier**: plans for a sweep of bpw budgets and the uniform plans (one
   scheme wherever it applies), each simulated: end-to-end SQNR against size.

Nothing here hard-codes a scheme: candidates come from :data:`SCHEMES`. The units are in
:mod:`.units`, the knapsack's solver in :mod:`.knapsack`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.plan import Plan
from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis
from tui_quantreport.engine.quantsim.knapsack import (
    Choice,
    db_of,
    noise_of,
    options_of,
    smallest,
    within_bits,
    within_noise,
)
from tui_quantreport.engine.quantsim.schemes import FLOAT
from tui_quantreport.engine.quantsim.sensitivity import (
    DEFAULT_CACHE_MB,
    Item,
    Sensitivity,
    describe_cache,
    describe_merging,
)
from tui_quantreport.engine.quantsim.sqnr import Sqnr
from tui_quantreport.engine.quantsim.units import Unit, decision_units
from tui_quantreport.engine.report import Measured

ProgressCallback = Callable[[str, int, int | None], None]

#: A plan whose end-to-end SQNR is below this (dB) is flagged at the top of the report.
DEFAULT_WARN_BELOW_DB = 20.0
#: Budgets on the frontier's bpw sweep (the uniform plans come on top).
DEFAULT_FRONTIER_POINTS = 6
#: The simulation is "short of" the prediction by more than this (dB): refine.
REFINE_MARGIN_DB = 0.5
#: Refinement rounds, and moves simulated per round.
REFINE_ROUNDS = 3
REFINE_MOVES = 3
BUDGET_KINDS = ("bpw", "mb", "sqnr")
#: What a plan's predicted SQNR is (``PlanPoint.prediction``).
SUPERPOSED = "superposed errors"
ADDITIVE = "additive noise"
MB = 1e6


class BudgetError(UserError):
    """A budget that cannot be met or is not a budget, in one sentence."""


@dataclass(frozen=True)
class Budget:
    """What the plan must fit: ``kind`` is "bpw", "mb" or "sqnr" (a minimum, dB)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_KINDS:
            raise BudgetError(f"unknown budget kind {self.kind!r}; expected one of {', '.join(BUDGET_KINDS)}")
        if not math.isfinite(self.value):
            raise BudgetError(f"the budget must be a finite number, not {self.value!r}")
        if self.kind != "sqnr" and self.value <= 0:
            raise BudgetError(f"a {self.words} budget must be above 0, not {self.value:g}")

    @property
    def words(self) -> str:
        return {"bpw": "bits-per-weight", "mb": "size", "sqnr": "minimum-SQNR"}[self.kind]

    def __str__(self) -> str:
        unit = {"bpw": "bits per weight", "mb": "MB", "sqnr": "dB end-to-end SQNR at least"}[self.kind]
        return f"{self.value:g} {unit}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class PlanPoint:
    """One plan on the frontier (or the budgeted plan): its size, predicted and simulated SQNR."""

    choice: Mapping[str, str]
    plan: Plan
    bits: float
    bits_per_weight: float
    size_mb: float
    predicted_db: float
    simulated: Sqnr
    #: The scheme of a uniform plan (None for a planned mix).
    uniform: str | None = None
    #: The bpw budget this point was solved for (None for uniform plans).
    budget_bpw: float | None = None
    refined: int = 0
    #: The additive estimate (dB), and what ``predicted_db`` is: :data:`SUPERPOSED` or :data:`ADDITIVE`.
    additive_db: float | None = None
    prediction: str = ADDITIVE

    def to_json(self) -> dict[str, Any]:
        return {
            "bits_per_weight": self.bits_per_weight,
            "size_mb": self.size_mb,
            "predicted_sqnr_db": _finite(self.predicted_db),
            "prediction": self.prediction,
            "additive_sqnr_db": _finite(self.additive_db if self.additive_db is not None else self.predicted_db),
            "simulated_sqnr_db": self.simulated.db,
            "simulated_undefined": self.simulated.reason or None,
            "uniform": self.uniform,
            "budget_bpw": self.budget_bpw,
            "modules": dict(self.plan.modules),
        }


@dataclass
class PlannerResult:
    """What :meth:`Planner.run` found: the budgeted plan, the frontier, the fused-group cost."""

    budget: Budget | None
    chosen: PlanPoint | None
    frontier: list[PlanPoint]
    units: list[Unit]
    sensitivity: Mapping[tuple[str, str], Sqnr]
    #: (SQNR with the fused-group constraint, without it) at the budget, simulated; None if not measured.
    fused: tuple[Sqnr, Sqnr] | None = None
    cache: Mapping[str, Any] = field(default_factory=dict)
    passes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        units = []
        chosen = self.chosen.choice if self.chosen is not None else {}
        for unit in self.units:
            units.append(
                {
                    "name": unit.name,
                    "members": list(unit.members),
                    "fused_because": unit.why or None,
                    "weights": unit.weights,
                    "bits": {s: unit.bits[s] for s in unit.candidates},
                    "sensitivity_db": {
                        s: self.sensitivity[(unit.name, s)].db
                        for s in unit.candidates
                        if (unit.name, s) in self.sensitivity
                    },
                    "scheme": chosen.get(unit.name),
                }
            )
        fused = None
        if self.fused is not None:
            with_c, without = self.fused
            cost = without.db - with_c.db if with_c.db is not None and without.db is not None else None
            fused = {"with_db": with_c.db, "without_db": without.db, "cost_db": cost, "words": self.fused_words()}
        return {
            "budget": self.budget.to_json() if self.budget is not None else None,
            "plan": self.chosen.to_json() if self.chosen is not None else None,
            "refined_swaps": self.chosen.refined if self.chosen is not None else 0,
            "frontier": [p.to_json() for p in self.frontier],
            "fused_constraint": fused,
            "units": units,
            "sensitivity_passes": self.passes,
            "sensitivity_seconds": round(self.seconds, 3),
            "cache": dict(self.cache),
        }

    def fused_words(self) -> str:
        """ "sharing a format within fused groups (q/k/v, ...) costs 0.4 dB at this budget"."""
        if self.fused is None:
            return ""
        with_c, without = self.fused
        groups = [u for u in self.units if len(u.members) > 1 and "tied" not in u.why]
        kinds = list(dict.fromkeys("/".join(m.rsplit(".", 1)[-1] for m in u.members) for u in groups))
        names = ", ".join(kinds[:3])
        more = f" and {len(kinds) - 3} more" if len(kinds) > 3 else ""
        if with_c.db is None or without.db is None:
            return f"the cost of sharing a format within fused groups ({names}{more}) could not be measured"
        return (
            f"sharing one format within fused groups ({names}{more}) costs {without.db - with_c.db:.1f} dB at this "
            f"budget ({with_c.db:.1f} dB with the constraint, {without.db:.1f} dB without)"
        )


class Planner:
    """The budgeted planner for one :class:`ErrorAnalysis` (its sensitivity kept across calls)."""

    def __init__(
        self,
        analysis: ErrorAnalysis,
        *,
        schemes: Iterable[str] | None = None,
        cache_mb: float = DEFAULT_CACHE_MB,
        sensitivity: Sensitivity | None = None,
    ):
        self.analysis = analysis
        self.schemes = list(schemes) if schemes is not None else None
        self.sens = sensitivity if sensitivity is not None else Sensitivity(analysis, cache_mb)
        self._units: dict[bool, list[Unit]] = {}
        target_weights = {id(t.module.weight) for t in analysis.targets.values()}
        seen: set[int] = set()
        other = 0
        for p in analysis.model.parameters():
            if id(p) in seen or id(p) in target_weights:
                continue
            seen.add(id(p))
            other += p.numel() * p.element_size()
        #: Bytes of the parameters no plan quantizes (norms, biases, ...), at their own dtype.
        self.other_bytes = other

    def units(self, fuse: bool = True, should_cancel: Callable[[], bool] | None = None) -> list[Unit]:
        if fuse not in self._units:
            self.sens.prepare(None, should_cancel)
            self._units[fuse] = decision_units(
                self.analysis,
                self.sens.cache.shared_inputs,
                fuse=fuse,
                schemes=self.schemes,
                # Called on the first probe batch (the cache's pass) or on any (the range pass; float inputs).
                called={*self.sens.cache.first_call, *(f for f, t in self.analysis.targets.items() if t.calls)},
            )
        return self._units[fuse]

    def measure(
        self,
        units: Sequence[Unit],
        progress: Callable[[int, int | None], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> dict[tuple[str, str], float]:
        """{(unit name, scheme): noise} for every candidate (float: 0); undefined ones left out."""
        items = {(u.name, s): Item(u.members, s) for u in units for s in u.candidates if s != FLOAT}
        measured = self.sens.measure(items.values(), progress, should_cancel)
        table: dict[tuple[str, str], float] = {}
        for u in units:
            table[(u.name, FLOAT)] = 0.0
            for s in u.candidates:
                if s == FLOAT:
                    continue
                noise = noise_of(measured[items[(u.name, s)]])
                if noise is not None:
                    table[(u.name, s)] = noise
        return table

    def sqnr_table(self, units: Sequence[Unit]) -> dict[tuple[str, str], Sqnr]:
        return {
            (u.name, s): self.sens.results[Item(u.members, s)]
            for u in units
            for s in u.candidates
            if Item(u.members, s) in self.sens.results
        }

    # Sizes.

    def total_bits(self, units: Sequence[Unit], choice: Mapping[str, str]) -> float:
        return sum(u.bits[choice[u.name]] for u in units)

    def bpw(self, units: Sequence[Unit], choice: Mapping[str, str]) -> float:
        weights = sum(u.weights for u in units)
        return self.total_bits(units, choice) / weights if weights else 0.0

    def size_mb(self, units: Sequence[Unit], choice: Mapping[str, str]) -> float:
        return (self.total_bits(units, choice) / 8 + self.other_bytes) / MB

    def max_bits(self, units: Sequence[Unit], budget: Budget) -> float:
        """The budget in bits of the units' weights (bpw or MB budgets)."""
        if budget.kind == "bpw":
            return budget.value * sum(u.weights for u in units)
        return budget.value * MB * 8 - self.other_bytes * 8

    def check(self, units: Sequence[Unit], budget: Budget) -> None:
        """:class:`BudgetError` when a size budget is below the smallest plan the candidates give
        (known from the sizes alone, before any sensitivity is measured)."""
        if budget.kind == "sqnr":
            return
        smallest = {u.name: min(u.candidates, key=lambda s: u.bits[s]) for u in units}
        if self.total_bits(units, smallest) > self.max_bits(units, budget) * (1 + 1e-12):
            size = (
                f"{self.bpw(units, smallest):.3g} bits per weight"
                if budget.kind == "bpw"
                else f"{self.size_mb(units, smallest):.4g} MB"
            )
            raise BudgetError(f"the budget of {budget} is below the smallest plan the candidate schemes give ({size})")

    # Solving.

    def solve(self, units: Sequence[Unit], table: Mapping[tuple[str, str], float], budget: Budget) -> Choice:
        """The Lagrangian choice for ``budget`` (a bits budget is then filled greedily)."""
        options = options_of(units, table)
        if budget.kind == "sqnr":
            choice = within_noise(options, 10.0 ** (-budget.value / 10.0))
            if choice is None:
                raise BudgetError(
                    f"no plan reaches {budget.value:g} dB by the sensitivity measured (float everywhere is exact; "
                    "a unit with no float option is missing)"
                )
            return choice
        choice = within_bits(options, self.max_bits(units, budget))
        if choice is None:
            least = smallest(options)
            size = (
                f"{self.bpw(units, least):.3g} bits per weight"
                if budget.kind == "bpw"
                else f"{self.size_mb(units, least):.4g} MB"
            )
            raise BudgetError(f"the budget of {budget} is below the smallest plan the candidate schemes give ({size})")
        return choice

    def point(
        self,
        units: Sequence[Unit],
        table: Mapping[tuple[str, str], float],
        choice: Mapping[str, str],
        *,
        uniform: str | None = None,
        budget_bpw: float | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> PlanPoint:
        modules = {m: choice[u.name] for u in units for m in u.members}
        plan = self.analysis.plan({fqn: modules.get(fqn, FLOAT) for fqn in self.analysis.targets})
        predicted, additive, basis = self.predict(units, table, choice)
        simulated = self.analysis.plan_sqnr(plan, should_cancel)
        plan = plan.with_prediction(simulated.db, len(self.analysis.probes))
        return PlanPoint(
            dict(choice),
            plan,
            self.total_bits(units, choice),
            self.bpw(units, choice),
            self.size_mb(units, choice),
            predicted,
            simulated,
            uniform,
            budget_bpw,
            additive_db=additive,
            prediction=basis,
        )

    def predict(
        self, units: Sequence[Unit], table: Mapping[tuple[str, str], float], choice: Mapping[str, str]
    ) -> tuple[float, float, str]:
        """(predicted dB, additive dB, what the prediction is) for ``choice``, before any simulation.

        The additive estimate ``sum 10^(-S/10)`` assumes the units' output errors are uncorrelated.
        They are not: on the tests' LLaMA at 5 bpw the one-at-a-time noises add up to 8.8 dB while
        the plan simulates at 11.3 dB, and taking five of its ten units back to float raises the
        simulated noise (their errors partly cancel the others' at the output). Each one-at-a-time pass keeps its output error ``e``
        (:class:`~.sensitivity.ErrorSketch`), so the plan's first-order error is ``sum e`` and its noise
        ``||sum e||^2``: the same small-perturbation model, with the cross terms ``2 <e_i, e_j>`` kept
        (10.3 dB there). Where one of the plan's units has no kept error (measured pass by pass),
        the additive estimate is the prediction."""
        additive = db_of(sum(table[(u.name, choice[u.name])] for u in units))
        errors = self.sens.errors
        total = None
        for u in units:
            scheme = choice[u.name]
            if scheme == FLOAT:
                continue
            error = errors.get(Item(u.members, scheme))
            if error is None:
                return additive, additive, ADDITIVE
            total = error.clone() if total is None else total.add_(error)
        if total is None:
            return additive, additive, SUPERPOSED
        return db_of(float(total.square().sum())), additive, SUPERPOSED

    def refine(
        self,
        units: Sequence[Unit],
        table: Mapping[tuple[str, str], float],
        start: PlanPoint,
        budget: Budget,
        should_cancel: Callable[[], bool] | None = None,
    ) -> PlanPoint:
        """Greedy single-unit changes, simulated, while the simulation is short of the prediction (or
        of the SQNR asked for): the best measured gain per bit within the budget, a few rounds."""
        current = start
        limit_bits = self.max_bits(units, budget) if budget.kind != "sqnr" else math.inf
        target = budget.value if budget.kind == "sqnr" else None
        swaps = 0
        for _ in range(REFINE_ROUNDS):
            sim = current.simulated.value
            if target is not None:
                if sim >= target:
                    break
            elif not (current.predicted_db - sim > REFINE_MARGIN_DB):
                break
            moves = []
            for u in units:
                cur = current.choice[u.name]
                for s in u.candidates:
                    if s == cur or (u.name, s) not in table:
                        continue
                    extra = u.bits[s] - u.bits[cur]
                    saved = table[(u.name, cur)] - table[(u.name, s)]
                    if saved <= 0 or current.bits + extra > limit_bits:
                        continue
                    moves.append((saved / extra if extra > 0 else math.inf, u.name, s, extra))
            moves.sort(key=lambda m: -m[0])
            best: tuple[float, PlanPoint] | None = None
            for _score, name, s, extra in moves[:REFINE_MOVES]:
                choice = dict(current.choice)
                choice[name] = s
                candidate = self.point(units, table, choice, budget_bpw=current.budget_bpw, should_cancel=should_cancel)
                gain = candidate.simulated.value - sim
                if not gain > 0:
                    continue
                per_bit = gain / extra if extra > 0 else math.inf
                if best is None or per_bit > best[0]:
                    best = (per_bit, candidate)
            if best is None:
                break
            current = best[1]
            swaps += 1
        if swaps == 0:
            return start
        return replace(current, refined=swaps)

    def run(
        self,
        budget: Budget | None,
        *,
        frontier_points: int = DEFAULT_FRONTIER_POINTS,
        fused_cost: bool = True,
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> PlannerResult:
        """Sensitivity, the budgeted plan (simulated, refined), the frontier and the fused-group cost."""

        def stage(name: str) -> Callable[[int, int | None], None] | None:
            return None if progress is None else (lambda done, total: progress(name, done, total))

        units = self.units(True, should_cancel)
        if budget is not None:
            self.check(units, budget)
        table = self.measure(units, stage("sensitivity"), should_cancel)
        chosen = None
        if budget is not None:
            choice = self.solve(units, table, budget)
            first = self.point(
                units,
                table,
                choice,
                budget_bpw=budget.value if budget.kind == "bpw" else None,
                should_cancel=should_cancel,
            )
            chosen = self.refine(units, table, first, budget, should_cancel)
        frontier = self.frontier(units, table, frontier_points, stage("frontier"), should_cancel)
        fused = None
        if fused_cost and chosen is not None and budget is not None and budget.kind != "sqnr":
            if any(len(u.members) > 1 and "tied" not in u.why for u in units):
                singles = self.units(False, should_cancel)
                single_table = self.measure(singles, stage("sensitivity"), should_cancel)
                try:
                    loose = self.solve(singles, single_table, budget)
                except BudgetError:
                    loose = None
                if loose is not None:
                    free = self.point(singles, single_table, loose, should_cancel=should_cancel)
                    fused = (chosen.simulated, free.simulated)
        sens = self.sqnr_table(units)
        return PlannerResult(
            budget,
            chosen,
            frontier,
            units,
            sens,
            fused,
            {**describe_cache(self.sens.cache), **describe_merging(self.sens)},
            self.sens.passes,
            self.sens.seconds,
        )

    def frontier(
        self,
        units: Sequence[Unit],
        table: Mapping[tuple[str, str], float],
        points: int = DEFAULT_FRONTIER_POINTS,
        progress: Callable[[int, int | None], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> list[PlanPoint]:
        """Planned points across a sweep of bpw budgets, plus the uniform plans; by size."""
        options = options_of(units, table)
        cheapest = {n: min(opts, key=lambda o: (o[2], o[1]))[0] for n, opts in options.items()}
        richest = {u.name: FLOAT for u in units}
        lo, hi = self.bpw(units, cheapest), self.bpw(units, richest)
        choices: list[tuple[Choice, str | None, float | None]] = []
        count = max(points, 0)
        for i in range(count):
            sweep = lo + (hi - lo) * (i / (count - 1) if count > 1 else 1.0)
            try:
                choices.append((self.solve(units, table, Budget("bpw", max(sweep, 1e-9))), None, sweep))
            except BudgetError:
                continue
        names = list(dict.fromkeys(s for u in units for s in u.candidates if s != FLOAT))
        for scheme in names:
            everywhere = {u.name: scheme if (u.name, scheme) in table else FLOAT for u in units}
            choices.append((everywhere, scheme, None))
        result: list[PlanPoint] = []
        seen: dict[tuple, int] = {}
        for i, (choice, uniform, target) in enumerate(choices):
            key = tuple(sorted(choice.items()))
            if key in seen:
                if uniform is not None:  # the same plan as a planned point: mark it uniform
                    j = seen[key]
                    result[j] = replace(result[j], uniform=uniform)
                continue
            seen[key] = len(result)
            result.append(
                self.point(units, table, choice, uniform=uniform, budget_bpw=target, should_cancel=should_cancel)
            )
            if progress is not None:
                progress(i + 1, len(choices))
        result.sort(key=lambda p: (p.bits, -p.simulated.value))
        return result


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def costliest(noise_by_unit: Mapping[str, float], limit: int = 3) -> list[tuple[str, float]]:
    """The units contributing the most noise, (name, one-at-a-time SQNR dB), worst first."""
    ranked = sorted(noise_by_unit.items(), key=lambda item: -item[1])
    return [(name, db_of(n)) for name, n in ranked[:limit] if n > 0]


def low_sqnr_warning(
    what: str, sqnr_db: float | None, threshold_db: float, costly: Sequence[tuple[str, float]], basis: str
) -> str:
    """One sentence when ``sqnr_db`` is below ``threshold_db`` (else ""), naming the costliest units."""
    if sqnr_db is None or not math.isfinite(threshold_db) or sqnr_db >= threshold_db:
        return ""
    named = ", ".join(f"'{name}' ({db:.1f} dB)" for name, db in costly)
    tail = f"; the units that cost the most ({basis}): {named}" if named else ""
    return f"warning: the {what}'s end-to-end SQNR is {sqnr_db:.1f} dB, below {threshold_db:g} dB{tail}"


def planned_measured(
    measured: Measured, result: PlannerResult, warn_below_db: float = DEFAULT_WARN_BELOW_DB
) -> Measured:
    """``measured`` with the planner's result attached, and the warning when the budgeted plan is low."""
    warning = ""
    chosen = result.chosen
    if chosen is not None:
        noise = {}
        for unit in result.units:
            s = result.sensitivity.get((unit.name, chosen.choice[unit.name]))
            n = noise_of(s)
            if n is not None:
                noise[unit.name] = n
        warning = low_sqnr_warning(
            "budgeted plan", chosen.simulated.db, warn_below_db, costliest(noise), "their SQNR quantized alone"
        )
    return replace(measured, planner=result.to_json(), warning=warning)


def recommended_warning(measured: Measured, warn_below_db: float = DEFAULT_WARN_BELOW_DB) -> Measured:
    """``measured`` with the warning when the recommended plan's end-to-end SQNR is low, naming the
    modules that cost the most: by one-at-a-time sensitivity when measured, else by local SQNR."""
    costly, basis = recommended_costliest(measured)
    warning = low_sqnr_warning("recommended plan", measured.plan_sqnr_db, warn_below_db, costly, basis)
    return replace(measured, warning=warning)


def recommended_costliest(measured: Measured, limit: int = 3) -> tuple[list[tuple[str, float]], str]:
    """The recommended plan's costliest modules (name, dB) and what the dB are: one-at-a-time
    sensitivity when measured, else the local SQNR of the module's scheme."""
    noise: dict[str, float] = {}
    sensitivity = measured.sensitivity_measured
    for fqn, scheme in measured.plan.items():
        e = measured.modules.get(fqn)
        if scheme == FLOAT or e is None:
            continue
        db = e.sensitivity_db if sensitivity else e.sqnr_db.get(scheme)
        if db is not None:
            noise[fqn] = 10.0 ** (-db / 10.0)
    return costliest(noise, limit), ("their SQNR quantized alone" if sensitivity else "their local SQNR")
