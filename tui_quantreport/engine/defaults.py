"""The defaults every front end and engine layer shares, each defined once (torch-free).

The command line, the app and the engine read these names instead of spelling the values, so a
changed default changes everywhere at once.
"""

from __future__ import annotations

#: The quantized backends (torch's quantized engines) a report can target, in the order shown.
BACKENDS: tuple[str, ...] = ("fbgemm", "x86", "qnnpack", "onednn")

#: The backend assumed when none is named.
DEFAULT_BACKEND = "x86"

#: How many of the first calibration batches the measured error (SQNR) runs on by default.
PROBE_BATCHES = 4

#: A finding whose advice gains less than this many dB of measured SQNR is minor (shown, not badged);
#: the recommender keeps the more accurate scheme only when it gains at least this much.
MIN_GAIN_DB = 1.0

#: Rows (tokens, samples, pixels) below which a calibrated input range is not trusted: the
#: under-calibrated detector's default ``min_rows``, and the simulation's for its static schemes.
MIN_ROWS = 64
