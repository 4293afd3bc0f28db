"""``benchmarks.run`` ends with one list of every performance target (no timing is asserted)."""

from __future__ import annotations

import re

from benchmarks.targets import TARGET_KEYS, Line, against


def _listed(text: str) -> list[str]:
    section = text.split("### Against the targets", 1)[1]
    return re.findall(r"^- \*\*(.+?)\*\* \(", section, re.M)


def test_nothing_measured_still_lists_every_target_with_its_command():
    lines = against(
        calibration={},
        quantsim={},
        merged=None,
        toggle=None,
        reeval=None,
        launch=None,
        device="cpu",
        why_not={"quantsim": "not run"},
        repeats=3,
    )
    assert [line.key for line in lines] == list(TARGET_KEYS)
    for line in lines:
        assert line.status.startswith("not measured"), line
        assert line.command.startswith(("python -m benchmarks.", 'python -c "from benchmarks')), line
    assert "no GPU was lent" in lines[-1].status


def _quantsim_row(name: str, k: int) -> dict:
    return {
        "name": name,
        "k": k,
        "plan": (0.1, 1.1),
        "plan_alone": (0.1, 1.5),
        "toggle": (0.1, 1.0),
        "toggle_alone": (0.1, 1.4),
        "local": (1.0, 30.0),
        "weights": (0.5, 10.0),
        "merged": True,
        "why_not": None,
        "schemes": 23,
        "unfused": None,
    }


def test_statuses_follow_the_targets():
    lines = {
        line.key: line
        for line in against(
            calibration={
                "drifting_mlp": {"ours_over_plain": 1.2, "ref_over_ours": 14.0},
                "convnet_per_tensor": {"ours_over_plain": 1.5, "ref_over_ours": 9.0},
                "tiny_transformer": {"ours_over_plain": 2.5, "ref_over_ours": 17.0, "unfused_over_plain": 2.3},
            },
            quantsim={"drifting_mlp": _quantsim_row("drifting_mlp", 4)},
            merged={"merged": 1.2, "one": 2.0, "same": "yes"},
            toggle={"total_ms": 160.0, "min_ms": 150.0, "max_ms": 170.0, "engine_ms": 90.0, "paint_ms": 50.0},
            reeval={"median_ms": 0.5},
            launch={"ok": True, "seconds": 2.5},
            device="cpu",
            why_not={},
            repeats=1,
        )
    }
    assert lines["plan eval: drifting_mlp"].status == "met"
    assert lines["local SQNR: drifting_mlp"].status == "not met" and "24" in lines["local SQNR: drifting_mlp"].target
    assert lines["what-if toggle: large_generated"].status == "not met"
    assert lines["calibration: large_generated (merged)"].status == "met"
    assert lines["calibration: drifting_mlp"].status == "met"
    assert lines["calibration: convnet_per_tensor"].status == "not met"
    assert lines["calibration: tiny_transformer"].status.startswith("floor")
    assert lines["reference/ours"].status == "not met"  # convnet 9.0x
    assert lines["app launch"].status == "not met"
    assert "--models drifting_mlp --probes 4" in lines["local SQNR: drifting_mlp"].command


def _line_of(
    key: str,
    calibration: dict | None = None,
    quantsim: dict | None = None,
    launch: dict | None = None,
) -> Line:
    """The line ``against`` gives the target ``key`` from these rows, nothing else measured."""
    lines = against(
        calibration=calibration or {},
        quantsim=quantsim or {},
        merged=None,
        toggle=None,
        reeval=None,
        launch=launch,
        device="cpu",
        why_not={},
        repeats=1,
    )
    return next(line for line in lines if line.key == key)


def _status_of(
    key: str, calibration: dict | None = None, quantsim: dict | None = None, launch: dict | None = None
) -> str:
    return _line_of(key, calibration, quantsim, launch).status


def _calibration_status(name: str, row: dict) -> str:
    return _status_of(f"calibration: {name}", calibration={name: row})


def test_calibration_floor_is_the_selection_measured_in_the_run():
    def status(rest):
        return _calibration_status("convnet_per_tensor", {"ours_over_plain": 1.5, "no_percentiles_over_plain": rest})

    assert status(1.2).startswith("floor") and "1.20x" in status(1.2)
    assert status(1.4).startswith("not met (without")  # the rest is over the target by itself: no floor
    assert status(None) == "not met"


def test_quick_run_lists_every_target(monkeypatch, capsys):
    """``benchmarks.run --quick --no-write`` wiring, with every measurement replaced by a canned one
    (the measurements themselves are benchmarks, not tests)."""
    from benchmarks import extras, merged_calibration, quantsim_bench, run

    def bench_case(key, device, repeats, n_batches, suffix):
        row = run.Row(key, key)
        row.plain_ms, row.ours_ms, row.ref_ms = 10.0, 12.0, 150.0
        return row

    monkeypatch.setattr(run, "bench_case", bench_case)
    monkeypatch.setattr(
        extras,
        "reevaluation",
        lambda device, runs: {
            "median_ms": 0.5,
            "cached_ms": 0.1,
            "first_ms": 9.0,
            "runs": runs,
            "modules": 1,
            "points": 1,
        },
    )
    monkeypatch.setattr(
        extras,
        "stats_memory",
        lambda device: [{"bytes": 10, "points": 1, "batches": 10}, {"bytes": 10, "points": 1, "batches": 100}],
    )
    monkeypatch.setattr(extras, "app_launch", lambda: {"ok": False, "reason": "not in a test"})
    monkeypatch.setattr(quantsim_bench, "bench", lambda name, repeats, k, **kwargs: _quantsim_row(name, k))
    monkeypatch.setattr(quantsim_bench, "section", lambda *args, **kwargs: "")
    monkeypatch.setattr(
        merged_calibration, "run", lambda argv: [("large_generated", 8, "8x32", 10.0, 20.0, 12.0, 7, True, 2.0, 1.2)]
    )
    assert run.main(["--quick", "--no-write", "--models", "drifting_mlp,tiny_transformer"]) == 0
    text = capsys.readouterr().out
    assert _listed(text) == list(TARGET_KEYS)
    assert "what-if toggle: large_generated** (<= 150 ms key to header): - — not measured: not run with --quick" in text
    assert "not in --models" in text  # the calibration samples left out say so
    assert text.count("`python -m benchmarks.") >= len(TARGET_KEYS) - 1


def test_local_sqnr_is_a_floor_only_where_the_weight_recipes_alone_pass_the_bound():
    def status(local: float, weights: float) -> str:
        row = _quantsim_row("drifting_mlp", 4) | {"local": (1.0, local), "weights": (0.5, weights)}
        return _status_of("local SQNR: drifting_mlp", quantsim={"drifting_mlp": row})

    assert status(20.0, 10.0) == "met"
    assert status(30.0, 10.0) == "not met"  # the weights leave room: the rest is over
    floor = status(60.0, 45.0)
    assert floor.startswith("floor") and "1 + 45.0" in floor


def test_a_transformer_floor_is_one_only_over_the_target():
    def status(unfused, rest=None):
        row = {"ours_over_plain": 2.5, "unfused_over_plain": unfused, "no_percentiles_over_plain": rest}
        return _calibration_status("tiny_transformer", row)

    # Over the target by itself, and the observation adds at most the 0.3 allowed on top: a floor.
    floor = status(2.3)
    assert floor.startswith("floor: the fused encoder path off") and "the observation adds 0.20" in floor
    assert status(1.49, rest=1.7).startswith("floor: the fused encoder path off")
    assert "the observation without the percentile adds 0.21" in status(1.49, rest=1.7)
    # Over by itself, but the observation adds more than the allowance on top of it: not met, with both.
    assert status(2.08) == (
        "not met; of it, the fused encoder path off (the layer's inner modules observed) is 2.08x plain by "
        "itself, measured here, and the observation adds 0.42 to it (<= 0.3 allowed)"
    )
    assert status(1.49, rest=2.5).startswith("not met; of it, the fused encoder path off")
    # The fused path off costs less than the target by itself: not a floor, and it says what it measured.
    assert status(0.85) == "not met (the fused encoder path off costs 0.85x plain by itself, measured here)"
    assert status(0.85, rest=1.1).startswith("floor: without the outlier detector")


def test_a_plan_evaluation_is_a_floor_only_over_the_unfused_pass_plus_the_allowance():
    def status(ratio, unfused):
        row = {**_quantsim_row("tiny_transformer", 4), "plan": (0.1, ratio), "unfused": unfused}
        return _status_of("plan eval: tiny_transformer", quantsim={"tiny_transformer": row})

    assert status(1.21, 1.24).startswith("floor") and "1.24x" in status(1.21, 1.24)
    assert status(1.40, 1.24).startswith("floor")  # the simulation adds 0.16: within the 0.2 allowed
    assert status(1.50, 1.24).startswith("not met; of it")  # adds 0.26: more than the target allows
    assert status(1.30, 1.15).startswith("not met; of it")  # the unfused pass alone is within the target
    assert status(1.30, None) == "not met"
    assert status(1.10, 1.24) == "met"


def test_the_first_launch_says_what_bounds_it_and_how_later_launches_do():
    def status(**launch):
        return _status_of("app launch", launch={"ok": True, **launch})

    assert status(seconds=1.5) == "met"
    bound = status(seconds=8.0, warm_seconds=1.8, torch_import_seconds=3.5)
    assert bound.startswith("not met the first time, and cannot be") and "3.50 s" in bound
    assert bound.endswith("later launches met")
    assert status(seconds=8.0, warm_seconds=2.5, torch_import_seconds=3.5).endswith("later launches not met")
    assert status(seconds=8.0, warm_seconds=1.8, torch_import_seconds=1.5) == "not met; later launches met"
    assert status(seconds=8.0) == "not met"


def test_large_generated_local_bound_is_judged_on_the_schemes_it_was_written_for():
    from benchmarks.targets import LOCAL_LARGE_SCHEMES

    def line(**extra):
        row = {**_quantsim_row("large_generated", 2), "local": (1.0, 26.0), **extra}
        return _line_of("local SQNR: large_generated", quantsim={"large_generated": row})

    measured = line(local_subset=(0.1, 3.5))
    assert measured.status == "met" and "with the 4 int8 schemes" in measured.target
    assert (
        "3.5 passes with " + ", ".join(LOCAL_LARGE_SCHEMES) in measured.value
        and "26.0 passes with all 23" in measured.value
    )
    assert line(local_subset=(0.1, 5.4)).status == "not met"  # all schemes' weights are no floor for four
    old = line(weights=(0.5, 2.0))  # a row measured without the subset: judged on all schemes, as before
    assert old.status == "not met" and "written for 4 schemes" in old.target


def test_a_reference_ratio_just_under_the_target_is_not_shown_rounded_up_to_it():
    rows = {"resnet_style": {"ours_over_plain": 1.8, "ref_over_ours": 9.98}, "drifting_mlp": {"ref_over_ours": 12.96}}
    line = _line_of("reference/ours", calibration=rows)
    assert line.value == "resnet_style 9.98x, drifting_mlp 13.0x" and line.status == "not met"
