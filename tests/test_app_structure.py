"""The app's files stay small enough to read: none over 700 lines (the main screen is split by job
into controllers over one state class)."""

from __future__ import annotations

from pathlib import Path

TUI = Path(__file__).resolve().parent.parent / "tui_quantreport" / "tui"
LIMIT = 700


def test_no_app_file_is_over_700_lines() -> None:
    sizes = {str(p.relative_to(TUI)): len(p.read_text(encoding="utf-8").splitlines()) for p in TUI.rglob("*.py")}
    assert "main_screen.py" in sizes and "controllers/plan.py" in sizes
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}


def test_every_worker_ends_through_run_in_thread() -> None:
    """Thread workers post their result, cancellation or failure through the one helper, not a
    hand-written try/except each."""
    for path in [TUI / "main_screen.py", *sorted((TUI / "controllers").glob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        assert "except CalibrationCancelled" not in text, path.name
        assert "except Exception" not in text, path.name
