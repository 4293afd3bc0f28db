"""The budgeted planner on a small LLaMA (transformers config, heavy-tailed weights, massive channels).

Candidates come from the scheme registry, picked by their facts (nothing here names a scheme): the
int8 schemes the recommendation ranks and the int4 weight-only group-size-32 ones; the int4 test turns
on when such a scheme is registered.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

from models.tiny_llama import analysis_of, tiny_llama, token_batches  # noqa: E402

from tui_quantreport.engine.planner_report import (  # noqa: E402
    FrontierRow,
    frontier_rows,
    planner_markdown,
    planner_text,
    plot_lines,
)
from tui_quantreport.engine.quantsim import FLOAT, SCHEMES, MeasurementCancelled, sensitivity  # noqa: E402
from tui_quantreport.engine.quantsim.planner import ADDITIVE, SUPERPOSED, Budget, BudgetError, Planner  # noqa: E402
from tui_quantreport.engine.quantsim.sensitivity import Item, Sensitivity, uncached  # noqa: E402

BUDGET_BPW = 12.0


def _int4_g32(name: str) -> bool:
    facts = SCHEMES[name].facts
    return facts.weight.dtype == "int4" and facts.weight.group_size == 32 and facts.activation == "none"


#: The planner's candidates here (a choice by facts keeps the run short with 20+ registered schemes).
CANDIDATES = [
    name
    for name, scheme in SCHEMES.items()
    if (scheme.facts.family == "int8" and scheme.facts.preference is not None) or _int4_g32(name)
]


@pytest.fixture(scope="module")
def planned():
    """One planner run on the LLaMA: (analysis, planner, result) at a bpw budget between int8 and float."""
    analysis = analysis_of(tiny_llama(), token_batches(2))
    planner = Planner(analysis, schemes=CANDIDATES)
    result = planner.run(Budget("bpw", BUDGET_BPW), frontier_points=3)
    return analysis, planner, result


def _units(result):
    return {u.name: u for u in result.units}


def test_plan_fits_its_budget(planned):
    _, planner, result = planned
    chosen = result.chosen
    assert chosen is not None
    assert chosen.bits_per_weight <= BUDGET_BPW
    assert chosen.bits_per_weight == pytest.approx(planner.bpw(result.units, chosen.choice))
    # Every planned module is one of the model's quantizable modules with a registered scheme or float.
    assert set(chosen.plan.modules) == set(planner.analysis.targets)
    assert set(chosen.plan.modules.values()) <= set(SCHEMES) | {FLOAT}
    # The other budgets, solved from the same sensitivity: the size and the SQNR asked for are met.
    table = planner.measure(result.units)
    size = planner.size_mb(result.units, chosen.choice)
    by_size = planner.solve(result.units, table, Budget("mb", size))
    assert planner.size_mb(result.units, by_size) <= size
    by_sqnr = planner.solve(result.units, table, Budget("sqnr", 30.0))
    noise = sum(table[(u.name, by_sqnr[u.name])] for u in result.units)
    assert -10 * math.log10(noise) >= 30.0


def test_a_budget_below_the_smallest_plan_is_refused_in_one_sentence(planned):
    _, planner, result = planned
    with pytest.raises(BudgetError, match="below the smallest plan"):
        planner.check(result.units, Budget("bpw", 1.0))
    for kind, value in (("bpw", 0.0), ("mb", -1.0), ("bpw", math.nan), ("sqnr", math.inf), ("bits", 3.0)):
        with pytest.raises(BudgetError):
            Budget(kind, value)


def test_fused_units_share_a_scheme(planned):
    _, _, result = planned
    units = _units(result)
    qkv = units["model.layers.0.self_attn.q_proj (+2)"]
    assert qkv.members == tuple(f"model.layers.0.self_attn.{p}_proj" for p in "qkv")
    assert qkv.why == "read the same input"
    assert units["model.layers.1.mlp.gate_proj (+1)"].members[1] == "model.layers.1.mlp.up_proj"
    for layer in (0, 1):  # o_proj reads the attention's output alone
        assert f"model.layers.{layer}.self_attn.o_proj" in units
    for point in [result.chosen, *result.frontier]:
        for unit in result.units:
            assert len({point.plan.modules[m] for m in unit.members}) == 1, (unit.name, point.plan.modules)


WINDOW = (-2.0, 0.5)  # the prediction within [simulated - 2 dB, simulated + 0.5 dB]


def _in_window(point) -> bool:
    low, high = WINDOW
    return point.simulated.db + low <= point.predicted_db <= point.simulated.db + high


def test_the_prediction_is_close_to_the_simulation(planned):
    _, _, result = planned
    # The units' one-at-a-time output errors superposed: every point of this run, at any SQNR.
    points = [result.chosen, *result.frontier]
    checked = 0
    for point in points:
        if point.simulated.db is None:  # all float: exact
            assert math.isinf(point.predicted_db)
            continue
        assert point.prediction == SUPERPOSED
        assert _in_window(point), point
        checked += 1
    assert checked >= 4
    assert result.chosen.simulated.db >= 10


def test_the_planner_beats_the_uniform_plan_of_the_same_or_larger_size(planned):
    _, planner, result = planned
    table = planner.measure(result.units)
    uniform = [p for p in result.frontier if p.uniform is not None and p.simulated.db is not None]
    best = max(uniform, key=lambda p: p.simulated.db)
    mixed = planner.point(result.units, table, planner.solve(result.units, table, Budget("bpw", best.bits_per_weight)))
    assert mixed.bits <= best.bits
    assert mixed.simulated.db >= best.simulated.db
    # And the budgeted plan (between int8 and float) beats every uniform plan that is not larger.
    smaller = [p for p in uniform if p.bits <= result.chosen.bits]
    assert smaller and all(result.chosen.simulated.db > p.simulated.db for p in smaller)


def test_the_frontier_marks_uniform_plans_and_runs_by_size(planned):
    _, _, result = planned
    sizes = [p.bits for p in result.frontier]
    assert sizes == sorted(sizes)
    marked = {p.uniform for p in result.frontier if p.uniform}
    # Every candidate scheme's uniform plan is marked, unless it is the same plan as another point.
    assert marked and marked <= {s for u in result.units for s in u.candidates if s != FLOAT}
    data = result.to_json()
    assert data["budget"] == {"kind": "bpw", "value": BUDGET_BPW}
    assert data["plan"]["bits_per_weight"] <= BUDGET_BPW
    assert {"bits_per_weight", "size_mb", "predicted_sqnr_db", "simulated_sqnr_db", "uniform"} <= set(
        data["frontier"][0]
    )
    fused = data["fused_constraint"]
    assert fused["cost_db"] == pytest.approx(fused["without_db"] - fused["with_db"])
    assert "q_proj/k_proj/v_proj" in fused["words"]
    rows = frontier_rows(data)
    assert sum(r.chosen for r in rows) == 1


def test_block_cached_sensitivity_equals_the_uncached_one_exactly(planned):
    analysis, planner, result = planned
    items = [Item(u.members, s) for u in result.units for s in u.candidates if s != FLOAT]
    cached = {item: planner.sens.results[item] for item in items}
    assert cached == uncached(analysis, items)
    cache = planner.sens.cache
    assert cache.fallback is None and cache.verified
    # Each unit's schemes and probe batches ran as one merged pass, checked against full passes.
    sens = planner.sens
    assert sens.merge_fallback is None and sens.merge_verified
    assert sens.merged_units >= len({item.members for item in items})
    # The passes did skip: lm_head replays every block, layer 1 replays layer 0.
    assert {n.fqn for n in cache.skipped(["lm_head"])} >= {"model.layers.0", "model.layers.1"}
    assert "model.layers.0" in {n.fqn for n in cache.skipped(["model.layers.1.mlp.down_proj"])}
    assert "model.embed_tokens" in {n.fqn for n in cache.skipped(["model.layers.0.self_attn.q_proj"])}


def test_a_small_memory_bound_caches_less_and_changes_nothing(planned):
    analysis, _, result = planned
    items = [Item(u.members, s) for u in result.units[-3:] for s in u.candidates if s != FLOAT]
    reference = uncached(analysis, items)
    small = Sensitivity(analysis, cache_mb=0.05)
    assert small.measure(items) == reference
    assert 0 < small.cache.kept_bytes <= 0.05 * (1 << 20)
    off = Sensitivity(analysis, cache_mb=0)
    assert off.measure(items[:2]) == {i: reference[i] for i in items[:2]}
    assert off.cache.fallback and off.cache.skipped(["lm_head"]) == []


def test_cancel_keeps_what_was_measured(planned):
    analysis, _, result = planned
    items = [Item(u.members, s) for u in result.units[-2:] for s in u.candidates if s != FLOAT]
    first_unit = [item for item in items if item.members == items[0].members]
    sens = Sensitivity(analysis)
    done = []
    with pytest.raises(MeasurementCancelled):
        sens.measure(items, lambda d, t: done.append(d), lambda: len(done) >= 2)
    # A unit's schemes are measured together (one merged pass): the first unit is kept, whole.
    assert set(sens.results) == set(first_unit) and len(first_unit) < len(items)
    passes = sens.passes
    sens.measure(items)
    assert len(sens.results) == len(items)
    assert sens.passes - passes <= 2  # one merged pass for the unit left (and its check): nothing measured again


def test_a_mixed_plan_no_larger_than_uniform_int4_g32_beats_it_by_2_db(planned):
    # With only this fixture's candidates (int8 and int4 g32) a 5.0 bpw mix has little room above the
    # smallest plan (4.82 bpw): compared at the uniform plan's own size here (no int4 scheme takes an
    # Embedding, so the uniform int4 plan keeps embed_tokens float: 7.16 bpw for the asymmetric one).
    # At 5.0 bpw with every registered scheme: the next test.
    int4 = [name for name in CANDIDATES if _int4_g32(name)]
    if not int4:
        pytest.skip("no int4 group-size-32 scheme is registered")
    _, planner, result = planned
    for scheme in int4:
        uniform = next(p for p in result.frontier if p.uniform == scheme)
        run = planner.run(Budget("bpw", uniform.bits_per_weight), frontier_points=0, fused_cost=False)
        assert run.chosen.bits <= uniform.bits
        assert run.chosen.simulated.db >= uniform.simulated.db + 2.0, (scheme, run.chosen, uniform)


@pytest.fixture(scope="module")
def planned_5bpw():
    """Every registered scheme a candidate (the CLI's default), a 5.0 bpw budget, a 3-point sweep."""
    analysis = analysis_of(tiny_llama(), token_batches(2))
    planner = Planner(analysis)
    return planner, planner.run(Budget("bpw", 5.0), frontier_points=3, fused_cost=False)


def test_a_mixed_plan_at_5_bpw_beats_uniform_int4_g32_by_2_db(planned_5bpw):
    # The plan at 5.0 bpw, against each uniform int4 group-size-32 plan (which keeps the embedding
    # float: no int4 scheme takes one).
    int4 = [name for name in SCHEMES if _int4_g32(name)]
    if not int4:
        pytest.skip("no int4 group-size-32 scheme is registered")
    _, result = planned_5bpw
    assert result.chosen.bits_per_weight <= 5.0
    for scheme in int4:
        uniform = next(p for p in result.frontier if p.uniform == scheme)
        assert result.chosen.simulated.db >= uniform.simulated.db + 2.0, (scheme, result.chosen, uniform)


def test_the_prediction_at_5_bpw_is_within_the_window(planned_5bpw):
    # At 5 bpw the units' errors partly cancel at the output: their noises add up to 2.5 dB below the
    # simulation (beyond the window), their errors superposed as vectors land inside it.
    _, result = planned_5bpw
    chosen = result.chosen
    assert chosen.prediction == SUPERPOSED and _in_window(chosen), chosen
    assert chosen.additive_db < chosen.predicted_db
    planned = [p for p in result.frontier if p.uniform is None and p.simulated.db is not None]
    assert planned and all(_in_window(p) for p in planned), planned
    data = result.to_json()["plan"]
    assert data["prediction"] == SUPERPOSED and data["additive_sqnr_db"] == pytest.approx(chosen.additive_db)
    assert "superposed errors" in planner_text(result.to_json())[1]


@pytest.mark.parametrize("chunk", [sensitivity.SKETCH_CHUNK, 1000])
def test_the_superposed_prediction_from_a_sketch_is_close_to_the_exact_one(planned_5bpw, monkeypatch, chunk):
    # The model's outputs here have 8192 elements: kept exactly. A 2048-bucket sketch (its draws in one
    # chunk per output, or several) estimates the same plan's prediction; with no error kept the
    # prediction is the additive one.
    monkeypatch.setattr(sensitivity, "SKETCH_CHUNK", chunk)
    planner, result = planned_5bpw
    chosen = result.chosen
    units = [u for u in result.units if chosen.choice[u.name] != FLOAT]
    items = [Item(u.members, chosen.choice[u.name]) for u in units]
    small = Sensitivity(planner.analysis, sketch_dim=2048)
    small.measure(items)
    assert small._sketch is not None and not small._sketch.exact and set(small.errors) == set(items)
    sketched = Planner(planner.analysis, sensitivity=small)
    table = planner.measure(result.units)
    predicted, additive, basis = sketched.predict(result.units, table, chosen.choice)
    assert basis == SUPERPOSED and additive == pytest.approx(chosen.additive_db)
    assert predicted == pytest.approx(chosen.predicted_db, abs=0.5)
    unkept = Planner(planner.analysis, sensitivity=Sensitivity(planner.analysis, merge=False))
    assert unkept.predict(result.units, table, chosen.choice) == (additive, additive, ADDITIVE)


def test_the_frontier_plot_writes_every_number_safely():
    rows = [
        FrontierRow(0, 4.5, 1.25, 10.0, 12.0, "weight_only", False, False),
        FrontierRow(1, math.nan, math.inf, -math.inf, math.nan, None, True, False),
        FrontierRow(2, None, None, None, None, "float\x1b[31m", False, False),
        FrontierRow(3, 32.0, 4.0, None, None, None, False, True),
        FrontierRow(4, 8.0, 2.0, -3.0, -5.0, None, False, False),
    ]
    lines = plot_lines(rows, width=10)
    assert len(lines) == 5
    assert "nan bpw" in lines[1] and "inf MB" in lines[1] and lines[1].startswith("▶")
    assert "\x1b" not in lines[2] and "\\x1b" in lines[2]
    assert "exact" in lines[3] and "█" * 10 in lines[3]
    assert "-5.0 dB" in lines[4] and "█" not in lines[4]
    assert (
        frontier_rows({"frontier": [None, {"bits_per_weight": "x", "simulated_sqnr_db": True}]})[0].bits_per_weight
        is None
    )


class _Expert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Linear(8, 8)
        self.w2 = nn.Linear(8, 8)

    def forward(self, x):
        return self.w2(self.w1(x))


class _TiedMoE(nn.Module):
    """Tied embedding / head, two experts per layer (each reads its own share of the tokens), q/k reading one input."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.q = nn.Linear(8, 8)
        self.k = nn.Linear(8, 8)
        self.experts = nn.ModuleList([_Expert(), _Expert()])
        self.head = nn.Linear(8, 16, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        x = self.embed(ids)
        x = self.q(x) * self.k(x)
        half = x.shape[1] // 2
        x = torch.cat([self.experts[0](x[:, :half]), self.experts[1](x[:, half:])], dim=1)
        return self.head(x)


def test_units_group_tied_weights_moe_experts_and_shared_inputs():
    model = _TiedMoE().eval()
    generator = torch.Generator().manual_seed(0)
    analysis = analysis_of(model, [torch.randint(0, 16, (2, 6), generator=generator)])
    planner = Planner(analysis)
    units = {u.members: u for u in planner.units()}
    tied = units[("embed", "head")]
    assert "tied" in tied.why
    # One tensor, one format: only what applies to both (an embedding's input is indices, and a group
    # wider than the 8 input features does not fit), and counted once.
    both = [analysis.targets["embed"], analysis.targets["head"]]
    fits = tuple(
        name
        for name, scheme in SCHEMES.items()
        if scheme.activation == "float"
        and all(scheme.eligible(t.kind, tuple(t.module.weight.shape), t.module.weight.dtype) is None for t in both)
        and not any(name in analysis.refusals().get(m, {}) for m in ("embed", "head"))
    )
    assert any(SCHEMES[s].facts.family == "int8" for s in fits)
    assert not any((SCHEMES[s].facts.weight.group_size or 0) > 8 for s in fits)
    assert tied.candidates == fits + (FLOAT,)
    assert tied.weights == 16 * 8 and tied.bits[FLOAT] == 16 * 8 * 32
    assert units[("q", "k")].why == "read the same input"
    assert units[("experts.0.w1", "experts.1.w1")].why == "experts of one MoE layer"
    assert units[("experts.0.w2", "experts.1.w2")].why == "experts of one MoE layer"
    loose = {u.members for u in planner.units(fuse=False)}
    assert ("embed", "head") in loose and ("q",) in loose and ("experts.0.w1",) in loose


def test_the_markdown_and_text_sections_show_the_plan_and_the_frontier(planned):
    _, _, result = planned
    data = result.to_json()
    markdown = "\n".join(planner_markdown(data))
    text = "\n".join(planner_text(data))
    for shown in (markdown, text):
        assert f"Budget {BUDGET_BPW:g} bits per weight: {data['plan']['bits_per_weight']:.2f} bpw" in shown
        assert "▶" in shown and "uniform" in shown and "sharing one format within fused groups" in shown.lower()
    assert "| `model.layers.0.self_attn.q_proj (+2)` | 3 |" in markdown
    assert planner_markdown(None) == [] and planner_text({}) == []
