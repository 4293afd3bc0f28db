"""The local pass finishes every module's SQNR sums together (``SharedReference.finish_all``): the same
doubles as finishing each module's sums alone, NaN, infinite and zero norms included."""

from __future__ import annotations

import math

import pytest
import torch
from measure_helpers import sample_measurer

from tui_quantreport.engine.quantsim.sqnr import SharedReference

pytest.importorskip("torchao")


def _refs(calls: int, names: int, count: int, seed: int) -> list[SharedReference]:
    generator = torch.Generator().manual_seed(seed)
    refs = []
    for r in range(count):
        ref = SharedReference([f"s{i}" for i in range(names)])
        for c in range(calls):
            y = torch.randn(6, generator=generator) * 10.0 ** (r % 7 - 3)
            noise = torch.rand(names, generator=generator, dtype=torch.float64) * 10.0 ** (c - r % 5)
            if r == 1:
                noise[0] = math.nan
            if r == 2:
                noise[-1] = math.inf
            if r == 3:
                noise[names // 2] = 0.0  # no error at all on this call
            if r == 4 and c == 0:
                y = torch.zeros(6)
            ref.add_norms(y, None, noise)
        refs.append(ref)
    return refs


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or (a[k] == b[k] and math.copysign(1, a[k]) == math.copysign(1, b[k]))
        for k in a
    )


@pytest.mark.parametrize(("calls", "names"), [(1, 1), (2, 17), (3, 23), (8, 5)])
def test_finishing_together_equals_finishing_alone(calls, names):
    together = _refs(calls, names, 40, seed=calls * 100 + names)
    alone = _refs(calls, names, 40, seed=calls * 100 + names)
    SharedReference.finish_all(together)
    assert all(ref._sums is not None for ref in together)
    for a, b in zip(together, alone):
        assert _same(a._finish(), b._finish())


def test_references_of_other_shapes_and_paths_are_left_to_finish_alone():
    mixed = _refs(2, 3, 3, seed=1) + _refs(3, 3, 2, seed=2) + _refs(2, 4, 1, seed=3)
    general = SharedReference(["a"])
    general.add("a", general.add_reference(torch.ones(3)), torch.zeros(3))
    SharedReference.finish_all([*mixed, general])
    assert [ref._sums is not None for ref in mixed] == [True, True, True, True, True, False]
    assert general._sums is None
    assert general.result("a").db is not None


@pytest.mark.parametrize("sample", ["tiny_transformer", "outlier_channels"])
def test_local_measurements_finished_together_equal_finished_alone(monkeypatch, sample):
    measure = sample_measurer(sample, advice=True)
    together = measure()
    monkeypatch.setattr(SharedReference, "finish_all", staticmethod(lambda refs: None))
    assert measure() == together
