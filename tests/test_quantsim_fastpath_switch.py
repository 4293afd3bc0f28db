"""Measurements turn the fused attention fast path off and give the user's setting back, also when
they overlap in threads (the app's workers): the switch is process-wide."""

from __future__ import annotations

import threading

import pytest
import torch

from tui_quantreport.engine.quantsim.fastpath import attention_fastpath_off

mha = pytest.importorskip("torch.backends.mha")


@pytest.fixture(autouse=True)
def _keep_the_setting():
    before = torch.backends.mha.get_fastpath_enabled()
    yield
    torch.backends.mha.set_fastpath_enabled(before)


@pytest.mark.parametrize("setting", [True, False])
def test_overlapping_measurements_give_the_users_setting_back(setting):
    torch.backends.mha.set_fastpath_enabled(setting)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with attention_fastpath_off():
            seen.append(torch.backends.mha.get_fastpath_enabled())
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with attention_fastpath_off():  # starts while the first runs, ends after it
            second_in.set()
            first_out.wait(10)
            seen.append(torch.backends.mha.get_fastpath_enabled())

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == [False, False]  # off inside every measurement
    assert torch.backends.mha.get_fastpath_enabled() is setting  # the user's setting, not "off"


def test_an_error_inside_gives_the_setting_back():
    torch.backends.mha.set_fastpath_enabled(True)
    with pytest.raises(RuntimeError), attention_fastpath_off():
        raise RuntimeError("boom")
    assert torch.backends.mha.get_fastpath_enabled() is True
