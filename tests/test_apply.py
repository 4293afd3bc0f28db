"""Apply the plan (issue 8): the exported torchao / PT2E / torch.ao files run, quantize
exactly the planned modules, and reach the predicted SQNR; bad input is one line, exit 2.

Exported files are run in fresh interpreters (subprocess), against the samples'
own build_model(). The measured-error engine (quantsim) makes the plans.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sample_models import SAMPLES as ALL_SAMPLES
from tui_quantreport.cli import main
from tui_quantreport.engine.errors import CalibrationCancelled
from tui_quantreport.engine.pipeline import load_subject, verify_plan
from tui_quantreport.engine.plan import Plan

pytest.importorskip("torchao", reason="the exports run torchao")
try:
    import tui_quantreport.engine.quantsim  # noqa: F401 - the measured-error engine makes the plans and predictions

    HAVE_QUANTSIM = True
except ImportError:
    HAVE_QUANTSIM = False
needs_quantsim = pytest.mark.skipif(
    not HAVE_QUANTSIM, reason="predictions come from the measured-error engine (quantsim)"
)


ROOT = Path(__file__).resolve().parent.parent
#: Every bundled eager sample (all have Linear and/or Conv modules). pt2e_prepared is an exported
#: graph: config and verify refuse it in one line (tests/test_pt2e.py).
SAMPLES = tuple(name for name in ALL_SAMPLES if name != "pt2e_prepared")
PROBES = {"large_generated": 1}  # 2,000 modules: one probe batch keeps the test short
GAP_DB = 1.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def _plan_file(sample: str, directory: Path) -> Path:
    """The recommended plan (calibrated, with its predicted SQNR), saved as the app saves it."""
    path = directory / f"{sample}.plan.json"
    if sample == "large_generated" or not HAVE_QUANTSIM:
        # large_generated: the recommended plan measures 602 modules x 4 schemes, too slow here.
        from tui_quantreport.engine.modules import ModelCatalog
        from tui_quantreport.engine.spec import load_model

        catalog = ModelCatalog.build(load_model(sample).model)
        modules = {
            f: "dynamic" if i % 3 else "weight_only"
            for i, f in enumerate(f for f, m in catalog.modules.items() if m.is_weighted and m.class_name == "Linear")
        }
        plan = Plan(modules, catalog.class_name, catalog.fingerprint, "x86", probe_batches=1)
    else:
        from tui_quantreport.engine.pipeline import recommended_plan_file
        from tui_quantreport.engine.spec import load_model

        plan = recommended_plan_file(load_model(sample), target="torchao-cpu")
    path.write_text(json.dumps(plan.to_json_data()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Per sample: plan file, torchao export (written by the CLI), in-process verification."""
    directory = tmp_path_factory.mktemp("apply")
    results = {}
    for sample in SAMPLES:
        plan_path = _plan_file(sample, directory)
        output = directory / f"{sample}_torchao.py"
        assert main(["config", sample, "--plan", str(plan_path), "--target", "torchao", "--output", str(output)]) == 0
        subject = load_subject(sample, str(plan_path))
        result = verify_plan(subject, "torchao", probe_batches=PROBES.get(sample, 4))
        results[sample] = (subject, output, result)
    return results


DRIVER = textwrap.dedent("""
    import copy, json, math, runpy, sys, warnings
    warnings.simplefilter("ignore")
    import torch
    out = {}
    for path, probes in json.loads(sys.argv[1]):
        ns = runpy.run_path(path)  # a fresh import of the exported file (not its __main__ block)
        model = ns["build_model"]().eval()
        reference = copy.deepcopy(model)
        ns["quantize"](model)
        types = {name: type(m.weight).__module__ + "." + type(m.weight).__name__
                 for name, m in model.named_modules() if isinstance(getattr(m, "weight", None), torch.Tensor)}
        signal = noise = 0.0
        with torch.no_grad():
            for batch in list(ns["calibration_batches"]())[:probes]:
                call = (lambda f: f(**batch)) if isinstance(batch, dict) else (lambda f: f(*batch)) if isinstance(batch, (tuple, list)) else (lambda f: f(batch))
                y, q = call(reference), call(model)
                signal += float((y.double() ** 2).sum()); noise += float(((y.double() - q.double()) ** 2).sum())
        out[path] = {"types": types, "sqnr": 10 * math.log10(signal / noise)}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def fresh_runs(exported, tmp_path_factory):
    """Every sample's exported torchao file, run in one fresh interpreter."""
    directory = tmp_path_factory.mktemp("driver")
    driver = directory / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    jobs = [[str(output), PROBES.get(sample, 4)] for sample, (_, output, _) in exported.items()]
    done = _run([str(driver), json.dumps(jobs)], cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("sample", SAMPLES)
def test_torchao_export_quantizes_exactly_the_planned_modules_in_a_fresh_interpreter(sample, exported, fresh_runs):
    subject, output, result = exported[sample]
    run = fresh_runs[str(output)]
    changed = {c.fqn for c in result.changes}
    expected = set(subject.plan.quantized) - changed
    quantized = {name for name, kind in run["types"].items() if kind.startswith("torchao.")}
    assert quantized == expected
    assert all(run["types"][name].endswith(".Int8Tensor") for name in quantized)
    for name in set(run["types"]) - expected:  # everything else stays float
        assert run["types"][name] in ("torch.nn.parameter.Parameter", "torch.Tensor"), name
    assert quantized, "each sample has a Linear the torchao export quantizes"
    # the fresh run measures what the in-process verification measured
    assert run["sqnr"] == pytest.approx(result.achieved_db, abs=0.05)


@needs_quantsim
@pytest.mark.parametrize("sample", SAMPLES)
def test_torchao_achieved_sqnr_is_within_1_db_of_predicted(sample, exported):
    _, _, result = exported[sample]
    assert result.achieved_db is not None and result.export_predicted_db is not None
    assert abs(result.achieved_db - result.export_predicted_db) <= GAP_DB, result.to_text()
    assert not [f for f in result.findings if f.kind == "unplanned"]
    assert {f.module for f in result.findings if f.kind == "not_quantized"} == {c.fqn for c in result.changes}


@needs_quantsim
def test_figures_for_the_readme(exported, capsys):
    """Not an assertion: prints the per-sample figures the README states (pytest -s)."""
    with capsys.disabled():
        for sample, (_, _, r) in exported.items():
            plan = f"{r.predicted_db:.2f}" if r.predicted_db is not None else "n/a"
            print(
                f"| {sample} | {plan} | {r.export_predicted_db:.2f} | {r.achieved_db:.2f} | "
                f"{len(r.quantized)} of {len(r.weight_types)} |"
            )


@needs_quantsim
def test_conv_modules_are_findings_with_their_cause(exported, tmp_path):
    subject, _, result = exported["showcase"]
    convs = [f for f, m in subject.catalog.modules.items() if m.class_name == "Conv2d"]
    # The torchao-cpu plan keeps the Conv2d modules float (torchao 0.18 leaves them float): nothing to find.
    assert convs and all(subject.plan.modules[f] == "float" for f in convs)
    assert not [f for f in result.findings if f.kind == "not_quantized"]
    # A plan that quantizes them anyway (edited, or made for another target): each is a finding with its cause.
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(subject.plan.with_schemes(dict.fromkeys(convs, "weight_only")).to_json_data()))
    edited = verify_plan(load_subject("showcase", str(plan_path)), probe_batches=1)
    found = [f for f in edited.findings if f.kind == "not_quantized"]
    assert {f.module for f in found} == set(convs) and all("Conv2d" in f.message for f in found)
    assert "not quantized" in edited.to_text()


@needs_quantsim
def test_torchao_json_and_safetensors_give_the_same_config(exported):
    import torch
    from torchao.quantization import quantize_

    from tui_quantreport.engine.apply.torchao_target import load_config_json
    from tui_quantreport.engine.core.recipes import torchao_config

    subject, output, _ = exported["unbalanced_equalization"]
    json_path = output.with_suffix(".json")
    data = json.loads(json_path.read_text())
    assert data["format"] == "tui-quantreport.torchao-config/1" and data["tensors"], "a static module has scales"
    assert not output.with_suffix(".pkl").exists()
    from safetensors.torch import load_file

    assert load_file(str(output.with_suffix(".safetensors")))  # plain tensors, no pickle
    # The .py file's data, read as literals (generated text is never executed in the test process).
    tree = ast.parse(output.read_text())
    (entries,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["ENTRIES"]
    ]
    from_py, from_json = torchao_config(entries), load_config_json(str(json_path))
    assert list(from_py.fqn_to_config) == list(from_json.fqn_to_config)
    import copy

    a, b = copy.deepcopy(subject.model), copy.deepcopy(subject.model)
    quantize_(a, from_py, filter_fn=None)
    quantize_(b, from_json, filter_fn=None)
    batch = subject.batches(1)[0]
    with torch.no_grad():
        assert torch.equal(a(batch), b(batch))


def test_torchao_file_runs_as_a_script(exported):
    _, output, result = exported["drifting_mlp"]
    done = _run([str(output)], cwd=output.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(result.quantized)} modules quantized by torchao" in done.stdout
    header = output.read_text().splitlines()[:6]
    assert all(line.startswith("#") for line in header)
    text = "\n".join(header)
    assert (
        "drifting_mlp" in text
        and "predicted end-to-end SQNR" in text
        and "tui-quantreport 0.1.0" in text
        and "UTC" in text
    )


@pytest.mark.parametrize(
    "sample", ["drifting_mlp", "unbalanced_equalization", "tiny_transformer", "convnet_per_tensor"]
)
def test_pt2e_snippet_runs_end_to_end(sample, exported, tmp_path):
    subject, _, _ = exported[sample]
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(subject.plan.to_json_data()))
    output = tmp_path / f"{sample}_pt2e.py"
    assert main(["config", sample, "--plan", str(plan_path), "--target", "pt2e", "--output", str(output)]) == 0
    text = output.read_text()
    assert "prepare_pt2e" in text and "convert_pt2e" in text and "X86InductorQuantizer" in text
    for fqn in subject.plan.kept_float:
        assert repr(fqn) in text
    done = _run([str(output)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "quantize/dequantize nodes" in done.stdout


@needs_quantsim
def test_pt2e_names_the_modules_it_changes_when_the_plan_mixes_static_and_dynamic(exported, tmp_path):
    subject, _, _ = exported["unbalanced_equalization"]
    static = [f for f, s in subject.plan.quantized.items() if s.startswith("static")]
    assert len(static) >= 2, "the torchao-cpu plan is static: one module made dynamic mixes them"
    plan = subject.plan.with_schemes({static[0]: "dynamic"})
    schemes = set(plan.quantized.values())
    assert "dynamic" in schemes and schemes & {"static_per_tensor", "static_per_channel"}
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan.to_json_data()))
    result = verify_plan(load_subject("unbalanced_equalization", str(plan_path)), "pt2e")
    mixed = [c for c in result.changes if "mix static and dynamic" in c.reason]
    assert mixed
    output = tmp_path / "pt2e.py"
    main(["config", "unbalanced_equalization", "--plan", str(plan_path), "--target", "pt2e", "--output", str(output)])
    text = output.read_text()
    assert "cannot mix static and dynamic" in text and all(c.fqn in text for c in mixed)
    assert result.achieved_db is not None and set(result.quantized) == set(plan.quantized)


def test_pt2e_on_a_model_torch_export_cannot_trace_is_one_line(exported, tmp_path, capsys):
    subject, _, _ = exported["untraceable"]
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(subject.plan.to_json_data()))
    assert main(["verify", "untraceable", "--plan", str(plan_path), "--target", "pt2e"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pt2e export failed to apply" in err[0]


def test_qconfig_mapping_snippet_runs(exported, tmp_path):
    subject, _, _ = exported["drifting_mlp"]
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(subject.plan.to_json_data()))
    output = tmp_path / "qconfig.py"
    assert (
        main(
            ["config", "drifting_mlp", "--plan", str(plan_path), "--target", "qconfig_mapping", "--output", str(output)]
        )
        == 0
    )
    text = output.read_text()
    assert "QConfigMapping" in text and "per_channel_dynamic_qconfig" in text
    done = _run([str(output)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DynamicQuantizedLinear" in done.stdout or "QuantizedLinear" in done.stdout


# Bad input: one line, exit 2, no partial file.


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory) -> Path:
    return _plan_file("unbalanced_equalization", tmp_path_factory.mktemp("small"))


def _torchao_config(plan, output) -> list[str]:
    """``config unbalanced_equalization --plan PLAN --target torchao --output OUTPUT``."""
    return ["config", "unbalanced_equalization", "--plan", str(plan), "--target", "torchao", "--output", str(output)]


def _one_line_exit_2(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tui-quantreport: error: "), err
    return err[0]


def test_plan_for_another_model_is_refused(small_plan, tmp_path, capsys):
    output = tmp_path / "out.py"
    line = _one_line_exit_2(
        ["config", "drifting_mlp", "--plan", str(small_plan), "--target", "torchao", "--output", str(output)], capsys
    )
    assert "fingerprint" in line and "TabularRegressor" in line
    assert list(tmp_path.iterdir()) == []


def test_plan_naming_modules_the_model_lacks_is_refused(small_plan, tmp_path, capsys):
    data = json.loads(small_plan.read_text())
    data["modules"]["decoder.fc9"] = {"scheme": "dynamic", "activation": None}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(data))
    output = tmp_path / "out.py"
    line = _one_line_exit_2(
        ["config", "unbalanced_equalization", "--plan", str(plan), "--target", "torchao", "--output", str(output)],
        capsys,
    )
    assert "decoder.fc9" in line
    assert not output.exists() and not output.with_suffix(".json").exists()


@pytest.mark.parametrize("problem", ["no_directory", "is_directory", "read_only"])
def test_unwritable_output_is_refused(problem, small_plan, tmp_path, capsys):
    if problem == "no_directory":
        output = tmp_path / "missing" / "out.py"
    elif problem == "is_directory":
        output = tmp_path / "out.py"
        output.mkdir()
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        output = locked / "out.py"
    try:
        line = _one_line_exit_2(_torchao_config(small_plan, output), capsys)
        assert "cannot write" in line
        parent = output.parent
        if parent.exists():
            assert [p.name for p in parent.iterdir() if p.name != "out.py"] == []
    finally:
        if problem == "read_only":
            (tmp_path / "locked").chmod(0o700)


def test_sidecar_write_failure_leaves_no_partial_file(small_plan, tmp_path, capsys):
    output = tmp_path / "out.py"
    (tmp_path / "out.safetensors").mkdir()  # the side-car cannot be written
    _one_line_exit_2(_torchao_config(small_plan, output), capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": "other"}',
        '{"format": "tui-quantreport.plan/1", "model": {"class": "X", "fingerprint": "0"}, "modules": {"a": {"scheme": "int4"}}}',
        '{"format": "tui-quantreport.plan/1", "model": {"class": "X", "fingerprint": "0"}, "modules": {}, "probe_batches": -1}',
    ],
)
def test_bad_plan_file_is_one_line(content, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(content)
    _one_line_exit_2(["verify", "unbalanced_equalization", "--plan", str(plan)], capsys)


@pytest.mark.parametrize("version", [None, "0.17.2"])
def test_missing_or_old_torchao_is_one_line(version, small_plan, tmp_path, capsys, monkeypatch):
    from tui_quantreport.engine.core import library

    monkeypatch.setattr(library, "torchao_version", lambda: version)
    output = tmp_path / "out.py"
    line = _one_line_exit_2(_torchao_config(small_plan, output), capsys)
    assert "torchao" in line and ">=0.18" in line
    assert not output.exists()


def test_torchao_is_imported_only_for_an_export_or_verify():
    code = (
        "import sys, tui_quantreport.cli, tui_quantreport.engine.apply.api, tui_quantreport.engine.plan; "
        "print('torchao' in sys.modules)"
    )
    done = _run(["-c", code], cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr


def test_verify_reports_progress_and_cancels(small_plan):
    subject = load_subject("unbalanced_equalization", str(small_plan))
    seen = []
    result = verify_plan(subject, "torchao", probe_batches=2, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3, 3) and result.achieved_db is not None and math.isfinite(result.achieved_db)
    with pytest.raises(CalibrationCancelled):
        verify_plan(subject, "torchao", should_cancel=lambda: True)


def test_verify_json_output(small_plan, capsys):
    assert main(["verify", "unbalanced_equalization", "--plan", str(small_plan), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["target"] == "torchao-cpu" and data["achieved_sqnr_db"] is not None
    assert set(data["weight_types"]) == set(json.loads(small_plan.read_text())["modules"]) - {
        f for f, e in json.loads(small_plan.read_text())["modules"].items() if e["scheme"] == "float"
    }
