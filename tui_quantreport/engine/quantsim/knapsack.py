"""The planner's multiple-choice knapsack, solved by a Lagrangian bisection (no solver dependency).

Each unit has options ``(scheme, noise, bits)``; for a multiplier ``lambda`` every unit independently
picks the option minimizing ``noise + lambda * bits`` (:func:`pick`). ``lambda`` is bisected (on a log
scale between the extreme noise-per-bit slopes) so that the plan fits a bits budget
(:func:`within_bits`, then what is left of the budget is spent greedily: the change saving the most
noise per extra bit, while it fits) or a noise limit (:func:`within_noise`). A plan's noise is the
additive prediction: the sum of its units' one-at-a-time noise ``10^(-S/10)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tui_quantreport.engine.quantsim.sqnr import Sqnr
from tui_quantreport.engine.quantsim.units import Unit

Choice = dict[str, str]  # unit name -> scheme
#: unit name -> its options (scheme, noise, bits)
Options = Mapping[str, list[tuple[str, float, float]]]
#: Bisection steps (on log lambda).
STEPS = 80


def noise_of(sqnr: Sqnr | None) -> float | None:
    """10^(-S/10): the noise power relative to the signal (0 for an exact result, None if undefined)."""
    if sqnr is None:
        return None
    if sqnr.infinite:
        return 0.0
    if sqnr.db is None:
        return None
    return 10.0 ** (-sqnr.db / 10.0)


def db_of(noise: float) -> float:
    """-10 log10(noise): +inf for no noise."""
    return math.inf if noise <= 0 else -10.0 * math.log10(noise)


def options_of(
    units: Sequence[Unit], table: Mapping[tuple[str, str], float]
) -> dict[str, list[tuple[str, float, float]]]:
    """Each unit's measured candidates as (scheme, noise, bits) (those without a noise left out)."""
    return {u.name: [(s, table[(u.name, s)], u.bits[s]) for s in u.candidates if (u.name, s) in table] for u in units}


def pick(options: Options, lam: float) -> Choice:
    """Every unit's option minimizing ``noise + lam * bits`` (ties: fewer bits)."""
    return {name: min(opts, key=lambda o: (o[1] + lam * o[2], o[2]))[0] for name, opts in options.items()}


def _total(choice: Choice, of: Mapping[tuple[str, str], float]) -> float:
    return sum(of[(n, s)] for n, s in choice.items())


def _bounds(options: Options) -> tuple[float, float]:
    """A bracket for lambda: a quarter of the flattest and four times the steepest noise-per-bit slope."""
    ratios = [
        abs(a[1] - b[1]) / abs(a[2] - b[2])
        for opts in options.values()
        for a in opts
        for b in opts
        if a[2] != b[2] and a[1] != b[1]
    ]
    return (min(ratios) / 4, max(ratios) * 4) if ratios else (1e-30, 1.0)


def smallest(options: Options) -> Choice:
    """The smallest plan the options give (lambda far above every slope)."""
    return pick(options, _bounds(options)[1] * 1e6)


def within_noise(options: Options, limit: float) -> Choice | None:
    """The fewest bits whose predicted noise is within ``limit`` (None when even the least noisy plan is not)."""
    noise = {(n, s): v for n, opts in options.items() for s, v, _ in opts}
    lo, hi = _bounds(options)

    def ok(choice: Choice) -> bool:
        return _total(choice, noise) <= limit

    # Larger lambda: fewer bits, more noise. Find the largest lambda still within the noise limit.
    if ok(pick(options, hi)):
        return pick(options, hi)
    best = pick(options, 0.0)
    if not ok(best):
        return None
    a, b = math.log(lo), math.log(hi)
    for _ in range(STEPS):
        mid = (a + b) / 2
        if ok(pick(options, math.exp(mid))):
            a = mid
        else:
            b = mid
    choice = pick(options, math.exp(a))
    return choice if ok(choice) else best


def within_bits(options: Options, limit_bits: float) -> Choice | None:
    """The least predicted noise within ``limit_bits`` (None when even the smallest plan is larger)."""
    bits = {(n, s): b for n, opts in options.items() for s, _, b in opts}
    lo, hi = _bounds(options)
    if _total(pick(options, hi * 1e6), bits) > limit_bits * (1 + 1e-12):
        return None
    if _total(pick(options, 0.0), bits) <= limit_bits:
        return pick(options, 0.0)
    a, b = math.log(lo), math.log(hi * 1e6)
    for _ in range(STEPS):
        mid = (a + b) / 2
        if _total(pick(options, math.exp(mid)), bits) <= limit_bits:
            b = mid
        else:
            a = mid
    return fill(pick(options, math.exp(b)), options, limit_bits)


def fill(choice: Choice, options: Options, limit_bits: float) -> Choice:
    """Spend what is left of ``limit_bits``: the change saving the most noise per extra bit, while it fits."""
    noise = {(n, s): v for n, opts in options.items() for s, v, _ in opts}
    bits = {(n, s): b for n, opts in options.items() for s, _, b in opts}
    while True:
        spent = _total(choice, bits)
        best_move: tuple[float, str, str] | None = None
        for name, opts in options.items():
            cur = choice[name]
            for s, v, bb in opts:
                extra = bb - bits[(name, cur)]
                saved = noise[(name, cur)] - v
                if saved <= 0 or spent + extra > limit_bits:
                    continue
                score = saved / extra if extra > 0 else math.inf
                if best_move is None or score > best_move[0]:
                    best_move = (score, name, s)
        if best_move is None:
            return choice
        choice[best_move[1]] = best_move[2]
