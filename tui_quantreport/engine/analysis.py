"""Moved: settings live in :mod:`.settings`, evaluation in :mod:`.evaluation`.

Kept for this round so that branches written against the old module still
import; new code imports from the two modules (or from ``tui_quantreport.engine``).
"""

from __future__ import annotations

from tui_quantreport.engine.evaluation import evaluate, module_summaries
from tui_quantreport.engine.settings import Settings, observation_plan, observed_settings, stale_params

__all__ = ["Settings", "evaluate", "module_summaries", "observation_plan", "observed_settings", "stale_params"]
