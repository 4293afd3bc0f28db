"""The performance targets and the one "Against the targets" list ``benchmarks.run`` ends with.

Every target of the performance work is a line, whatever was measured in the run: its measured
value, ``met`` / ``not met`` / ``floor`` (over the target by a cost measured in the same run and
documented in docs/performance.md) or ``not measured`` (with why: ``--quick``, ``--models``, no GPU),
and the command that reproduces it. Reported, never asserted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The performance targets (CPU, 1 thread), in the units the benchmarks report.
PLAN_EVAL = 1.2  # plan evaluation / plain forward over the probes
TOGGLE_MS = 150.0  # what-if toggle, key to header, on the 2,028-module sample
LOCAL_LARGE = 4.0  # local SQNR passes on large_generated (otherwise 1 + the number of schemes)
#: The schemes the large_generated bound was written for (the issue's prototype: "local, 4 schemes"), the
#: four int8 schemes; large_generated's local pass is also measured with these alone.
LOCAL_LARGE_SCHEMES = ("static_per_tensor", "static_per_channel", "dynamic", "weight_only")
CALIBRATION = 1.3  # ours / plain
REFERENCE = 10.0  # reference / ours
REEVAL_MS = 20.0  # re-evaluation after a threshold change
LAUNCH_S = 2.0  # app launch to a populated tree

#: The samples of the measured-error targets (quantsim_bench) and their probe counts.
QUANTSIM_SAMPLES = (
    ("drifting_mlp", 4),
    ("showcase", 4),
    ("outlier_channels", 4),
    ("tiny_transformer", 4),
    ("convnet_per_tensor", 4),
    ("large_generated", 2),
)
#: Calibration samples: the MLP and conv samples (<= 1.3), the transformers (a documented floor).
CALIBRATION_PLAIN = ("drifting_mlp", "convnet_per_tensor")
CALIBRATION_TRANSFORMERS = ("tiny_transformer", "hf_llama_decoder")

#: Every target's key, in the order of the list (a test checks that the list has them all).
TARGET_KEYS = (
    *(f"plan eval: {name}" for name, _ in QUANTSIM_SAMPLES),
    "what-if toggle: large_generated",
    *(f"local SQNR: {name}" for name, _ in QUANTSIM_SAMPLES),
    "calibration: large_generated (merged)",
    *(f"calibration: {name}" for name in CALIBRATION_PLAIN),
    *(f"calibration: {name}" for name in CALIBRATION_TRANSFORMERS),
    "reference/ours",
    "re-evaluation",
    "app launch",
    "GPU rows",
)


@dataclass
class Line:
    key: str
    target: str
    value: str
    status: str
    command: str

    def render(self) -> str:
        return f"- **{self.key}** ({self.target}): {self.value} — {self.status}. `{self.command}`"


def quantsim_command(name: str, k: int, repeats: int) -> str:
    return (
        f"python -m benchmarks.quantsim_bench --models {name} --probes {k} --threads 1 --repeats {repeats} "
        "--no-floors --no-advice --no-write"
    )


def _status(value: float, target: float) -> str:
    return "met" if value <= target else "not met"


def _calibration_status(ratio: float, row: dict[str, Any], transformer: bool) -> str:
    """met / not met / floor for one calibration row. A floor is a cost measured in the run that our
    calibration cannot avoid, with what it adds on top within the target's allowance: the exact
    percentile's selection where our calibration without it is within the target; for a transformer,
    the fused encoder path off (over the target by itself) where the observation adds at most the
    target's 0.3 on top of it (without the percentile where that was measured)."""
    if ratio <= CALIBRATION:
        return "met"
    unfused = row.get("unfused_over_plain")
    rest = row.get("no_percentiles_over_plain")
    without = (
        f"without the outlier detector's exact per-channel 97.5th percentile (every other statistic "
        f"kept) it is {rest:.2f}x plain, measured here"
        if rest is not None
        else None
    )
    if rest is not None and rest <= CALIBRATION:
        return (
            f"floor: {without}; the selection, at its measured fastest (benchmarks/README.md, "
            "calibration floors), is the rest"
        )
    if transformer and unfused is not None and unfused > CALIBRATION:
        cost = f"the fused encoder path off (the layer's inner modules observed) is {unfused:.2f}x plain by itself, measured here"
        added = (rest if rest is not None else ratio) - unfused
        observation = "the observation without the percentile" if rest is not None else "the observation"
        allowance = CALIBRATION - 1.0
        if added <= allowance:
            return f"floor: {cost}, and {observation} adds {max(added, 0.0):.2f} to it (<= {allowance:.1f})"
        return f"not met; of it, {cost}, and {observation} adds {added:.2f} to it (<= {allowance:.1f} allowed)"
    if without is not None:
        return f"not met ({without})"
    if not transformer:
        return "not met"
    if unfused is None:
        return "not met (no floor measured for this model)"
    return f"not met (the fused encoder path off costs {unfused:.2f}x plain by itself, measured here)"


def _plan_eval_floor(ratio: float, unfused: float | None) -> str:
    """A plan evaluation over the target: a floor where the plain pass with the fused attention path
    off (the simulation must see the inner Linear modules) is over the target by itself and the
    simulation adds no more than the target allows on top of it; else not met, with that cost."""
    if unfused is None or unfused <= 1.0:
        return "not met"
    cost = f"the fused attention path off costs {unfused:.2f}x plain by itself (measured here; the simulation must see the inner Linear modules)"
    if unfused > PLAN_EVAL and ratio - unfused <= PLAN_EVAL - 1.0:
        return (
            f"floor: {cost}, and the simulation adds {max(ratio - unfused, 0.0):.2f} to it (<= {PLAN_EVAL - 1.0:.1f})"
        )
    return f"not met; of it, {cost}"


def against(
    *,
    calibration: dict[str, Any],
    quantsim: dict[str, dict[str, Any]],
    merged: dict[str, Any] | None,
    toggle: dict[str, Any] | None,
    reeval: dict[str, Any] | None,
    launch: dict[str, Any] | None,
    device: str,
    why_not: dict[str, str],
    repeats: int,
) -> list[Line]:
    """One line per target key. ``calibration``: the main table's rows by key (``ours_over_plain``,
    ``ref_over_ours``, ``unfused_over_plain``, ``no_percentiles_over_plain``); ``quantsim``: quantsim_bench rows by sample;
    ``merged``: merged_calibration's large_generated row; ``why_not``: why a part was not run."""
    lines: list[Line] = []
    missing = why_not.get

    for name, k in QUANTSIM_SAMPLES:
        r = quantsim.get(name)
        command = quantsim_command(name, r["k"] if r else k, repeats)
        if r is None:
            lines.append(Line(f"plan eval: {name}", f"<= {PLAN_EVAL}x plain", "-", _not(missing("quantsim")), command))
            continue
        ratio = r["plan"][1]
        status = _status(ratio, PLAN_EVAL)
        value = f"{ratio:.2f}x (one probe at a time {r['plan_alone'][1]:.2f}x; probes merged: {'yes' if r['merged'] else 'no'})"
        if status == "not met":
            status = _plan_eval_floor(ratio, r.get("unfused"))
        lines.append(Line(f"plan eval: {name}", f"<= {PLAN_EVAL}x plain", value, status, command))

    command = "python -m benchmarks.app_toggle --model large_generated --batches 8 --toggles 6"
    if toggle is None:
        lines.append(
            Line(
                "what-if toggle: large_generated",
                f"<= {TOGGLE_MS:g} ms key to header",
                "-",
                _not(missing("toggle")),
                command,
            )
        )
    else:
        value = (
            f"{toggle['total_ms']:.0f} ms median (min {toggle['min_ms']:.0f}, max {toggle['max_ms']:.0f}; engine "
            f"{toggle['engine_ms']:.0f} ms, paint {toggle['paint_ms']:.0f} ms)"
        )
        status = _status(toggle["total_ms"], TOGGLE_MS)
        plain = toggle.get("plain_forward_ms")
        if status == "not met" and plain is not None:
            floor = plain + toggle["paint_ms"]
            status = (
                f"floor: the float model's plain forward over the same probes alone takes {plain:.0f} ms here "
                f"(any new plan's evaluation runs one), {floor:.0f} ms with the paint"
                if floor > TOGGLE_MS
                else f"not met (the plain forward over the same probes alone: {plain:.0f} ms)"
            )
        lines.append(
            Line("what-if toggle: large_generated", f"<= {TOGGLE_MS:g} ms key to header", value, status, command)
        )

    for name, k in QUANTSIM_SAMPLES:
        r = quantsim.get(name)
        command = quantsim_command(name, r["k"] if r else k, repeats)
        if r is None:
            target = f"<= {LOCAL_LARGE:g} passes" if name == "large_generated" else "<= 1 + schemes passes"
            lines.append(Line(f"local SQNR: {name}", target, "-", _not(missing("quantsim")), command))
            continue
        lines.append(_local_line(name, r, command))

    lines += _calibration_lines(calibration, merged, missing)
    lines += _other_lines(reeval, launch, device, missing)
    return lines


def _local_line(name: str, r: dict[str, Any], command: str) -> Line:
    """A sample's local-SQNR target: <= 1 + its schemes passes (all registered schemes measured), or on
    large_generated <= 4, judged on the four int8 schemes it was written for where the run measured them."""
    local = r["local"][1]
    value = f"{local:.1f} passes"
    subset = r.get("local_subset")
    if name == "large_generated":
        bound = LOCAL_LARGE
        if subset is not None:
            target = f"<= {LOCAL_LARGE:g} passes with the {len(LOCAL_LARGE_SCHEMES)} int8 schemes it was written for"
            status = _status(subset[1], bound)
            value = f"{subset[1]:.1f} passes with {', '.join(LOCAL_LARGE_SCHEMES)}; {value} with all {r['schemes']}"
        else:
            target = f"<= {LOCAL_LARGE:g} passes (written for 4 schemes; all {r['schemes']} measured)"
            status = _status(local, bound)
    else:
        bound = 1.0 + r["schemes"]
        target = f"<= 1 + {r['schemes']} = {bound:g} passes"
        status = _status(local, bound)
    if "weights" in r:
        weights = r["weights"][1]
        value += f" (of which the weights, once per model: {weights:.1f}; the rest {local - weights:.1f})"
        if status == "not met" and subset is None and 1.0 + weights > bound:
            status = (
                f"floor: the float pass and the schemes' weight recipes (torchao's arithmetic, exact; once per "
                f"model) are 1 + {weights:.1f} passes by themselves, measured here (benchmarks/README.md)"
            )
    return Line(f"local SQNR: {name}", target, value, status, command)


def _calibration_lines(calibration: dict[str, Any], merged: dict[str, Any] | None, missing: Any) -> list[Line]:
    lines: list[Line] = []
    command = "python -m benchmarks.merged_calibration --models large_generated --no-write"
    if merged is None:
        lines.append(
            Line(
                "calibration: large_generated (merged)",
                f"<= {CALIBRATION}x plain",
                "-",
                _not(missing("merged")),
                command,
            )
        )
    else:
        value = (
            f"{merged['merged']:.2f}x merged ({merged['one']:.2f}x one batch at a time; same stats: {merged['same']})"
        )
        lines.append(
            Line(
                "calibration: large_generated (merged)",
                f"<= {CALIBRATION}x plain",
                value,
                _status(merged["merged"], CALIBRATION),
                command,
            )
        )
    for name in (*CALIBRATION_PLAIN, *CALIBRATION_TRANSFORMERS):
        row = calibration.get(name)
        command = f"python -m benchmarks.run --models {name} --skip-extras --no-write"
        transformer = name in CALIBRATION_TRANSFORMERS
        target = f"a documented floor (<= {CALIBRATION}x elsewhere)" if transformer else f"<= {CALIBRATION}x plain"
        if row is None or row.get("ours_over_plain") is None:
            why = (row or {}).get("failure") or missing("calibration:" + name) or missing("calibration")
            lines.append(Line(f"calibration: {name}", target, "-", _not(why), command))
            continue
        ratio = row["ours_over_plain"]
        status = _calibration_status(ratio, row, transformer)
        lines.append(Line(f"calibration: {name}", target, f"{ratio:.2f}x", status, command))

    ref = {k: v["ref_over_ours"] for k, v in calibration.items() if v.get("ref_over_ours") is not None}
    command = "python -m benchmarks.run --skip-extras --no-write"
    if not ref:
        lines.append(Line("reference/ours", f">= {REFERENCE:g}x", "-", _not(missing("calibration")), command))
    else:
        # One decimal, or two where one would round a ratio under the target up to it (9.98x, not 10.0x).
        value = ", ".join(f"{k} {v:.2f}x" if v < REFERENCE <= round(v, 1) else f"{k} {v:.1f}x" for k, v in ref.items())
        status = _status(-min(ref.values()), -REFERENCE)
        lines.append(Line("reference/ours", f">= {REFERENCE:g}x where the reference runs", value, status, command))

    return lines


def _launch_status(launch: dict[str, Any]) -> str:
    """met / not met, with what bounds the first launch of a model: ``import torch`` alone in a fresh
    interpreter (the model is built by torch code), and whether later launches (the kept tree shown
    before torch loads) are within the target."""
    if launch["seconds"] <= LAUNCH_S:
        return "met"
    torch_import, warm = launch.get("torch_import_seconds"), launch.get("warm_seconds")
    later = "" if warm is None else ("; later launches met" if warm <= LAUNCH_S else "; later launches not met")
    if torch_import is not None and torch_import > LAUNCH_S:
        return (
            f"not met the first time, and cannot be on this machine: a fresh interpreter's `import torch` alone "
            f"takes {torch_import:.2f} s, measured here (the model is built by torch code){later}"
        )
    return f"not met{later}"


def _other_lines(reeval: dict[str, Any] | None, launch: dict[str, Any] | None, device: str, missing: Any) -> list[Line]:
    lines: list[Line] = []
    command = "python -m benchmarks.run --models drifting_mlp"
    if reeval is None:
        lines.append(Line("re-evaluation", f"<= {REEVAL_MS:g} ms", "-", _not(missing("extras")), command))
    else:
        value = f"{reeval['median_ms']:.2f} ms (large_generated)"
        lines.append(
            Line("re-evaluation", f"<= {REEVAL_MS:g} ms", value, _status(reeval["median_ms"], REEVAL_MS), command)
        )
    command = 'python -c "from benchmarks import extras; print(extras.app_launch())"'
    if launch is None or not launch.get("ok"):
        why = (launch or {}).get("reason") or missing("extras") or missing("launch")
        lines.append(Line("app launch", f"<= {LAUNCH_S:g} s to a populated tree", "-", _not(why), command))
    else:
        warm = launch.get("warm_seconds")
        value = f"{launch['seconds']:.2f} s the first time" + (
            f", {warm:.2f} s later times" if warm is not None else ""
        )
        lines.append(
            Line("app launch", f"<= {LAUNCH_S:g} s to a populated tree", value, _launch_status(launch), command)
        )

    command = "python -m benchmarks.run --device cuda"
    if device == "cpu":
        lines.append(
            Line(
                "GPU rows",
                "CUDA calibration, plan eval, local SQNR on a >= 100M-parameter transformer, zero host syncs",
                "-",
                "not measured: no GPU was lent to this run",
                command,
            )
        )
    else:
        lines.append(
            Line(
                "GPU rows",
                "CUDA calibration, plan eval, local SQNR on a >= 100M-parameter transformer, zero host syncs",
                f"the main table above ({device}); the measured-error and sync checks are not part of this run",
                "not measured",
                command,
            )
        )
    return lines


def _not(why: str | None) -> str:
    return f"not measured: {why}" if why else "not measured"
