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
from tui_quantreport.engine.stats.grouped import summarize_group
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


# The kernel's top-m path: channel-last rows where only the top few values are wanted.


def assert_same_numbers(got, expected) -> None:
    """Bit for bit, except that a zero may carry either sign: the replaced path's sort (NumPy's SIMD
    sort, as torch's) leaves -0.0 and +0.0 in no defined order, so its own sign of a zero is arbitrary."""
    got, expected = np.asarray(got, np.float32), np.asarray(expected, np.float32)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan], expected[~nan])  # -0.0 == 0.0
    nonzero = ~nan & (expected != 0)
    assert np.array_equal(bits(got)[nonzero], bits(expected)[nonzero])


def top_quantiles(n: int) -> tuple[float, ...]:
    """Percentiles whose order statistic lies within the kernel's reach of the top (and 0.975)."""
    qs = {0.975, 1.0} | {k / (n - 1) for k in range(n - kernel.TOP_MAX_M, n)}
    return tuple(sorted(q for q in qs if n - lower_quantile_index(q, n) <= kernel.TOP_MAX_M))


def summaries(x: torch.Tensor, axis: int, qs: tuple[float, ...], monkeypatch, mode: str, spy: list[int]):
    monkeypatch.setenv(kernel.ENV, mode)
    before = spy[0]
    s = summarize(x, axis, qs)
    return s, spy[0] > before


@pytest.fixture
def top_calls(monkeypatch) -> list[int]:
    calls = [0]
    real = kernel.top_stats

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel, "top_stats", counted)
    return calls


TOP_SHAPES = {
    "mlp": ((256, 300), 1),  # (N, C): more channels than one block of the kernel
    "tokens": ((4, 64, 40), 2),  # (B, T, C)
    "short": ((33, 5), 1),  # every value is within reach of the top
    "odd_rows": ((257, 260), 1),  # the kernel merges two rows at a time: one left over
}


@needs_numba
@pytest.mark.parametrize("shape_name", sorted(TOP_SHAPES))
@pytest.mark.parametrize("kind", ["normal", "repeats", "relu_sparse", "relu", "constant", "heavy_tail"])
def test_top_path_equals_the_numpy_path(monkeypatch, top_calls, shape_name, kind):
    shape, axis = TOP_SHAPES[shape_name]
    x = data(kind, shape, seed=len(kind) + shape[0])
    n = x.numel() // shape[axis]
    qs = top_quantiles(n)
    expected, used = summaries(x, axis, qs, monkeypatch, "torch", top_calls)
    assert not used
    got, used = summaries(x, axis, qs, monkeypatch, "auto", top_calls)
    assert used
    rows = x.movedim(axis, 0).reshape(shape[axis], -1)
    assert_bits_equal(got.channel_min, rows.amin(dim=1))
    assert_bits_equal(got.channel_max, rows.amax(dim=1))
    for q in qs:
        assert_bits_equal(got.percentiles[q], expected.percentiles[q])
        truth = torch.quantile(rows, q, dim=1, interpolation="lower")
        assert torch.equal(torch.from_numpy(got.percentiles[q]), truth)
    assert_bits_equal(got.channel_min, expected.channel_min)
    assert_bits_equal(got.channel_max, expected.channel_max)
    assert got.call_min == expected.call_min and got.call_max == expected.call_max


@needs_numba
def test_top_path_special_values(monkeypatch, top_calls):
    x = torch.randn(200, 12)
    x[7, 0] = float("nan")  # a channel holding NaN: NaN min, max and percentiles
    x[:, 1] = float("nan")
    x[3, 2] = float("inf")
    x[:, 3] = float("-inf")
    x[:190, 4] = float("inf")  # the top values are +inf
    x[5, 5] = float("-inf")
    x[:, 6] = torch.tensor([1.0, 2.0, 3.0, 3.0, 3.0]).repeat(40)  # ties at the percentile
    x[:, 7] = -x[:, 6]
    x[:, 8] = torch.where(torch.arange(200) % 2 == 0, 0.0, -0.0)  # only zeros, both signs
    x[:195, 9] = 0.0
    x[195:, 9] = -0.0
    x[:100, 10] = -0.0  # zeros at the percentile, both signs, above negative values
    x[100:, 10] = -1.0
    x[0, 10] = 0.0
    x[0, 11] = float("nan")
    x[1:, 11] = float("inf")
    qs = top_quantiles(200)
    expected, _ = summaries(x, 1, qs, monkeypatch, "torch", top_calls)
    got, used = summaries(x, 1, qs, monkeypatch, "auto", top_calls)
    assert used
    assert_same_numbers(got.channel_min, expected.channel_min)
    assert_same_numbers(got.channel_max, expected.channel_max)
    for q in qs:
        assert_same_numbers(got.percentiles[q], expected.percentiles[q])
    assert np.isnan(got.channel_max[[0, 1, 11]]).all() and np.isnan(got.channel_min[[0, 1, 11]]).all()
    # Where zeros of both signs tie, the kernel's order is total (-0.0 below +0.0): the minimum of a
    # channel holding -0.0 is -0.0 and its maximum +0.0 when it holds one (the sort's is either).
    assert np.signbit(got.channel_min[8]) and not np.signbit(got.channel_max[8])


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_top_path_on_half_precision_inputs(monkeypatch, top_calls, dtype):
    x = (torch.randn(128, 64) * 30).to(dtype)  # many equal values after rounding
    x[5, 3] = float("nan")
    x[:, 4] = float("inf")
    qs = top_quantiles(128)
    expected, _ = summaries(x, 1, qs, monkeypatch, "torch", top_calls)
    got, used = summaries(x, 1, qs, monkeypatch, "auto", top_calls)
    assert used
    assert_bits_equal(got.channel_min, expected.channel_min)
    assert_bits_equal(got.channel_max, expected.channel_max)
    for q in qs:
        assert_bits_equal(got.percentiles[q], expected.percentiles[q])


@needs_numba
def test_top_path_in_grouped_summaries(monkeypatch, top_calls):
    gen = torch.Generator().manual_seed(4)
    tensors = [torch.randn(40, 24, generator=gen) for _ in range(5)]
    tensors[2][3, 1] = float("nan")
    tensors[4][:, 2] = 1.0
    qs = top_quantiles(40)
    monkeypatch.setenv(kernel.ENV, "torch")
    expected = summarize_group(tensors, 1, qs)
    assert top_calls[0] == 0
    monkeypatch.setenv(kernel.ENV, "auto")
    got = summarize_group(tensors, 1, qs)
    assert top_calls[0] == 1
    for name in ("channel_min", "channel_max", "call_min", "call_max"):
        assert_bits_equal(getattr(got, name), getattr(expected, name))
    for q in qs:
        assert_bits_equal(got.percentiles[q], expected.percentiles[q])
        for i, t in enumerate(tensors):  # row i is the tensor's own summary
            assert_bits_equal(got.percentiles[q][i], summarize(t, 1, qs).percentiles[q])


def test_top_path_rule(monkeypatch):
    monkeypatch.setattr(kernel, "available", lambda: True)
    monkeypatch.setenv(kernel.ENV, "auto")
    n = 256
    near_top = [lower_quantile_index(0.975, n)]
    assert kernel.use_top(as_channels(torch.zeros(n, 64), 1), near_top) is not None
    assert kernel.use_top(as_channels(torch.zeros(4, 64, 64), 2), near_top) is not None  # (B, T, C)
    assert kernel.use_top(as_channels(torch.zeros(n, 64), 1), [lower_quantile_index(0.5, n)]) is None
    assert kernel.use_top(as_channels(torch.zeros(n, 1), 1), near_top) is None  # one channel
    assert kernel.use_top(as_channels(torch.zeros(n, 64, dtype=torch.float64), 1), near_top) is None
    assert kernel.use_top(as_channels(torch.zeros(16, 64, 16), 1), near_top) is None  # channel-first runs
    channels_last = torch.zeros(4, 64, 8, 8).to(memory_format=torch.channels_last)
    assert kernel.use_top(as_channels(channels_last, 1), near_top) is not None
    monkeypatch.setenv(kernel.ENV, "torch")
    assert kernel.use_top(as_channels(torch.zeros(n, 64), 1), near_top) is None
