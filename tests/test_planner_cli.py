"""``report --budget-bpw / --budget-mb / --min-sqnr``: the budgeted plan file, the frontier in the JSON,
the warning at the top; ``config`` and ``verify`` take the plan; bad budgets are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from cli_helpers import one_line, run  # noqa: E402

from tui_quantreport.engine.plan import Plan  # noqa: E402

MODEL = str(Path(__file__).parent / "models" / "tiny_llama.py")
FAST = ("--batches", "2", "--probe-batches", "2")


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory):
    """One report with a bpw budget and an unreachable warning threshold: (json data, plan path, stderr)."""
    out = tmp_path_factory.mktemp("planner")
    plan = out / "plan.json"
    report = out / "report.json"
    from tui_quantreport.cli import main

    code = main(
        [
            "report",
            MODEL,
            *FAST,
            "--budget-bpw",
            "12",
            "--frontier-points",
            "2",
            "--warn-below",
            "90",
            "--format",
            "json",
            "--output",
            str(report),
            "--plan-out",
            str(plan),
        ]
    )
    assert code == 0
    return json.loads(report.read_text()), plan, out


def test_the_budgeted_plan_and_frontier_are_in_the_json(budgeted):
    data, plan_path, _ = budgeted
    planner = data["measured"]["planner"]
    assert planner["budget"] == {"kind": "bpw", "value": 12.0}
    chosen = planner["plan"]
    assert chosen["bits_per_weight"] <= 12.0
    assert chosen["simulated_sqnr_db"] is not None and chosen["predicted_sqnr_db"] is not None
    assert any(p["uniform"] for p in planner["frontier"]) and len(planner["frontier"]) >= 3
    assert planner["fused_constraint"]["cost_db"] is not None
    assert planner["cache"]["fallback"] is None and planner["cache"]["verified"] is True
    qkv = next(u for u in planner["units"] if u["name"].startswith("model.layers.0.self_attn.q_proj"))
    assert len(qkv["members"]) == 3 and qkv["fused_because"] == "read the same input"
    # The plan file is the budgeted plan, in the plan format.
    plan = Plan.load(plan_path)
    assert dict(plan.modules) == chosen["modules"]
    for fqn in qkv["members"]:
        assert plan.modules[fqn] == qkv["scheme"]


def test_a_low_end_to_end_sqnr_is_warned_about_at_the_top(budgeted):
    data, _, _ = budgeted
    warning = data["measured"]["warning"]
    assert warning.startswith("warning: the budgeted plan's end-to-end SQNR is ")
    assert "below 90 dB" in warning and "the units that cost the most" in warning


def test_verify_and_config_take_the_budgeted_plan(budgeted, capsys):
    data, plan_path, out = budgeted
    code, stdout, err = run(capsys, "verify", MODEL, "--plan", plan_path, "--format", "json", *FAST[2:])
    assert code == 0, err
    verified = json.loads(stdout)
    # The simulated plan equals the torchao-applied model within 0.1 dB (CPU-runnable int8 schemes).
    assert verified["achieved_sqnr_db"] == pytest.approx(
        data["measured"]["planner"]["plan"]["simulated_sqnr_db"], abs=0.1
    )
    config = out / "config.py"
    code, _, err = run(capsys, "config", MODEL, "--plan", plan_path, "--target", "torchao", "--output", config)
    assert code == 0, err
    assert "FqnToConfig" in config.read_text()


def test_markdown_report_has_the_warning_first_and_the_frontier(capsys, tmp_path):
    code, out, err = run(
        capsys, "report", MODEL, *FAST, "--min-sqnr", "15", "--frontier-points", "0", "--warn-below", "90",
        "--format", "markdown",
    )  # fmt: skip
    assert code == 0, err
    head = out.split("| Detector |")[0]
    assert "> **Warning: the budgeted plan's end-to-end SQNR is" in head
    assert "## Plan under a budget" in out and "### Frontier: end-to-end SQNR against size" in out
    assert "▶" in out and "uniform" in out


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (("--budget-bpw", "0"), ("--budget-bpw", "above 0")),
        (("--budget-bpw", "nan"), ("--budget-bpw", "finite")),
        (("--budget-mb", "lots"), ("--budget-mb", "'lots'")),
        (("--min-sqnr", "inf"), ("--min-sqnr", "finite")),
        (("--budget-bpw", "4", "--budget-mb", "2"), ("--budget-mb", "--budget-bpw")),
        (("--budget-bpw", "4", "--probe-batches", "0"), ("--budget-bpw needs measurement",)),
        (("--sensitivity-cache-mb", "-1", "--budget-bpw", "9"), ("--sensitivity-cache-mb", "0 or more")),
    ],
)
def test_bad_budgets_are_one_line(capsys, argv, fragments):
    code, _, err = run(capsys, "report", MODEL, *argv)
    one_line(code, err, *fragments)


def test_a_budget_below_the_smallest_plan_is_one_line(capsys):
    code, _, err = run(capsys, "report", MODEL, *FAST, "--budget-bpw", "2")
    one_line(code, err, "budget of 2 bits per weight is below the smallest plan")
