"""Files a user hands the tool: model identity (fingerprint version 2), bounded readers for
stats, plan and settings files, .pt2 files only with --trust-pickle, and models that change
their input or print."""

from __future__ import annotations

import json
import os
import shutil
import tracemalloc
from pathlib import Path

import pytest
from cli_helpers import one_line, run
from statsfile_helpers import rewrite

from tui_quantreport.engine import statsfile
from tui_quantreport.engine.errors import UserError

TINY = Path(__file__).parent / "models" / "tiny.py"


@pytest.fixture(scope="module")
def tiny_stats(tmp_path_factory) -> Path:
    from tui_quantreport.cli import main

    path = tmp_path_factory.mktemp("stats") / "tiny.qstats"
    assert main(["calibrate", str(TINY), "--output", str(path), "--batches", "2"]) == 0
    return path


def _variant(tmp_path: Path, old: str, new: str, name: str = "variant.py") -> Path:
    path = tmp_path / name
    text = TINY.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


# Model identity -------------------------------------------------------------------------------


def test_the_fingerprint_is_versioned_and_covers_the_module_tree():
    from torch import nn

    from tui_quantreport.engine.modules import ModelCatalog

    relu = ModelCatalog.build(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    tanh = ModelCatalog.build(nn.Sequential(nn.Linear(4, 4), nn.Tanh()))
    assert relu.fingerprint.startswith("2:") and relu.fingerprint != tanh.fingerprint
    assert relu.legacy_fingerprint == tanh.legacy_fingerprint  # version 1 saw only the parameters
    bn_a = ModelCatalog.build(nn.Sequential(nn.BatchNorm1d(4)))
    bn_b = nn.Sequential(nn.BatchNorm1d(4))
    bn_b[0].register_buffer("extra", __import__("torch").zeros(3))
    assert bn_a.fingerprint != ModelCatalog.build(bn_b).fingerprint  # buffers count


def test_stats_for_a_model_with_another_activation_are_refused_naming_it(tiny_stats, tmp_path, capsys):
    tanh = _variant(
        tmp_path,
        "nn.Flatten(), nn.Linear(8 * 6 * 6, 16), nn.ReLU()",
        "nn.Flatten(), nn.Linear(8 * 6 * 6, 16), nn.Tanh()",
    )
    code, out, err = run(capsys, "report", tanh, "--stats", tiny_stats, "--probe-batches", "0")
    line = one_line(code, err, "different model", "module '4'", "ReLU", "Tanh")
    assert out == "" and "\x1b" not in line


def test_merge_refuses_a_renamed_module_naming_it(tiny_stats, tmp_path, capsys):
    renamed = tmp_path / "renamed.qstats"

    def rename(header):
        rows = header["catalog"]["identity"]
        for row in rows:
            if row[0] == "module" and row[1] == "4":
                row[2] = "torch.nn.modules.activation.GELU"
        from tui_quantreport.engine.modules import identity_fingerprint

        header["catalog"]["fingerprint"] = header["model"]["fingerprint"] = identity_fingerprint(
            tuple(tuple(r) for r in rows)
        )

    renamed.write_bytes(rewrite(tiny_stats.read_bytes(), edit_header=rename))
    out = tmp_path / "merged.qstats"
    code, _, err = run(capsys, "merge", tiny_stats, renamed, "--output", out)
    one_line(code, err, "different models", "GELU")
    assert not out.exists()


def test_a_stats_file_whose_identity_does_not_hash_to_its_fingerprint_is_refused(tiny_stats, tmp_path, capsys):
    forged = tmp_path / "forged.qstats"

    def forge(header):
        header["catalog"]["identity"][2][2] = "torch.nn.modules.activation.Tanh"

    forged.write_bytes(rewrite(tiny_stats.read_bytes(), edit_header=forge))
    code, _, err = run(capsys, "report", forged)
    one_line(code, err, "does not match its fingerprint")


def test_an_older_stats_file_is_checked_the_old_way(tiny_stats, tmp_path, capsys):
    """A file written before fingerprint version 2 (no identity, a 16-digit fingerprint) still
    opens, and is checked against the model's version 1 fingerprint."""
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.spec import load_model

    legacy = ModelCatalog.build(load_model(str(TINY)).model).legacy_fingerprint
    old = tmp_path / "old.qstats"

    def downgrade(header):
        for key in ("identity", "legacy_fingerprint"):
            header["catalog"].pop(key)
        header["catalog"]["fingerprint"] = header["model"]["fingerprint"] = legacy

    old.write_bytes(rewrite(tiny_stats.read_bytes(), edit_header=downgrade))
    code, out, err = run(capsys, "report", TINY, "--stats", old, "--probe-batches", "0")
    assert code == 0, err
    other = _variant(tmp_path, "nn.Linear(16, 4)", "nn.Linear(16, 5)")
    code, _, err = run(capsys, "report", other, "--stats", old, "--probe-batches", "0")
    one_line(code, err, "older version 1 fingerprint")


def test_a_plan_for_another_class_or_a_weightless_module_is_refused():
    from tui_quantreport.engine.apply.plan import check_plan
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.plan import Plan, PlanError
    from tui_quantreport.engine.spec import load_model

    catalog = ModelCatalog.build(load_model(str(TINY)).model)
    good = Plan({"3": "dynamic"}, catalog.class_name, catalog.fingerprint)
    check_plan(good, catalog, "tiny")
    check_plan(Plan({"3": "dynamic"}, catalog.class_name, catalog.legacy_fingerprint), catalog, "tiny")
    with pytest.raises(PlanError, match="made for"):
        check_plan(Plan({"3": "dynamic"}, "Evil\nClass", catalog.fingerprint), catalog, "tiny")
    with pytest.raises(PlanError, match="no weight to quantize"):
        check_plan(Plan({"4": "dynamic"}, catalog.class_name, catalog.fingerprint), catalog, "tiny")


# Bounded readers ------------------------------------------------------------------------------


def test_a_huge_sparse_stats_file_is_refused_from_its_header(tmp_path, capsys):
    sparse = tmp_path / "big.qstats"
    with open(sparse, "wb") as handle:
        handle.write((2**40).to_bytes(8, "little") + b"{")
        handle.truncate(2 * 1024**3)  # 2 GB, sparse: costs no disk
    tracemalloc.start()
    code, _, err = run(capsys, "report", sparse)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    one_line(code, err, "header")
    assert peak < 64 * 1024**2, peak


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda h: h.update(batches=float("inf")), "malformed stats file"),
        (lambda h: h["stats"]["tensors"][0].__setitem__(2, [-4]), "malformed stats file"),
        (lambda h: h.update(provenance=_nested(5000)), "nested too deep"),
        (lambda h: h["stats"].update(state=_nested(3000)), "nested too deep"),
    ],
    ids=["infinite-count", "negative-shape", "deep-provenance", "deep-state"],
)
def test_crafted_stats_headers_are_one_line(edit, fragment, tiny_stats, tmp_path, capsys):
    bad = tmp_path / "bad.qstats"
    data = tiny_stats.read_bytes()
    bad.write_bytes(_rewrite_raw(data, edit))
    code, out, err = run(capsys, "report", bad)
    one_line(code, err, fragment)


def _nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _rewrite_raw(data: bytes, edit) -> bytes:
    """Like statsfile_helpers.rewrite, but written with json's raw text (Infinity, deep nesting)."""
    from safetensors.torch import load, save

    size = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + size])["__metadata__"]
    tensors = load(data)
    header = json.loads(meta["header"])
    edit(header)
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)
    try:
        text = json.dumps(header)
    finally:
        sys.setrecursionlimit(limit)
    meta = {"format": meta["format"], "header": text, "sha256": statsfile._digest(text, tensors)}
    return save(tensors, metadata=meta)


PLAN_HEAD = '{"format": "tui-quantreport.plan/1", "model": {"class": "X", "fingerprint": "0"}, '


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            PLAN_HEAD + '"modules": {"a": {"scheme": "static_per_tensor", "activation": {"scale": NaN, '
            '"zero_point": 0, "dtype": "quint8", "quant_min": 0, "quant_max": 255}}}}',
            "finite",
        ),
        (
            PLAN_HEAD + '"modules": {"a": {"scheme": "static_per_tensor", "activation": {"scale": 0.1, '
            '"zero_point": 1e400, "dtype": "quint8", "quant_min": 0, "quant_max": 255}}}}',
            "finite",
        ),
        (
            PLAN_HEAD + '"modules": {"a": {"scheme": "static_per_tensor", "activation": {"scale": 3e38, '
            '"zero_point": 0, "dtype": "quint8", "quant_min": 0, "quant_max": 127}}}}',
            "overflow",
        ),
        (PLAN_HEAD + '"modules": {}, "predicted_sqnr_db": Infinity}', "finite"),
        (PLAN_HEAD + '"modules": {}, "probe_batches": 99999999999999999999}', "probe_batches"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
    ],
    ids=["nan-scale", "overflow-zero-point", "overflow-int8", "infinite-sqnr", "huge-probes", "deep"],
)
def test_crafted_plan_files_are_one_line(content, fragment, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(content)
    code, _, err = run(capsys, "verify", TINY, "--plan", plan)
    one_line(code, err, fragment)


def test_an_oversized_plan_is_refused_before_it_is_read(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    with open(plan, "wb") as handle:
        handle.truncate(1024**3)
    code, _, err = run(capsys, "verify", TINY, "--plan", plan)
    one_line(code, err, "bytes")


@pytest.mark.parametrize(
    "content",
    [
        "[" * 50_000 + "]" * 50_000,
        '{"enabled": 5, "params": {"outlier_detector": [1]}, "ch_axis": {"x": 1}, "theme": 3}',
        '{"min_gain_db": 1e400}',
        "\xff\xfe not text",
    ],
    ids=["deep", "wrong-kinds", "overflow", "not-utf8"],
)
def test_bad_saved_settings_are_a_notice_and_the_defaults(content, tmp_path, monkeypatch):
    from tui_quantreport.tui import user_settings

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = user_settings.settings_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content.encode("latin-1") if content.startswith("\xff") else content.encode())
    saved, notice = user_settings.load()
    assert notice and "ignored" in notice
    assert saved.enabled is None and saved.ch_axis is None and saved.min_gain_db is None
    assert all(isinstance(v, dict) for v in saved.params.values())


# .pt2: only with --trust-pickle ------------------------------------------------------------------


def test_a_pt2_file_is_not_unpickled_without_trust_pickle(tmp_path, capsys, monkeypatch):
    import torch

    pytest.importorskip("torch.export")
    from pt2e_models import save_program

    program = tmp_path / "model.pt2"
    save_program(program)
    ran = []
    real_load = torch.export.load
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: ran.append(a) or real_load(*a, **k))
    code, _, err = run(capsys, "report", program, "--probe-batches", "0")
    one_line(code, err, "--trust-pickle", "runs code")
    assert ran == []
    try:
        code, out, err = run(capsys, "report", program, "--probe-batches", "0", "--trust-pickle")
        assert code == 0, err
        assert ran
    finally:
        from tui_quantreport.engine.graph_file import trust_pickle

        trust_pickle(False)


# --ch-axis, verify's stdout, models that change their input ---------------------------------------


def test_calibrate_with_a_channel_axis_rule_writes_a_file_that_reopens(tmp_path, capsys):
    out = tmp_path / "axis.qstats"
    code, _, err = run(capsys, "calibrate", TINY, "--ch-axis", "-1", "--output", out, "--batches", "2")
    assert code == 0, err
    sf = statsfile.load(out)
    assert str(sf.settings.ch_axis) == "-1"


def test_verify_json_stdout_is_only_json_when_the_model_prints(tmp_path, capsys):
    pytest.importorskip("torchao")
    noisy = _variant(tmp_path, "def build_model():\n", "def build_model():\n    print('hello from the model')\n")
    shutil.copy(TINY, tmp_path / "unused.py")
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.spec import load_model

    catalog = ModelCatalog.build(load_model(str(noisy)).model)
    plan = tmp_path / "plan.json"
    data = Plan({"3": "dynamic"}, catalog.class_name, catalog.fingerprint, probe_batches=2).to_json_data()
    plan.write_text(json.dumps(data))
    capsys.readouterr()
    code, out, err = run(capsys, "verify", noisy, "--plan", plan, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["target"] == "torchao-cpu"
    assert "hello from the model" in err


INPLACE = """
import torch
from torch import nn


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        x.mul_(2)  # changes the caller's batch
        return self.fc(x)


def build_model():
    torch.manual_seed(0)
    return InPlace()


def calibration_batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(4, 8, generator=g) for _ in range(4)]
"""


def test_a_model_that_changes_its_input_is_detected_and_measured_on_copies(tmp_path, capsys):
    pytest.importorskip("tui_quantreport.engine.quantsim")
    model = tmp_path / "inplace.py"
    model.write_text(INPLACE)
    code, out, err = run(capsys, "report", model, "--format", "json", "--batches", "4", "--probe-batches", "2")
    assert code == 0, err
    assert "changes its input in place" in err
    clean = tmp_path / "clean.py"
    clean.write_text(INPLACE.replace("x.mul_(2)", "x = x * 2"))
    code, out_clean, err_clean = run(
        capsys, "report", clean, "--format", "json", "--batches", "4", "--probe-batches", "2"
    )
    assert code == 0 and "in place" not in err_clean
    plan_db = json.loads(out)["measured"]["plan"]["sqnr_db"]
    clean_db = json.loads(out_clean)["measured"]["plan"]["sqnr_db"]
    assert plan_db == pytest.approx(clean_db, abs=0.5)


def test_user_errors_are_one_printable_line():
    from tui_quantreport.engine.export import write_atomic

    with pytest.raises(UserError) as info:
        write_atomic("/nonexistent\x1b]52;c;AAAA\x07/x", "x")
    assert "\x1b" not in str(info.value) and "\x07" not in str(info.value)
    assert os.linesep not in str(info.value)


RANKED = """
import os

import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    act = nn.Tanh() if os.environ.get("RANK") == "1" else nn.ReLU()
    return nn.Sequential(nn.Linear(4, 6), act, nn.Linear(6, 3)).eval()


def calibration_batches(rank=0, world_size=1):
    gen = torch.Generator().manual_seed(2)
    return [torch.randn(5, 4, generator=gen) for _ in range(4)][rank::world_size]
"""


def test_ranks_that_build_different_models_write_no_file(tmp_path):
    from statsfile_helpers import torchrun

    model = tmp_path / "ranked.py"
    model.write_text(RANKED)
    target = tmp_path / "mixed.qstats"
    done = torchrun("calibrate", str(model), "--output", str(target))
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("tui-quantreport:")]
    assert len(ours) == 1, done.stderr
    assert "rank 1 of 2 built a different model than rank 0" in ours[0] and "Tanh" in ours[0]
    assert not target.exists()


def test_a_fifo_as_settings_or_plan_is_refused_without_waiting(tmp_path, monkeypatch, capsys):
    from tui_quantreport.tui import user_settings

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = user_settings.settings_path()
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    saved, notice = user_settings.load()  # would block forever if it opened the FIFO to read
    assert notice and "not a regular file" in notice and saved.enabled is None
    plan = tmp_path / "plan.json"
    os.mkfifo(plan)
    code, _, err = run(capsys, "verify", TINY, "--plan", plan)
    one_line(code, err, "not a regular file")
