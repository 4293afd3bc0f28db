"""Top findings by measured gain for every bundled sample: ``python -m benchmarks.top_findings``.

Runs ``tui-quantreport report SAMPLE --format json`` (defaults: 4 probe batches,
--min-gain 1) for each sample and prints, in Markdown, the recommended plan's
end-to-end SQNR, the count of recommendations per severity, and the five
largest measured gains (``measured.top_findings``). The README's table comes
from this.
"""

from __future__ import annotations

import json
import subprocess
import sys

from sample_models import SAMPLES


def sample_section(name: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "tui_quantreport", "report", name, "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        return [f"**{name}**: failed: {done.stderr.strip().splitlines()[-1]}", ""]
    data = json.loads(done.stdout)
    measured = data.get("measured")
    if measured is None:  # e.g. an exported graph: the CLI's note says why
        notes = [line.split("note: ", 1)[1] for line in done.stderr.splitlines() if "note: " in line]
        flagged = sum(
            1
            for det in data["detectors"].values()
            for entry in det["modules"].values()
            if entry.get("status") == "recommend"
        )
        return [
            f"**{name}** — not measured: {notes[0] if notes else 'no measurement in the report'} "
            f"({flagged} recommendations, badged as the detectors judge them).",
            "",
        ]
    plan = measured["plan"]
    counts: dict[str, int] = {}
    for det in data["detectors"].values():
        for entry in det["modules"].values():
            if entry.get("status") == "recommend":
                level = entry.get("severity", "unmeasured")  # a detector the simulation has no advice for
                counts[level] = counts.get(level, 0) + 1
    schemes: dict[str, int] = {}
    for entry in plan["modules"].values():
        schemes[entry["scheme"]] = schemes.get(entry["scheme"], 0) + 1
    sqnr = f"{plan['sqnr_db']:.1f} dB" if plan["sqnr_db"] is not None else plan["sqnr_undefined"]
    lines = [
        f"**{name}** — recommended plan: end-to-end SQNR {sqnr} ("
        + ", ".join(f"{v} {k}" for k, v in schemes.items())
        + "); recommendations: "
        + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("major", "minor", "duplicate", "unmeasured"))
        + ".",
        "",
        "| module | detector | gain (dB) | severity |",
        "| --- | --- | ---: | --- |",
    ]
    for row in measured["top_findings"][:5]:
        gain = "—" if row["gain_db"] is None else f"{row['gain_db']:+.1f}"
        lines.append(f"| `{row['module']}` | {row['detector'].replace('_detector', '')} | {gain} | {row['severity']} |")
    return [*lines, ""]


def main() -> int:
    out: list[str] = []
    for name in SAMPLES:
        out += sample_section(name)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
