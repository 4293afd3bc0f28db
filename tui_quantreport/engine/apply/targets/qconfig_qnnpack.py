"""torch.ao's QConfigMapping (FX graph mode) on the qnnpack engine (8-bit activations)."""

from __future__ import annotations

from tui_quantreport.engine.apply.targets.qconfig_x86 import qconfig_target

TARGET = qconfig_target("qconfig-qnnpack", "qnnpack", 8)
