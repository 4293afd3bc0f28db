"""The numba kernel behind :mod:`.kernel`, built by :func:`build` (numba is imported there, on
first use: importing this module needs only NumPy).

Compiled on first use and cached on disk (``cache=True``: numba's cache beside
this file, or ``NUMBA_CACHE_DIR``), so later processes load it instead of
compiling. See :mod:`.kernel` for the algorithm and its exactness argument.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

#: Ranges this short are finished by insertion sort.
_SMALL = 16


def select(buf, lo, hi, k):  # pragma: no cover - compiled
    """Reorder ``buf[lo:hi]`` (no NaN) so that ``buf[k]`` is its ``(k - lo)``-th smallest; return it.

    Quickselect with a median-of-three pivot and Hoare's partition (equal values
    split evenly, so repeats stay linear); after too many rounds the range left is
    sorted (an introselect, never quadratic).
    """
    depth = 0
    size = hi - lo
    limit = 4
    while size > 1:
        limit += 2
        size >>= 1
    while hi - lo > _SMALL:
        if depth > limit:
            buf[lo:hi].sort()
            return buf[k]
        depth += 1
        mid = lo + (hi - lo) // 2
        last = hi - 1
        # Median of three into buf[lo] (the pivot): buf[mid] <= buf[lo] <= buf[last].
        if buf[mid] > buf[last]:
            buf[mid], buf[last] = buf[last], buf[mid]
        if buf[lo] > buf[last]:
            buf[lo], buf[last] = buf[last], buf[lo]
        if buf[mid] > buf[lo]:
            buf[mid], buf[lo] = buf[lo], buf[mid]
        pivot = buf[lo]
        i = lo - 1
        j = hi
        while True:
            i += 1
            while buf[i] < pivot:
                i += 1
            j -= 1
            while buf[j] > pivot:
                j -= 1
            if i >= j:
                break
            buf[i], buf[j] = buf[j], buf[i]
        # buf[lo..j] <= pivot <= buf[j+1..hi-1], lo <= j < hi - 1
        if k <= j:
            hi = j + 1
        else:
            lo = j + 1
    for i in range(lo + 1, hi):
        v = buf[i]
        j = i - 1
        while j >= lo and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    return buf[k]


def _compact(row, count, m):  # pragma: no cover - compiled
    """Keep the ``m`` largest of ``row[:count]`` in ``row[:m]``; return the smallest kept."""
    cut = count - m
    threshold = select(row, 0, count, cut)
    row[:m] = row[cut:count].copy()
    return threshold


_MASK = np.int32(0x7FFFFFFF)
_INF = np.int32(0x7F800000)
_FLOOR = np.int32(-2147483648)
#: The bits of float32 NaN (what ``np.float32("nan")`` holds).
_NAN = np.int32(0x7FC00000)


def start_thresholds(bits, m, sample, threshold):  # pragma: no cover - compiled
    """Each channel's starting threshold: the key with about ``1.5 m + 3 sd`` of the channel
    above it, estimated from the same ``sample`` positions in every channel (read in memory
    order: sample outer, channel inner). Too high is caught at the end (:func:`finish`)."""
    a_len, c_len, b_len = bits.shape
    n = a_len * b_len
    s = sample
    frac = m / n
    above = int(np.ceil(1.5 * s * frac + 3.0 * np.sqrt(s * frac))) + 1
    if above >= s:
        return
    probe = np.empty((c_len, s), np.int32)
    step = n // s
    for j in range(s):
        # One position in each of s equal strides, at a scrambled offset: a fixed offset would
        # sample the same pixel of every image (a border, where padding shifts the values).
        i = j * step + ((j * 2654435761) & 0xFFFFFFFF) % step
        a = i // b_len
        b = i % b_len
        for c in range(c_len):
            v = bits[a, c, b]
            probe[c, j] = v ^ ((v >> 31) & _MASK)
    for c in range(c_len):
        threshold[c] = select(probe[c], 0, s, s - above)


def scan_runs(bits, m, limit, threshold, buf, count, lo, hi, nans):  # pragma: no cover - compiled
    """The one pass, channel-first: per ``(a, c)`` a contiguous run over ``b``. A vectorized
    loop takes min, max, NaNs and the count above the threshold; a second, branch-free loop over
    the same run (in L1) appends the candidates."""
    a_len, c_len, b_len = bits.shape
    for a in range(a_len):
        for c in range(c_len):
            t = threshold[c]
            low = lo[c]
            high = hi[c]
            nan = 0
            hits = 0
            for b in range(b_len):
                v = bits[a, c, b]
                key = v ^ ((v >> 31) & _MASK)
                low = min(low, key)
                high = max(high, key)
                nan += (v & _MASK) > _INF
                hits += key > t
            lo[c] = low
            hi[c] = high
            nans[c] += nan
            if hits > 0:
                k = count[c]
                row = buf[c]
                if k + hits > limit and k > m:
                    t = _compact(row, k, m)
                    threshold[c] = t
                    k = m
                for b in range(b_len):
                    v = bits[a, c, b]
                    key = v ^ ((v >> 31) & _MASK)
                    row[k] = key
                    k += key > t
                if k > limit:
                    threshold[c] = _compact(row, k, m)
                    k = m
                count[c] = k


def scan_rows(bits, m, limit, threshold, buf, count, lo, hi, nans):  # pragma: no cover - compiled
    """The one pass, channel-last: per ``(a, b)`` a contiguous row over the channels (a
    vectorized loop for min, max, NaNs and whether any value passes its channel's threshold,
    then the candidates)."""
    a_len, c_len, b_len = bits.shape
    flag = np.zeros(c_len, np.bool_)
    for a in range(a_len):
        for b in range(b_len):
            hits = 0
            for c in range(c_len):
                v = bits[a, c, b]
                key = v ^ ((v >> 31) & _MASK)
                lo[c] = min(lo[c], key)
                hi[c] = max(hi[c], key)
                nans[c] += (v & _MASK) > _INF
                above = key > threshold[c]
                flag[c] = above
                hits += above
            if hits > 0:
                for c in range(c_len):
                    if flag[c]:
                        v = bits[a, c, b]
                        key = v ^ ((v >> 31) & _MASK)
                        k = count[c]
                        buf[c, k] = key
                        k += 1
                        if k > limit:
                            threshold[c] = _compact(buf[c], k, m)
                            k = m
                        count[c] = k


def finish(bits, ks, threshold, buf, count, lo, hi, nans, out_min, out_max, out_q, out_nan):  # pragma: no cover
    """Per channel: its min, max and ``ks`` order statistics (as keys) from the pass's state."""
    a_len, c_len, b_len = bits.shape
    n = a_len * b_len
    m = n - ks[0]
    for c in range(c_len):
        out_nan[c] = nans[c] > 0
        if nans[c] > 0:
            continue
        out_min[c] = lo[c]
        out_max[c] = hi[c]
        k = count[c]
        if k < m and threshold[c] > _FLOOR:
            # The sampled threshold was too high: fewer than m values above it. Select in full.
            whole = np.empty(n, np.int32)
            i = 0
            for a in range(a_len):
                for b in range(b_len):
                    v = bits[a, c, b]
                    whole[i] = v ^ ((v >> 31) & _MASK)
                    i += 1
            for j in range(len(ks)):
                out_q[j, c] = select(whole, 0, n, ks[j])
            continue
        row = buf[c]
        for j in range(len(ks)):
            rank = n - ks[j]  # the rank-th largest
            if k >= rank:
                out_q[j, c] = select(row, 0, k, k - rank)
            else:
                out_q[j, c] = _FLOOR  # only the lowest key (a NaN) was never a candidate


#: Channels per block of :func:`top_rows` (its running top lists stay in the L1 cache).
_BLOCK = 256


def top_rows(bits, m, offsets, out_min, out_max, out_q):  # noqa: C901  # pragma: no cover - compiled
    """Per channel of ``bits`` ``(T, P, C)`` (int32 views of float32, C-contiguous; channel ``(t,
    c)`` holds ``bits[t, :, c]``, output column ``t*C + c``): its min, max and, for each ``j``, the
    ``offsets[j]``-th of its ``m`` largest values (ascending: offset 0 is the ``m``-th largest), as
    float32 bit patterns into the int32 arrays ``out_min``, ``out_max`` ``(T*C,)`` and ``out_q``
    ``(len(offsets), T*C)``. A channel holding NaN gets NaN everywhere.

    For short rows with ``m`` small (the top few percent of a few hundred values), vectorised
    across channels: each row's order keys are merged into the channels' sorted top lists with the
    branch-free rule ``top'[i] = max(top[i], min(key, top[i + 1]))``, ``top'[m-1] = max(top[m-1],
    key)`` (the list with ``key`` inserted and its smallest dropped; min and max select, never
    compute, so every result is one of the values), two rows per pass over the lists (see below). No
    transposed copy, no sort. (One function: numba vectorises these loops only when they are not
    split into calls.)
    """
    t_len, p_len, c_len = bits.shape
    pair_lo = np.empty(_BLOCK, np.int32)
    pair_hi = np.empty(_BLOCK, np.int32)
    run = np.empty((m, _BLOCK), np.int32)
    low = np.empty(_BLOCK, np.int32)
    nan = np.empty(_BLOCK, np.int32)
    for t in range(t_len):
        for c0 in range(0, c_len, _BLOCK):
            w = min(c_len, c0 + _BLOCK) - c0
            low[:] = np.int32(0x7FFFFFFF)
            nan[:] = 0
            run[:, :] = _FLOOR
            # Two rows at a time: their keys as a sorted pair (a <= b) merge into the lists with
            # top'[i] = max(top[i], min(b, top[i + 1]), min(a, top[i + 2])) (top[m] = top[m + 1] =
            # +inf): the lists with both inserted and their two smallest dropped, in one pass.
            for p in range(0, p_len - 1, 2):
                first = bits[t, p, c0 : c0 + w]
                second = bits[t, p + 1, c0 : c0 + w]
                for c in range(w):
                    v = first[c]
                    u = second[c]
                    key = v ^ ((v >> 31) & _MASK)
                    other = u ^ ((u >> 31) & _MASK)
                    pair_lo[c] = min(key, other)
                    pair_hi[c] = max(key, other)
                    nan[c] += np.int32((v & _MASK) > _INF) + np.int32((u & _MASK) > _INF)
                for c in range(w):
                    low[c] = min(low[c], pair_lo[c])
                for i in range(m - 2):
                    below = run[i]
                    above = run[i + 1]
                    top2 = run[i + 2]
                    for c in range(w):
                        below[c] = max(below[c], max(min(pair_hi[c], above[c]), min(pair_lo[c], top2[c])))
                if m >= 2:
                    below = run[m - 2]
                    above = run[m - 1]
                    for c in range(w):
                        below[c] = max(below[c], max(min(pair_hi[c], above[c]), pair_lo[c]))
                last = run[m - 1]
                for c in range(w):
                    last[c] = max(last[c], pair_hi[c])
            if p_len % 2:  # the last row alone: top'[i] = max(top[i], min(key, top[i + 1]))
                row = bits[t, p_len - 1, c0 : c0 + w]
                for c in range(w):
                    v = row[c]
                    key = v ^ ((v >> 31) & _MASK)
                    pair_hi[c] = key
                    low[c] = min(low[c], key)
                    nan[c] += np.int32((v & _MASK) > _INF)
                for i in range(m - 1):
                    below = run[i]
                    above = run[i + 1]
                    for c in range(w):
                        below[c] = max(below[c], min(pair_hi[c], above[c]))
                last = run[m - 1]
                for c in range(w):
                    last[c] = max(last[c], pair_hi[c])
            top_write(run, low, nan, w, t * c_len + c0, offsets, out_min, out_max, out_q)


def top_write(run, low, nan, w, out, offsets, out_min, out_max, out_q):  # pragma: no cover - compiled
    """:func:`top_rows`'s results for one block of ``w`` channels from column ``out`` on: the keys
    back to float32 bit patterns (NaN for a channel that held NaN)."""
    m = run.shape[0]
    for c in range(w):
        if nan[c] > 0:
            out_min[out + c] = _NAN
            out_max[out + c] = _NAN
            for j in range(len(offsets)):
                out_q[j, out + c] = _NAN
            continue
        key = low[c]
        out_min[out + c] = key ^ ((key >> 31) & _MASK)
        key = run[m - 1, c]  # the largest key: the top list's last
        out_max[out + c] = key ^ ((key >> 31) & _MASK)
        for j in range(len(offsets)):
            key = run[offsets[j], c]
            out_q[j, out + c] = key ^ ((key >> 31) & _MASK)


#: The kernels, in the order they call each other (a kernel calls only those before it).
_KERNELS = ("select", "_compact", "start_thresholds", "scan_runs", "scan_rows", "finish", "top_write", "top_rows")


def build() -> SimpleNamespace:
    """Import numba and compile the kernels above (compiled, or loaded from numba's cache, on their
    first call). The module's names are rebound to the compiled kernels, so a kernel calling another
    (``finish`` calls ``select``) calls the compiled one; a second call returns the same kernels."""
    from numba import njit

    names = globals()
    for name in _KERNELS:
        if not hasattr(names[name], "py_func"):  # not compiled yet
            names[name] = njit(cache=True, nogil=True)(names[name])
    return SimpleNamespace(**{name: names[name] for name in _KERNELS})
