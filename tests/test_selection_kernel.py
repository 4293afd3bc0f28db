"""The optional one-pass selection kernel (numba) is exact: bit for bit what torch and the NumPy path give.

Tests that run the kernel skip when numba is not installed (it is the ``fast`` extra); the
fallback tests run everywhere.
"""

import numpy as np
import pytest
import torch
from torch import nn

from tui_quantreport.engine import Session, Settings
from tui_quantreport.engine.stats import kernel, summarize
from tui_quantreport.engine.stats.accumulator import as_channels
from tui_quantreport.engine.stats.selection import lower_quantile_index

needs_numba = pytest.mark.skipif(not kernel.available(), reason=f"{kernel.unavailable_reason()}")

QS = (0.0, 0.5, 0.9, 0.975, 1.0)


def reference(x3: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = x3.transpose(0, 1).reshape(x3.shape[1], -1)
    return rows.amin(dim=1), rows.amax(dim=1), rows.kthvalue(k + 1, dim=1).values


def bits(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).view(np.int32)


def assert_bits_equal(got, expected) -> None:
    got, expected = np.asarray(got, np.float32), np.asarray(expected, np.float32)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(bits(got)[~nan], bits(expected)[~nan])


def data(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    if kind == "repeats":  # a handful of distinct values (quantized-like inputs)
        return torch.randint(-2, 3, shape, generator=gen).float() * 0.25
    if kind == "relu_sparse":  # post-ReLU, ~98% zeros: the 97.5th percentile is often 0
        return torch.relu(x - 2.0)
    if kind == "relu":
        return torch.relu(x)
    if kind == "constant":
        return torch.full(shape, 1.5)
    if kind == "heavy_tail":
        return x**3 * 100
    return x


LAYOUTS = {
    "channel_first": ((16, 6, 700), None),  # (A, C, B): runs of B values per channel
    "channel_last": ((3000, 40, 1), None),  # one row holds every channel
    "wide_channel_last": ((257, 300, 1), None),
    "short_rows": ((9, 5, 3), None),
}


@needs_numba
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kind", ["normal", "repeats", "relu_sparse", "relu", "constant", "heavy_tail"])
@pytest.mark.parametrize("variant", [{}, {"sample": 0}, {"full": True}, {"slack": 1.0}])
def test_kernel_equals_torch_kthvalue(layout, kind, variant):
    shape = LAYOUTS[layout][0]
    x3 = data(kind, shape, seed=len(kind) + shape[0])
    n = shape[0] * shape[2]
    for q in QS:
        k = lower_quantile_index(q, n)
        channel_min, channel_max, (got,) = kernel.channel_stats(x3.numpy(), [k], **variant)
        lo, hi, expected = reference(x3, k)
        assert_bits_equal(got, expected)
        assert_bits_equal(channel_min, lo)
        assert_bits_equal(channel_max, hi)
        assert torch.equal(
            torch.from_numpy(got),
            torch.quantile(x3.transpose(0, 1).reshape(shape[1], -1), q, dim=1, interpolation="lower"),
        )


@needs_numba
def test_several_percentiles_in_one_pass():
    x3 = data("normal", (40, 7, 333), seed=3)
    n = 40 * 333
    ks = [lower_quantile_index(q, n) for q in (0.99, 0.5, 0.975)]
    _, _, picked = kernel.channel_stats(x3.numpy(), ks)
    for k, got in zip(ks, picked):
        assert_bits_equal(got, reference(x3, k)[2])


def host_summary(x: torch.Tensor, axis: int, percentiles: tuple[float, ...], monkeypatch, mode: str):
    monkeypatch.setenv(kernel.ENV, mode)
    return summarize(x, axis, percentiles)


@needs_numba
@pytest.mark.parametrize("channel_last", [False, True])
def test_nan_and_inf_are_handled_as_the_numpy_path_handles_them(monkeypatch, channel_last):
    x = torch.randn(64, 8, 50)
    x[3, 0, 7] = float("nan")  # a channel holding NaN: NaN min, max and percentiles
    x[:, 1, :] = float("nan")  # all NaN
    x[5, 2, 9] = float("inf")
    x[6, 3, 1] = float("-inf")
    x[:, 4, :] = float("-inf")  # all -inf
    x[:40, 5, :] = float("inf")  # the top values are +inf
    x[0, 6, 0] = float("nan")
    x[:, 6, 1:] = float("inf")
    if channel_last:
        x = x.permute(0, 2, 1).contiguous()
    axis = 2 if channel_last else 1
    expected = host_summary(x, axis, QS, monkeypatch, "torch")
    got = host_summary(x, axis, QS, monkeypatch, "numba")
    assert_bits_equal(got.channel_min, expected.channel_min)
    assert_bits_equal(got.channel_max, expected.channel_max)
    for q in QS:
        assert_bits_equal(got.percentiles[q], expected.percentiles[q])
    assert np.isnan(got.channel_max[[0, 1, 6]]).all()


@needs_numba
def test_non_contiguous_inputs_are_read_where_they_lie(monkeypatch):
    base = torch.randn(8, 12, 20, 20)
    cases = [
        (base.to(memory_format=torch.channels_last), 1),  # NHWC storage, channel axis 1
        (base.transpose(1, 3), 3),  # a transposed view
        (base[:, ::2, 3:17, ::3], 1),  # strided slices
        (base.permute(0, 2, 3, 1)[..., 1:9], 3),
    ]
    for x, axis in cases:
        expected = host_summary(x.contiguous(), axis, (0.975, 0.5), monkeypatch, "torch")
        got = host_summary(x, axis, (0.975, 0.5), monkeypatch, "numba")
        assert_bits_equal(got.channel_min, expected.channel_min)
        assert_bits_equal(got.channel_max, expected.channel_max)
        for q in (0.975, 0.5):
            assert_bits_equal(got.percentiles[q], expected.percentiles[q])


@needs_numba
def test_channels_longer_than_2_pow_24():
    """torch.quantile refuses rows this long; the kernel reads them. Built cheaply: a (1, 2, 4096)
    tensor expanded (stride 0) to 4097 copies, so each channel holds 16,781,312 > 2**24 values and
    its k-th smallest is the (k // 4097)-th smallest of its 4096 distinct values."""
    copies, width = 4097, 4096
    small = torch.randn(1, 2, width, generator=torch.Generator().manual_seed(1))
    small[0, 1] = torch.relu(small[0, 1])
    x3 = small.expand(copies, 2, width)
    n = copies * width
    assert n > 2**24
    for q in (0.975, 0.5, 1.0):
        k = lower_quantile_index(q, n)
        lo, hi, (got,) = kernel.channel_stats(x3.numpy(), [k])
        expected = small[0].sort(dim=1).values[:, k // copies]
        assert_bits_equal(got, expected)
        assert_bits_equal(lo, small[0].amin(dim=1))
        assert_bits_equal(hi, small[0].amax(dim=1))


@needs_numba
def test_a_sampled_threshold_that_is_too_high_falls_back_to_a_full_selection():
    x3 = data("normal", (32, 4, 256), seed=5)
    compiled = kernel._kernels()
    n = 32 * 256
    k = lower_quantile_index(0.975, n)
    m = n - k
    bits3 = x3.numpy().view(np.int32)
    c = 4
    # Thresholds far too high (above every value but the maximum): too few candidates.
    threshold = np.sort(bits3.transpose(1, 0, 2).reshape(c, -1), axis=1)[:, -2].copy()
    buf = np.empty((c, 2 * m + 256 + 1), np.int32)
    count = np.zeros(c, np.int64)
    lo = np.full(c, np.iinfo(np.int32).max, np.int32)
    hi = np.full(c, np.iinfo(np.int32).min, np.int32)
    nans = np.zeros(c, np.int32)
    compiled.scan_runs(bits3, m, 2 * m, threshold, buf, count, lo, hi, nans)
    assert (count < m).all()
    out = (np.empty(c, np.int32), np.empty(c, np.int32), np.empty((1, c), np.int32), np.zeros(c, np.bool_))
    compiled.finish(bits3, np.asarray([k]), threshold, buf, count, lo, hi, nans, *out)
    assert_bits_equal(kernel._floats(out[2][0]), reference(x3, k)[2])


@needs_numba
def test_select_is_exact_on_adversarial_orders():
    compiled = kernel._kernels()
    rng = np.random.default_rng(0)
    for values in (
        np.arange(5000, dtype=np.int32),
        np.arange(5000, dtype=np.int32)[::-1].copy(),
        np.repeat(np.arange(7, dtype=np.int32), 700),
        rng.integers(-3, 3, 3000).astype(np.int32),
        np.tile(np.asarray([1, 0], np.int32), 2000),
    ):
        ordered = np.sort(values)
        for k in (0, 1, len(values) // 2, len(values) - 2, len(values) - 1):
            work = values.copy()
            assert compiled.select(work, 0, len(work), k) == ordered[k]
            assert np.array_equal(np.sort(work), ordered)  # a permutation of the input


@needs_numba
def test_calibration_is_identical_with_and_without_the_kernel(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.Flatten(),
        nn.Linear(8 * 24 * 24, 10),
    ).eval()
    batches = [torch.randn(16, 3, 24, 24) for _ in range(3)]
    settings = Settings.build(("per_channel", "dynamic_static", "equalization", "outlier"))

    def stats(mode: str):
        monkeypatch.setenv(kernel.ENV, mode)
        return Session(model).calibrate(batches, settings)

    plain, fast = stats("torch"), stats("numba")
    assert plain.points.keys() == fast.points.keys()
    for point, expected in plain.points.items():
        got = fast.points[point]
        e_tensors, e_meta = expected.state()
        g_tensors, g_meta = got.state()
        assert g_meta == e_meta
        assert g_tensors.keys() == e_tensors.keys()
        for name, tensor in e_tensors.items():
            assert torch.equal(g_tensors[name], tensor), (point, name)


def test_without_numba_the_numpy_path_runs(monkeypatch):
    monkeypatch.setattr(kernel, "_compiled", None)
    monkeypatch.setattr(kernel, "_failed", "numba is not installed (test)")
    monkeypatch.setenv(kernel.ENV, "numba")
    assert not kernel.available()
    x = torch.randn(4096, 2, 1030)  # big enough for "auto" too
    assert not kernel.use_kernel(as_channels(x, 1))
    got = summarize(x, 1, (0.975,))
    rows = x.transpose(0, 1).reshape(2, -1)
    assert torch.equal(
        torch.from_numpy(got.percentiles[0.975]),
        rows.kthvalue(lower_quantile_index(0.975, rows.shape[1]) + 1, dim=1).values,
    )


def test_auto_uses_the_kernel_only_on_big_tensors(monkeypatch):
    monkeypatch.setenv(kernel.ENV, "auto")
    monkeypatch.setattr(kernel, "available", lambda: True)
    assert not kernel.use_kernel(torch.zeros(64, 16, 1024))
    assert kernel.use_kernel(torch.zeros(64, 16, 4096))
    assert not kernel.use_kernel(torch.zeros(4096, 1, 2048))  # one channel: no transposed copy to save
    assert not kernel.use_kernel(torch.zeros(64, 16, 4096, dtype=torch.float64))
    monkeypatch.setenv(kernel.ENV, "torch")
    assert not kernel.use_kernel(torch.zeros(64, 16, 4096))
    monkeypatch.setenv(kernel.ENV, "numba")
    assert kernel.use_kernel(torch.zeros(2, 3, 4))
