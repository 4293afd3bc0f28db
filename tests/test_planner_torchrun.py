"""``calibrate --probe-batches K --sensitivity`` under torchrun: the sensitivity is split across the
ranks (each measures a share of the modules, rank 0 gathers them into the stats file), on the probe
batches a 1-process run takes and the merged statistics: the stats file's measured error equals a
1-process run's, value for value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tui_quantreport.engine import statsfile

ROOT = Path(__file__).resolve().parents[1]
TINY = str(Path(__file__).parent / "models" / "tiny.py")
#: One thread everywhere: torchrun gives each rank one, and the 1-process run must add in the same order.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(*args: str, ranks: int | None, cwd: Path) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if ranks else []
    return subprocess.run(
        [sys.executable, *launcher, "-m", "tui_quantreport", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**ENV, "PYTHONPATH": str(ROOT)},
    )


def test_two_gloo_ranks_split_the_sensitivity_and_equal_one_process(tmp_path):
    argv = ("calibrate", "showcase", "--batches", "8", "--probe-batches", "2", "--sensitivity")
    two = _run(*argv, "--output", str(tmp_path / "two.qstats"), ranks=2, cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert "sensitivity split across 2 ranks (rank 0: 2, rank 1: 2 modules)" in two.stderr, two.stderr
    assert "note:" not in two.stderr
    one = _run(*argv, "--output", str(tmp_path / "one.qstats"), ranks=None, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    split = statsfile.load(tmp_path / "two.qstats").measured
    alone = statsfile.load(tmp_path / "one.qstats").measured
    assert split is not None and alone is not None and split.sensitivity_measured
    sensitivities = {fqn: m.sensitivity_db for fqn, m in split.modules.items() if m.sensitivity_db is not None}
    assert len(sensitivities) == 4
    assert sensitivities == {fqn: alone.modules[fqn].sensitivity_db for fqn in sensitivities}
    assert split == alone  # everything measured: local SQNR, the plan, its SQNR, the sensitivity


NONDETERMINISTIC = """
import os

import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def calibration_batches():
    # Other data on every read (and in every process): the ranks' probe batches cannot agree.
    gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
    return [torch.randn(4, 8, generator=gen) for _ in range(4)]
"""


def test_a_rank_that_reads_other_probe_batches_has_its_share_measured_on_rank_0(tmp_path):
    model = tmp_path / "random_data.py"
    model.write_text(NONDETERMINISTIC)
    target = tmp_path / "two.qstats"
    argv = ("calibrate", str(model), "--probe-batches", "2", "--sensitivity", "--output", str(target))
    done = _run(*argv, ranks=2, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "rank 1's share measured on rank 0: rank 1 read other probe batches than rank 0" in done.stderr
    measured = statsfile.load(target).measured
    assert measured is not None and measured.sensitivity_measured
    quantized = [fqn for fqn, m in measured.modules.items() if m.recommended_scheme not in ("", "float")]
    assert quantized and all(measured.modules[fqn].sensitivity_db is not None for fqn in quantized)
